"""LiDAR odometry (KISS-ICP style scan-to-local-map ICP) -> body-velocity measurements for the filter."""

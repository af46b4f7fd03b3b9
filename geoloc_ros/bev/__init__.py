"""bev engine of geoloc_ros (ROS-free)."""

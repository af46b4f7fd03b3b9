"""Parameters of the ROS 2 doors only (owned by geoloc_ros.nodes).

The engines' parameters live in :class:`geoloc_ros.config.GeolocConfig`; these are the few that
only make sense for a live node (message types, queue bounds, publishing rates). They are ROS
parameters named ``node.<field>`` next to the GeolocConfig ones.
"""
from dataclasses import dataclass

from geoloc_ros.config import param


@dataclass
class NodeConfig:
    image_transport: str = param("auto", "camera/image and camera/depth message type: 'compressed' "
                                 "(CompressedImage), 'raw' (Image) or 'auto' (the profile's type)")
    queue_size: int = param(2000, "bound of each small input's queue (IMU, wheel, GNSS, fixes): a "
                            "memory bound a working node never reaches; beyond it the oldest are dropped "
                            "with a counted warning")
    bulk_queue_size: int = param(4, "clouds and images kept waiting per input; when the node is behind "
                                 "the oldest are dropped (counted): the newest scan matters most")
    reorder_window_s: float = param(0.05, "events wait this long after arrival so that those of "
                                    "different topics reach the pipeline in stamp order", "s")
    imu_wait_s: float = param(0.2, "a measurement waits at most this long for the IMU to be received "
                              "up to its stamp (topics are delivered independently)", "s")
    max_latency_s: float = param(0.2, "when events have waited longer than this (a flood, a slow "
                                 "engine step) consecutive IMU samples are merged instead of dropped, "
                                 "to catch up", "s")
    imu_merge_period_s: float = param(0.02, "span of IMU samples merged into one (mean acceleration "
                                      "and rate) while catching up", "s")
    imu_max_rate_hz: float = param(500.0, "IMU samples closer together than 1/this (a stream faster "
                                   "than any IMU of the profiles: a flood) are merged to this rate, "
                                   "never dropped (0: off)", "Hz")
    publish_period_s: float = param(0.02, "minimum time between geoloc/pose, geoloc/odometry and TF "
                                    "messages (0: every estimate)", "s")
    scan_viz_period_s: float = param(0.5, "minimum time between geoloc/scan messages (the current "
                                     "scan in the map frame at the estimated pose; 0 disables)", "s")
    scan_viz_max_points: int = param(20000, "points kept (evenly subsampled) in geoloc/scan")
    path_max_len: int = param(5000, "poses kept in geoloc/path")
    path_period_s: float = param(0.5, "minimum time between geoloc/path messages", "s")
    diagnostics_period_s: float = param(1.0, "period of /diagnostics", "s")
    clock_jump_reset_s: float = param(1.0, "the clock (or the IMU stamps) going backwards by more "
                                      "than this resets the filter", "s")
    relocalize_on_request: bool = param(True, "geoloc/global_localize re-initializes the filter at the "
                                        "best candidate (like an initial pose)")
    fix_topic_sources: str = param("bev,objects", "comma-separated engines whose fixes the split "
                                   "fusion_node listens to (geoloc/<name>_fix)")

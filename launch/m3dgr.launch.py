"""geoloc on M3DGR (SJTU ground robot, ROS 1 bags): dataset topics and config/m3dgr.yaml.

Live, or with the dataset's topics on the graph (e.g. a bridged ROS 1 bag):
  ros2 launch geoloc_ros m3dgr.launch.py map:=/data/m3dgr_map
With `geoloc play BAG --profile m3dgr` (which publishes on the node's default topic names and
converts Livox CustomMsg to PointCloud2):
  ros2 launch geoloc_ros m3dgr.launch.py map:=/data/m3dgr_map dataset_topics:=false use_sim_time:=true
"""
from launch.substitutions import PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

from geoloc_ros.nodes.launch_common import dataset_launch_description

# node topic -> M3DGR topic (config/profiles/m3dgr.yaml)
REMAPS = {
    "points_livox": "/livox/mid360/lidar",            # livox_ros_driver/CustomMsg
    "imu": "/livox/mid360/imu",                       # acceleration in g (profile acc_unit)
    "wheel_odom": "/odom",
    "gnss/fix": "/ublox_driver/receiver_lla",         # u-blox status encoding, GPS-time stamps
    "camera/image": "/camera/color/image_raw/compressed",
    "camera/depth": "/camera/aligned_depth_to_color/image_raw/compressedDepth",
    "camera/camera_info": "/camera/color/camera_info",
}


def generate_launch_description():
    params = PathJoinSubstitution([FindPackageShare("geoloc_ros"), "config", "m3dgr.yaml"])
    return dataset_launch_description("M3DGR", params, REMAPS, use_sim_time_default="false")

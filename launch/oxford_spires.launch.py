"""geoloc on Oxford Spires (Hesai QT64 + Alphasense, ROS 2 bags): dataset topics and
config/oxford_spires.yaml.

  ros2 bag play BAG --clock &
  ros2 launch geoloc_ros oxford_spires.launch.py map:=/data/spires_map use_sim_time:=true
With `geoloc play BAG --profile oxford_spires` (default topic names):
  ros2 launch geoloc_ros oxford_spires.launch.py map:=/data/spires_map dataset_topics:=false use_sim_time:=true
"""
from launch.substitutions import PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

from geoloc_ros.nodes.launch_common import dataset_launch_description

# node topic -> Oxford Spires topic (config/profiles/oxford_spires.yaml); no wheel odometry and
# no GNSS in the dataset, camera intrinsics come from the profile (fisheye, no camera_info)
REMAPS = {
    "points": "/hesai/pandar",
    "imu": "/alphasense_driver_ros/imu",
    "camera/image": "/alphasense_driver_ros/cam0/debayered/image/compressed",
}


def generate_launch_description():
    params = PathJoinSubstitution([FindPackageShare("geoloc_ros"), "config", "oxford_spires.yaml"])
    return dataset_launch_description("Oxford Spires", params, REMAPS, use_sim_time_default="true")

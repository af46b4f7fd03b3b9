"""geoloc on Oxford Spires (Hesai QT64 + Alphasense, ROS 2 bags): dataset topics and
config/oxford_spires.yaml.

  ros2 bag play BAG --clock &
  ros2 launch geoloc_ros oxford_spires.launch.py map:=/data/spires_map use_sim_time:=true
With `geoloc play BAG --profile oxford_spires` (default topic names):
  ros2 launch geoloc_ros oxford_spires.launch.py map:=/data/spires_map dataset_topics:=false use_sim_time:=true
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, GroupAction, IncludeLaunchDescription
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import SetRemap
from launch_ros.substitutions import FindPackageShare

# node topic -> Oxford Spires topic (config/profiles/oxford_spires.yaml); no wheel odometry and
# no GNSS in the dataset, camera intrinsics come from the profile (fisheye, no camera_info)
REMAPS = {
    "points": "/hesai/pandar",
    "imu": "/alphasense_driver_ros/imu",
    "camera/image": "/alphasense_driver_ros/cam0/debayered/image/compressed",
}


def generate_launch_description():
    pkg = FindPackageShare("geoloc_ros")
    dataset_topics = IfCondition(LaunchConfiguration("dataset_topics"))
    remaps = [SetRemap(src=src, dst=dst, condition=dataset_topics) for src, dst in REMAPS.items()]
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([pkg, "launch", "geoloc.launch.py"])),
        launch_arguments={
            "map": LaunchConfiguration("map"),
            "config": PathJoinSubstitution([pkg, "config", "oxford_spires.yaml"]),
            "use_sim_time": LaunchConfiguration("use_sim_time"),
            "namespace": LaunchConfiguration("namespace"),
            "rviz": LaunchConfiguration("rviz"),
            "split": LaunchConfiguration("split"),
        }.items())
    return LaunchDescription([
        DeclareLaunchArgument("map", default_value="", description="map directory"),
        DeclareLaunchArgument("use_sim_time", default_value="true", description="use /clock"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the nodes"),
        DeclareLaunchArgument("rviz", default_value="false", description="start RViz"),
        DeclareLaunchArgument("split", default_value="false", description="multi-process layout"),
        DeclareLaunchArgument("dataset_topics", default_value="true",
                              description="remap to the Oxford Spires topic names ('false' with geoloc play)"),
        GroupAction([*remaps, include]),
    ])

"""geoloc on M3DGR (SJTU ground robot, ROS 1 bags): dataset topics and config/m3dgr.yaml.

Live, or with the dataset's topics on the graph (e.g. a bridged ROS 1 bag):
  ros2 launch geoloc_ros m3dgr.launch.py map:=/data/m3dgr_map
With `geoloc play BAG --profile m3dgr` (which publishes on the node's default topic names and
converts Livox CustomMsg to PointCloud2):
  ros2 launch geoloc_ros m3dgr.launch.py map:=/data/m3dgr_map dataset_topics:=false use_sim_time:=true
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, GroupAction, IncludeLaunchDescription
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import SetRemap
from launch_ros.substitutions import FindPackageShare

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
    pkg = FindPackageShare("geoloc_ros")
    dataset_topics = IfCondition(LaunchConfiguration("dataset_topics"))
    remaps = [SetRemap(src=src, dst=dst, condition=dataset_topics) for src, dst in REMAPS.items()]
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([pkg, "launch", "geoloc.launch.py"])),
        launch_arguments={
            "map": LaunchConfiguration("map"),
            "config": PathJoinSubstitution([pkg, "config", "m3dgr.yaml"]),
            "use_sim_time": LaunchConfiguration("use_sim_time"),
            "namespace": LaunchConfiguration("namespace"),
            "rviz": LaunchConfiguration("rviz"),
            "split": LaunchConfiguration("split"),
        }.items())
    return LaunchDescription([
        DeclareLaunchArgument("map", default_value="", description="map directory"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the nodes"),
        DeclareLaunchArgument("rviz", default_value="false", description="start RViz"),
        DeclareLaunchArgument("split", default_value="false", description="multi-process layout"),
        DeclareLaunchArgument("dataset_topics", default_value="true",
                              description="remap to the M3DGR topic names ('false' with geoloc play)"),
        GroupAction([*remaps, include]),
    ])

"""The part the dataset launch files share (``launch/m3dgr.launch.py``,
``launch/oxford_spires.launch.py``): their arguments, the remappings to the dataset's topic
names (applied unless ``dataset_topics:=false``, as with ``geoloc play``) and the include of
``launch/geoloc.launch.py`` with the dataset's params file.

Imported by the launch files from the installed package; ``launch`` and ``launch_ros`` are
imported only when a launch description is built (they exist on a full ROS 2 install).
"""
from __future__ import annotations

__all__ = ["dataset_launch_description"]


def dataset_launch_description(dataset: str, params_file, remaps: dict[str, str],
                               use_sim_time_default: str = "false"):
    """LaunchDescription for ``dataset`` (its name, for the argument descriptions).

    params_file : substitution or path of the dataset's params file (``config/<dataset>.yaml``)
    remaps      : node topic -> dataset topic
    """
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, GroupAction, IncludeLaunchDescription
    from launch.conditions import IfCondition
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
    from launch_ros.actions import SetRemap
    from launch_ros.substitutions import FindPackageShare

    pkg = FindPackageShare("geoloc_ros")
    dataset_topics = IfCondition(LaunchConfiguration("dataset_topics"))
    remap_actions = [SetRemap(src=src, dst=dst, condition=dataset_topics) for src, dst in remaps.items()]
    passed = ("map", "use_sim_time", "namespace", "rviz", "split")
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([pkg, "launch", "geoloc.launch.py"])),
        launch_arguments={"config": params_file,
                          **{k: LaunchConfiguration(k) for k in passed}}.items())
    return LaunchDescription([
        DeclareLaunchArgument("map", default_value="", description="map directory"),
        DeclareLaunchArgument("use_sim_time", default_value=use_sim_time_default, description="use /clock"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the nodes"),
        DeclareLaunchArgument("rviz", default_value="false", description="start RViz"),
        DeclareLaunchArgument("split", default_value="false", description="multi-process layout"),
        DeclareLaunchArgument("dataset_topics", default_value="true",
                              description=f"remap to the {dataset} topic names ('false' with geoloc play)"),
        GroupAction([*remap_actions, include]),
    ])

"""Launch the geoloc localizer (all-in-one, or split over processes) and optionally RViz.

Arguments:
  map           map directory built by `geoloc build-map` ('' = no prior map, dead reckoning)
  config        ROS 2 params file (default: the package's config/geoloc.yaml)
  use_sim_time  'true' when replaying a bag with /clock (geoloc play, ros2 bag play --clock)
  namespace     namespace of the node(s) and their topics
  rviz          'true' to start RViz with rviz/geoloc.rviz
  split         'true' for bev_localizer + object_localizer + fusion_node instead of geoloc_node

  ros2 launch geoloc_ros geoloc.launch.py map:=/data/town_map use_sim_time:=true rviz:=true
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, GroupAction
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node, PushRosNamespace
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    pkg = FindPackageShare("geoloc_ros")
    map_dir = LaunchConfiguration("map")
    config = LaunchConfiguration("config")
    use_sim_time = LaunchConfiguration("use_sim_time")
    namespace = LaunchConfiguration("namespace")
    rviz = LaunchConfiguration("rviz")
    split = LaunchConfiguration("split")

    params = [config, {"map_dir": map_dir,
                       "use_sim_time": ParameterValue(use_sim_time, value_type=bool)}]

    all_in_one = Node(package="geoloc_ros", executable="geoloc_node", name="geoloc",
                      output="screen", parameters=params, condition=UnlessCondition(split))
    split_nodes = [
        Node(package="geoloc_ros", executable="bev_localizer", name="bev_localizer",
             output="screen", parameters=params, condition=IfCondition(split)),
        Node(package="geoloc_ros", executable="object_localizer", name="object_localizer",
             output="screen", parameters=params, condition=IfCondition(split)),
        Node(package="geoloc_ros", executable="fusion_node", name="fusion_node",
             output="screen", parameters=params, condition=IfCondition(split)),
    ]
    rviz_node = Node(package="rviz2", executable="rviz2", name="rviz2", output="log",
                     arguments=["-d", PathJoinSubstitution([pkg, "rviz", "geoloc.rviz"])],
                     parameters=[{"use_sim_time": ParameterValue(use_sim_time, value_type=bool)}],
                     condition=IfCondition(rviz))

    return LaunchDescription([
        DeclareLaunchArgument("map", default_value="",
                              description="map directory built by `geoloc build-map` ('' = none)"),
        DeclareLaunchArgument("config",
                              default_value=PathJoinSubstitution([pkg, "config", "geoloc.yaml"]),
                              description="ROS 2 params file with the geoloc parameters"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (bag replay)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the nodes"),
        DeclareLaunchArgument("rviz", default_value="false", description="start RViz"),
        DeclareLaunchArgument("split", default_value="false",
                              description="run bev_localizer, object_localizer and fusion_node "
                                          "as separate processes"),
        GroupAction([
            # pushed only when given (as nav2_bringup does): an empty push is not portable
            PushRosNamespace(namespace, condition=IfCondition(PythonExpression(["'", namespace, "' != ''"]))),
            all_in_one, *split_nodes, rviz_node]),
    ])

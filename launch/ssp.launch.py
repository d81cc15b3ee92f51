"""Launch the SSP segmentation node: `ros2 launch ssp_ros ssp.launch.py image:=/camera/image_raw`."""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    config = LaunchConfiguration("config")
    image = LaunchConfiguration("image")
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=PathJoinSubstitution([FindPackageShare("ssp_ros"), "config",
                                                                            "ssp.yaml"]),
                              description="ssp_ros configuration YAML (schema: ssp_ros/config.py)"),
        DeclareLaunchArgument("image", default_value="/camera/image_raw", description="camera image topic"),
        Node(package="ssp_ros", executable="ssp_node", name="ssp", output="screen",
             parameters=[{"config_file": config}], remappings=[("image", image)]),
    ])

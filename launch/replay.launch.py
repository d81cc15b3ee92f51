"""Play a bag into the SSP node: `ros2 launch ssp_ros replay.launch.py bag:=drone.mcap [use_rviz:=true]`.

The node runs on the bag's clock (``ros2 bag play --clock``, ``use_sim_time``), so ``node.max_age_ms``
judges frames by bag time. Playback starts ``delay`` seconds after launch, once the model is loaded.
For an offline run of every frame without ROS, use ``ssp replay`` instead.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription, TimerAction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("ssp_ros")
    segmentation = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "ssp.launch.py"])),
        launch_arguments={"image": LaunchConfiguration("image"), "config": LaunchConfiguration("config"),
                          "use_rviz": LaunchConfiguration("use_rviz"), "use_sim_time": "true"}.items())
    play = ExecuteProcess(cmd=["ros2", "bag", "play", LaunchConfiguration("bag"), "--clock",
                               "--rate", LaunchConfiguration("rate")], output="screen")
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="bag to play (rosbag2 folder, .db3 or .mcap)"),
        DeclareLaunchArgument("image", default_value="/camera/image_raw", description="camera topic in the bag"),
        DeclareLaunchArgument("config", default_value=PathJoinSubstitution([share, "config", "ssp.yaml"]),
                              description="ssp_ros configuration YAML"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback rate"),
        DeclareLaunchArgument("delay", default_value="5.0", description="seconds to wait before playing"),
        DeclareLaunchArgument("use_rviz", default_value="false", description="open RViz with the overlay and mask"),
        segmentation,
        TimerAction(period=LaunchConfiguration("delay"), actions=[play]),
    ])

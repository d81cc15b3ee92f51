"""Launch the SSP segmentation node (and optionally RViz).

    ros2 launch ssp_ros ssp.launch.py image:=/camera/image_raw
    ros2 launch ssp_ros ssp.launch.py image:=/camera/image_raw/compressed compressed:=true use_rviz:=true
    ros2 launch ssp_ros ssp.launch.py backend:=tensorrt export_dir:=/opt/ssp/export

``config`` is an ssp_ros YAML (schema ssp_ros/config.py) read by the node; ``params_file`` is an optional
ROS 2 parameter file (``ssp: ros__parameters: {propagation.max_time_gap_s: 1.0}``); ``backend``, ``device``,
``export_dir`` and ``compressed`` override single keys when given, and win over both files. TensorRT runs
on a GPU only, so ``backend:=tensorrt`` with a config on ``cpu`` and no ``device`` runs on ``cuda``.
"""

import yaml
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

OVERRIDES = {"backend": "runtime.backend", "device": "runtime.device", "export_dir": "runtime.export_dir",
             "compressed": "node.input_compressed"}
FLAGS = {"node.input_compressed"}  # parameters that take true/false
NODE_NAME = "ssp"


def _flatten(values: dict, prefix: str = "") -> dict:
    """Nested parameter YAML ({propagation: {max_time_gap_s: 1.0}}) as dotted names, as rclpy reads it."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _read_yaml(path: str) -> dict:
    with open(path) as stream:
        return yaml.safe_load(stream) or {}


def _node_parameters(context: LaunchContext) -> dict:
    """All of the node's parameters as one dict, applied in this order: config file, params_file (its ``/**``
    section, then the node's own), then the single-key launch arguments. One dict, because launch_ros writes
    each dict under ``/**`` and rclpy applies a file's node-specific entries after wildcard ones whatever the
    order in the list, so a params_file's ``ssp:`` keys would otherwise beat ``backend:=`` and ``device:=``."""
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    params = {"config_file": arg("config"), "use_sim_time": arg("use_sim_time").lower() == "true"}
    if arg("params_file"):
        data = _read_yaml(arg("params_file"))
        for section in ("/**", "**", NODE_NAME, f"/{NODE_NAME}"):
            params.update(_flatten((data.get(section) or {}).get("ros__parameters") or {}))
    for name, key in OVERRIDES.items():
        if arg(name):
            params[key] = arg(name).lower() == "true" if key in FLAGS else arg(name)
    if params.get("runtime.backend") == "tensorrt" and "runtime.device" not in params:
        device = (_read_yaml(params["config_file"]).get("runtime") or {}).get("device", "cpu")
        if device == "cpu":  # TensorRT runs on a GPU only; a config that names a GPU keeps it
            params["runtime.device"] = "cuda"
    return params


def _segmentation_node(context: LaunchContext) -> list[Node]:
    return [Node(package="ssp_ros", executable="ssp_node", name=NODE_NAME, output="screen",
                 parameters=[_node_parameters(context)],
                 remappings=[("image", LaunchConfiguration("image").perform(context))])]


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("ssp_ros")
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=PathJoinSubstitution([share, "config", "ssp.yaml"]),
                              description="ssp_ros configuration YAML (schema: ssp_ros/config.py)"),
        DeclareLaunchArgument("params_file", default_value="",
                              description="optional ROS 2 parameter file for the node (applied after config)"),
        DeclareLaunchArgument("image", default_value="/camera/image_raw",
                              description="camera topic (Image, or CompressedImage with compressed:=true)"),
        DeclareLaunchArgument("compressed", default_value="",
                              description="true: subscribe to sensor_msgs/CompressedImage; empty: from config"),
        DeclareLaunchArgument("backend", default_value="",
                              description="torch | onnxruntime | tensorrt; empty: from config"),
        DeclareLaunchArgument("device", default_value="",
                              description="cpu | cuda | cuda:N; empty: from config (cuda with backend:=tensorrt)"),
        DeclareLaunchArgument("export_dir", default_value="",
                              description="folder written by `ssp export` (onnxruntime/tensorrt); empty: from config"),
        DeclareLaunchArgument("use_rviz", default_value="false",
                              description="open RViz with the overlay and mask (config/ssp.rviz)"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (bag replay with `ros2 bag play --clock`)"),
        OpaqueFunction(function=_segmentation_node),
        Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
             arguments=["-d", PathJoinSubstitution([share, "config", "ssp.rviz"])],
             parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
             condition=IfCondition(LaunchConfiguration("use_rviz"))),
    ])

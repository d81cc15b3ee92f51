"""Launch the SSP segmentation node (and optionally RViz).

    ros2 launch ssp_ros ssp.launch.py image:=/camera/image_raw
    ros2 launch ssp_ros ssp.launch.py image:=/camera/image_raw/compressed compressed:=true use_rviz:=true
    ros2 launch ssp_ros ssp.launch.py backend:=tensorrt export_dir:=/opt/ssp/export
    ros2 launch ssp_ros ssp.launch.py ns:=left use_rviz:=true     # one per camera: /left/camera/image_raw in,
    ros2 launch ssp_ros ssp.launch.py ns:=right use_rviz:=true    # /left/ssp/mask out, its own RViz layout
    ros2 launch ssp_ros ssp.launch.py lifecycle:=true             # managed: ros2 lifecycle set /ssp configure
    ros2 launch ssp_ros ssp.launch.py enclave:=/ssp               # SROS2 (ROS_SECURITY_* set; README, Security)
    ros2 launch ssp_ros ssp.launch.py mode:=stabilise masks:=/segmenter/mask   # stabilise another segmenter's masks
    ros2 launch ssp_ros ssp.launch.py mode:=stabilise masks:=/seg/mask label_info:=/seg/label_info  # its classes too

``config`` is an ssp_ros YAML (schema ssp_ros/config.py) read by the node; ``params_file`` is an optional
ROS 2 parameter file (``ssp: ros__parameters: {propagation.max_time_gap_s: 1.0}``); ``backend``, ``device``,
``export_dir``, ``compressed``, ``mode``, ``segmenter`` and ``label_info`` override single keys when given, and win
over both files. ``mode:=stabilise`` runs the stabiliser mode: the node pairs the camera with another segmenter's masks
(``masks``, remapped like ``image``; what they carry and their classes are ``node.mask_input`` and ``node.classes``,
or the class list of that segmenter's LabelInfo on ``label_info``). TensorRT runs
on a GPU only, so ``backend:=tensorrt`` with a config on ``cpu`` and no ``device`` runs on ``cuda``. A
relative ``image`` (the default) is resolved in the namespace ``ns``. QoS is overridden with ROS parameters in
``params_file`` (``qos_overrides./camera/image_raw.subscription.reliability: reliable``).

``fastdds_profile`` (default: the installed config/fastdds.xml) is the Fast DDS XML profile the node runs with:
shared memory sized for 4K frames, without which Fast DDS loses most best-effort frames above 512 KB between
processes. The camera driver's process needs it too (README). ``fastdds_profile:=`` leaves the node the launching
shell's environment; CycloneDDS and Zenoh ignore the profile.

``enclave`` is the node's SROS2 enclave, passed as ``--ros-args --enclave`` (launch_ros has no enclave option in
Humble or Jazzy; rcl reads the argument, and ``ROS_SECURITY_ENCLAVE_OVERRIDE`` in the environment still wins over
it): ``config/security/policy.xml`` has ``/ssp`` for the plain node and ``/ssp_lifecycle`` for ``lifecycle:=true``.
"""

import os
from pathlib import Path

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.substitutions import FindPackageShare

from ssp_ros.ros.fastdds import profile_env
from ssp_ros.ros.rviz import layout_for
from ssp_ros.schema import flatten, read_yaml

OVERRIDES = {"backend": "runtime.backend", "device": "runtime.device", "export_dir": "runtime.export_dir",
             "compressed": "node.input_compressed", "mode": "node.mode", "segmenter": "node.segmenter",
             "label_info": "node.label_info_topic"}
FLAGS = {"node.input_compressed"}  # parameters that take true/false
NODE_NAME = "ssp"


def _flag(value: str) -> bool:
    """A true/false launch argument, read as launch's IfCondition reads one."""
    if value.lower() not in ("true", "1", "false", "0"):
        raise ValueError(f"expected true or false, got '{value}'")
    return value.lower() in ("true", "1")


def _read_yaml(path: str) -> dict:
    """A YAML file's data, {} when empty; ConfigError naming the file when it is missing or malformed."""
    return read_yaml(path) or {}


def _node_parameters(context: LaunchContext) -> dict:
    """All of the node's parameters as one dict, applied in this order: config file, params_file (its ``/**``
    section, then the node's own), then the single-key launch arguments. One dict, because launch_ros writes
    each dict under ``/**`` and rclpy applies a file's node-specific entries after wildcard ones whatever the
    order in the list, so a params_file's ``ssp:`` keys would otherwise beat ``backend:=`` and ``device:=``."""
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    params = {"config_file": arg("config"), "use_sim_time": _flag(arg("use_sim_time"))}
    if arg("params_file"):
        data = _read_yaml(arg("params_file"))
        namespace = arg("ns").strip("/")
        own = [f"{namespace}/{NODE_NAME}", f"/{namespace}/{NODE_NAME}"] if namespace else [NODE_NAME, f"/{NODE_NAME}"]
        for section in ("/**", "**", *own):
            params.update(flatten((data.get(section) or {}).get("ros__parameters") or {}))
    for name, key in OVERRIDES.items():
        if arg(name):
            params[key] = _flag(arg(name)) if key in FLAGS else arg(name)
    if params.get("runtime.backend") == "tensorrt" and "runtime.device" not in params:
        device = (_read_yaml(params["config_file"]).get("runtime") or {}).get("device", "cpu")
        if device == "cpu":  # TensorRT runs on a GPU only; a config that names a GPU keeps it
            params["runtime.device"] = "cuda"
    return params


def _remappings(context: LaunchContext) -> list[tuple[str, str]]:
    """The camera topic, and the masks' where ``masks`` is given (else the config's ``node.mask_topic``)."""
    masks = LaunchConfiguration("masks").perform(context)
    return [("image", LaunchConfiguration("image").perform(context))] + ([("masks", masks)] if masks else [])


def _nodes(context: LaunchContext) -> list[Node]:
    """The segmentation node (managed with ``lifecycle:=true``, with the Fast DDS profile in its environment) and,
    with ``use_rviz:=true``, RViz on its topics, both in the namespace ``ns``."""
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    namespace = arg("ns")
    options = dict(package="ssp_ros", executable="ssp_node", name=NODE_NAME, namespace=namespace, output="screen",
                   parameters=[_node_parameters(context)], remappings=_remappings(context),
                   respawn=_flag(arg("respawn")), respawn_delay=2.0,
                   additional_env=profile_env(arg("fastdds_profile"), os.environ.get("ROS_DISTRO")))
    if arg("enclave"):
        options["ros_arguments"] = ["--enclave", arg("enclave")]
    if _flag(arg("lifecycle")):
        nodes = [LifecycleNode(arguments=["--lifecycle"], **options)]
    else:
        nodes = [Node(**options)]
    if _flag(arg("use_rviz")):
        share = FindPackageShare("ssp_ros").perform(context)
        layout = layout_for(Path(share) / "config" / "ssp.rviz", namespace, NODE_NAME)
        nodes.append(Node(package="rviz2", executable="rviz2", name="rviz2", namespace=namespace, output="screen",
                          arguments=["-d", str(layout)], parameters=[{"use_sim_time": _flag(arg("use_sim_time"))}]))
    return nodes


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("ssp_ros")
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=PathJoinSubstitution([share, "config", "ssp.yaml"]),
                              description="ssp_ros configuration YAML (schema: ssp_ros/config.py)"),
        DeclareLaunchArgument("params_file", default_value="",
                              description="optional ROS 2 parameter file for the node (applied after config)"),
        DeclareLaunchArgument("image", default_value="camera/image_raw",
                              description="camera topic (Image, or CompressedImage with compressed:=true); "
                                          "relative names are in the namespace ns"),
        DeclareLaunchArgument("mode", default_value="",
                              description="segment (our image model) | stabilise (another segmenter's masks on "
                                          "masks, made temporally consistent); empty: from config"),
        DeclareLaunchArgument("segmenter", default_value="",
                              description="segment mode: a YAML of your ONNX segmenter, run in the node and "
                                          "stabilised instead of our image model; empty: from config"),
        DeclareLaunchArgument("masks", default_value="",
                              description="stabilise mode: the other segmenter's mask topic (remaps masks, the "
                                          "config's node.mask_topic by default); empty: no remapping"),
        DeclareLaunchArgument("label_info", default_value="",
                              description="stabilise mode: the other segmenter's vision_msgs/LabelInfo topic, whose "
                                          "class list the node then takes (node.label_info_topic); empty: from "
                                          "config"),
        DeclareLaunchArgument("ns", default_value="",
                              description="namespace of this camera's node (ns:=left, ns:=right): its topics, "
                                          "parameters and RViz layout move under it"),
        DeclareLaunchArgument("lifecycle", default_value="false",
                              description="true: a managed node that starts unconfigured; configure loads the "
                                          "model, activate subscribes (ros2 lifecycle set /<ns>/ssp configure)"),
        DeclareLaunchArgument("enclave", default_value="",
                              description="SROS2 enclave of the node (/ssp, or /ssp_lifecycle with lifecycle:=true; "
                                          "config/security/policy.xml); empty: none (rcl's default, /)"),
        DeclareLaunchArgument("respawn", default_value="false",
                              description="true: restart the node 2 s after it exits (it exits 1 if its worker "
                                          "dies)"),
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
        DeclareLaunchArgument("fastdds_profile", default_value=PathJoinSubstitution([share, "config", "fastdds.xml"]),
                              description="Fast DDS XML profile of the node (shared memory for frames up to 4K; "
                                          "the camera's process needs it too); empty: the shell's environment"),
        OpaqueFunction(function=_nodes),
    ])

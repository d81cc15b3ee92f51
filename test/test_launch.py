"""Launch files and the RViz layout. ROS 2 `launch` is not installed here, so the files are checked
statically (ast); the import test runs where launch_ros is installed and skips itself elsewhere."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import yaml

from ssp_ros.ros.node import NODE_NAME
from ssp_ros.ros.stream import OUTPUTS

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = ROOT / "launch"
EXPECTED = {
    "ssp.launch.py": {"config", "params_file", "image", "ns", "lifecycle", "enclave", "respawn", "compressed",
                      "backend", "device", "export_dir", "use_rviz", "use_sim_time", "fastdds_profile", "mode",
                      "masks", "segmenter", "label_info"},
    "replay.launch.py": {"bag", "image", "config", "rate", "delay", "use_rviz"},
}


def calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and (getattr(node.func, "id", None) == name or getattr(node.func, "attr", None) == name)]


def first_string(call: ast.Call) -> str:
    assert call.args and isinstance(call.args[0], ast.Constant), ast.dump(call)
    return call.args[0].value


def keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_launch_file_declares_what_it_uses(name: str) -> None:
    tree = ast.parse((LAUNCH / name).read_text())
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert "generate_launch_description" in functions
    declared = {first_string(c) for c in calls(tree, "DeclareLaunchArgument")}
    used = {c.args[0].value for c in calls(tree, "LaunchConfiguration") + calls(tree, "arg")
            if isinstance(c.args[0], ast.Constant)}  # arg(name) is ssp.launch.py's LaunchConfiguration helper
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == "OVERRIDES":
            used |= set(ast.literal_eval(node.value))  # read through arg(name) in a loop
    assert declared == EXPECTED[name]
    assert used <= declared, f"{name} uses undeclared arguments {used - declared}"
    for call in calls(tree, "DeclareLaunchArgument"):
        assert isinstance(keyword(call, "description"), ast.Constant), f"{first_string(call)} has no description"


def test_ssp_launch_runs_the_node_with_parameters_remap_and_rviz(monkeypatch) -> None:
    (node,) = _launch_nodes(monkeypatch)
    assert node["action"] == "Node" and node["executable"] == "ssp_node" and node["name"] == NODE_NAME
    assert node["namespace"] == "" and node["remappings"] == [("image", "camera/image_raw")]
    assert node["parameters"][0]["config_file"].endswith("ssp.yaml") and not node["respawn"]
    monkeypatch.delenv("ROS_DISTRO", raising=False)
    node, rviz = _launch_nodes(monkeypatch, use_rviz="true")
    assert rviz["executable"] == "rviz2" and rviz["arguments"] == ["-d", str(ROOT / "config" / "ssp.rviz")]
    tree = ast.parse((LAUNCH / "ssp.launch.py").read_text())
    overrides = next(n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "OVERRIDES")
    assert ast.literal_eval(overrides.value) == {"backend": "runtime.backend", "device": "runtime.device",
                                                 "export_dir": "runtime.export_dir",
                                                 "compressed": "node.input_compressed", "mode": "node.mode",
                                                 "segmenter": "node.segmenter", "label_info": "node.label_info_topic"}


def test_mode_stabilise_with_a_masks_topic_runs_the_stabiliser_on_it(monkeypatch) -> None:
    """``mode:=stabilise masks:=/segmenter/mask label_info:=...``: the node's mode and class-list topic parameters,
    and its mask topic (``masks``, the config's node.mask_topic) remapped beside the camera; without ``masks`` only
    the camera is remapped."""
    from ssp_ros.config import load_config
    from ssp_ros.ros.params import config_with_params

    (node,) = _launch_nodes(monkeypatch, mode="stabilise", masks="/segmenter/mask",
                            label_info="/segmenter/label_info")
    assert node["remappings"] == [("image", "camera/image_raw"), ("masks", "/segmenter/mask")]
    params = dict(node["parameters"][0])
    cfg = config_with_params(load_config(params.pop("config_file")),
                             {k: v for k, v in params.items() if k != "use_sim_time"})
    assert cfg.node.mode == "stabilise" and cfg.node.mask_topic == "masks"
    assert cfg.node.label_info_topic == "/segmenter/label_info"
    (plain,) = _launch_nodes(monkeypatch)
    assert "node.mode" not in plain["parameters"][0] and plain["remappings"] == [("image", "camera/image_raw")]


def test_one_launch_per_camera_under_its_namespace_with_its_rviz_layout(monkeypatch) -> None:
    """``ns:=left``: the node, its relative camera topic and RViz all move under /left; RViz gets a layout on
    /left/ssp/..., so two cameras' windows show their own outputs."""
    node, rviz = _launch_nodes(monkeypatch, ns="left", use_rviz="true")
    assert node["namespace"] == rviz["namespace"] == "left"
    assert node["remappings"] == [("image", "camera/image_raw")], "relative: /left/camera/image_raw"
    layout = yaml.safe_load(Path(rviz["arguments"][1]).read_text())
    topics = {d["Topic"]["Value"] for d in layout["Visualization Manager"]["Displays"] if "Topic" in d}
    assert topics == {"/left/ssp/overlay", "/left/ssp/mask", "/left/ssp/confidence"}
    _, other = _launch_nodes(monkeypatch, ns="right", use_rviz="1")  # IfCondition's spellings still work
    assert other["arguments"][1] != rviz["arguments"][1], "each camera has its own layout file"


def test_a_params_file_section_for_the_namespaced_node_applies(monkeypatch, tmp_path) -> None:
    params_file = tmp_path / "cameras.yaml"
    params_file.write_text(yaml.safe_dump({
        "/left/ssp": {"ros__parameters": {"propagation.max_time_gap_s": 3.0}},
        "/right/ssp": {"ros__parameters": {"propagation.max_time_gap_s": 4.0}}}))
    (left,) = _node_parameters(monkeypatch, ns="left", params_file=str(params_file))
    (right,) = _node_parameters(monkeypatch, ns="/right", params_file=str(params_file))
    assert (left["propagation.max_time_gap_s"], right["propagation.max_time_gap_s"]) == (3.0, 4.0)
    (plain,) = _node_parameters(monkeypatch, params_file=str(params_file))
    assert "propagation.max_time_gap_s" not in plain, "another namespace's section is not this node's"
    with pytest.raises(ValueError, match="expected true or false, got 'yes'"):
        _launch_nodes(monkeypatch, lifecycle="yes")


def test_lifecycle_argument_starts_the_managed_node(monkeypatch) -> None:
    from ssp_ros.ros.main import _node_arguments

    (node,) = _launch_nodes(monkeypatch, lifecycle="true", respawn="true")
    assert node["action"] == "LifecycleNode" and node["arguments"] == ["--lifecycle"] and node["respawn"]
    # launch_ros runs ``<executable> <arguments> --ros-args <its own>``: the node finds the flag there
    pytest.importorskip("rclpy", reason="rclpy is not installed: pip install -e '.[ros]'")
    launched = ["ssp_node", "--lifecycle", "--ros-args", "-r", "__ns:=/left", "-r", "__node:=ssp"]
    assert _node_arguments(launched).lifecycle
    assert not _node_arguments(["ssp_node", "--ros-args", "-p", "config_file:=x.yaml"]).lifecycle


def test_enclave_argument_gives_the_node_alone_its_sros2_enclave(monkeypatch) -> None:
    """``enclave:=/ssp`` becomes ``--ros-args --enclave /ssp`` through launch_ros's ``ros_arguments`` (Humble and
    Jazzy have it; neither has an enclave option), for the segmentation node and not for RViz; the default, empty,
    passes none (rcl's default enclave, /)."""
    from ssp_ros.ros.security import read

    monkeypatch.delenv("ROS_DISTRO", raising=False)
    node, rviz = _launch_nodes(monkeypatch, use_rviz="true")
    assert "ros_arguments" not in node and "ros_arguments" not in rviz
    node, rviz = _launch_nodes(monkeypatch, enclave="/ssp", use_rviz="true")
    assert node["ros_arguments"] == ["--enclave", "/ssp"] and "ros_arguments" not in rviz
    (managed,) = _launch_nodes(monkeypatch, enclave="/ssp_lifecycle", lifecycle="true")
    assert managed["ros_arguments"] == ["--enclave", "/ssp_lifecycle"] and managed["arguments"] == ["--lifecycle"]
    # launch_ros runs ``<executable> <arguments> --ros-args <ros_arguments> --ros-args <its own>``
    launched = ["ssp_node", "--lifecycle", "--ros-args", "--enclave", "/ssp_lifecycle", "--ros-args", "-r",
                "__node:=ssp"]
    assert read(launched, {}).enclave == "/ssp_lifecycle"


def test_overridden_keys_are_node_parameters() -> None:
    from ssp_ros.ros.params import SPECS

    tree = ast.parse((LAUNCH / "ssp.launch.py").read_text())
    overrides = next(n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "OVERRIDES")
    assert set(ast.literal_eval(overrides.value).values()) <= set(SPECS)


def _launch_nodes(monkeypatch, **args: str) -> list[dict]:
    """The actions ssp.launch.py starts for these launch arguments (defaults: the file's own), as keyword dicts
    with ``action``: "Node" or "LifecycleNode". launch/launch_ros are not on PyPI, so the calls the file makes
    stand in: ``LaunchConfiguration(name).perform(context)`` returns the argument's string (as launch does),
    ``FindPackageShare`` gives this checkout (as the install's share/ssp_ros), the node actions keep their
    keyword arguments."""
    import sys
    import types

    tree = ast.parse((LAUNCH / "ssp.launch.py").read_text())
    defaults = {first_string(c): keyword(c, "default_value").value for c in calls(tree, "DeclareLaunchArgument")
                if isinstance(keyword(c, "default_value"), ast.Constant)}
    values = {**defaults, "config": str(ROOT / "config" / "ssp.yaml"),
              "fastdds_profile": str(ROOT / "config" / "fastdds.xml"), **args}  # FindPackageShare's defaults
    stubs = {name: types.ModuleType(name) for name in ("launch", "launch.actions", "launch.substitutions",
                                                       "launch_ros", "launch_ros.actions", "launch_ros.substitutions")}
    stubs["launch"].LaunchContext = stubs["launch"].LaunchDescription = object
    stubs["launch.actions"].DeclareLaunchArgument = stubs["launch.actions"].OpaqueFunction = object
    stubs["launch.substitutions"].PathJoinSubstitution = object
    stubs["launch.substitutions"].LaunchConfiguration = lambda name: types.SimpleNamespace(
        perform=lambda context: values[name])
    stubs["launch_ros.actions"].Node = lambda **kwargs: {"action": "Node", **kwargs}
    stubs["launch_ros.actions"].LifecycleNode = lambda *, name, namespace, **kwargs: {
        "action": "LifecycleNode", "name": name, "namespace": namespace, **kwargs}  # both required, as in humble
    stubs["launch_ros.substitutions"].FindPackageShare = lambda package: types.SimpleNamespace(
        perform=lambda context: str(ROOT))
    for name, module in stubs.items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("ssp_launch", LAUNCH / "ssp.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._nodes(None)


def _node_parameters(monkeypatch, **args: str) -> list:
    """The parameters ssp.launch.py gives the node for these launch arguments."""
    return _launch_nodes(monkeypatch, **args)[0]["parameters"]


def test_tensorrt_backend_from_the_launch_file_gives_a_valid_config(monkeypatch, tmp_path) -> None:
    """``backend:=tensorrt export_dir:=...`` (the README's line) must not end in "tensorrt runs on a GPU":
    with the shipped config on cpu, the launch file sets cuda unless ``device`` is given or the config names a
    GPU; launch arguments win over a params_file's node-specific keys."""
    from ssp_ros.config import load_config
    from ssp_ros.ros.params import config_with_params

    def config(**args: str):
        (params,) = _node_parameters(monkeypatch, **args)
        path = params.pop("config_file")
        params.pop("use_sim_time")
        return config_with_params(load_config(path), params)

    cfg = config(backend="tensorrt", export_dir="/opt/ssp/export")
    assert (cfg.runtime.backend, cfg.runtime.device, cfg.runtime.export_dir) == ("tensorrt", "cuda", "/opt/ssp/export")
    assert config(backend="tensorrt", device="cuda:1", export_dir="/x").runtime.device == "cuda:1"
    assert config().runtime.device == "cpu", "no arguments: the config file decides"
    gpu = tmp_path / "gpu.yaml"
    gpu.write_text(yaml.safe_dump({"runtime": {"device": "cuda:1"}}))
    assert config(config=str(gpu), backend="tensorrt", export_dir="/x").runtime.device == "cuda:1"
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump({
        "/**": {"ros__parameters": {"propagation": {"max_time_gap_s": 2.0}}},
        "ssp": {"ros__parameters": {"runtime.backend": "onnxruntime", "propagation.max_time_gap_s": 3.0}}}))
    cfg = config(params_file=str(params_file), backend="tensorrt", export_dir="/x")
    assert cfg.runtime.backend == "tensorrt", "the launch argument wins over the file's node-specific key"
    assert cfg.propagation.max_time_gap_s == 3.0, "the node's own section wins over the wildcard one"


def test_the_node_runs_with_the_fast_dds_profile_unless_it_is_emptied(monkeypatch) -> None:
    """``fastdds_profile`` (default: the installed config/fastdds.xml) reaches the node as the variable its
    distro's Fast DDS reads (both where ROS_DISTRO is unset); ``fastdds_profile:=`` leaves the node the shell's
    environment; RViz gets none."""
    tree = ast.parse((LAUNCH / "ssp.launch.py").read_text())
    (declared,) = [c for c in calls(tree, "DeclareLaunchArgument") if first_string(c) == "fastdds_profile"]
    assert ast.unparse(keyword(declared, "default_value")) == "PathJoinSubstitution([share, 'config', 'fastdds.xml'])"
    monkeypatch.delenv("ROS_DISTRO", raising=False)
    node, rviz = _launch_nodes(monkeypatch, use_rviz="true")
    shipped = str(ROOT / "config" / "fastdds.xml")
    assert node["additional_env"] == {"FASTRTPS_DEFAULT_PROFILES_FILE": shipped,
                                      "FASTDDS_DEFAULT_PROFILES_FILE": shipped}
    assert "additional_env" not in rviz
    (managed,) = _launch_nodes(monkeypatch, lifecycle="true", fastdds_profile="/etc/mine.xml")
    assert set(managed["additional_env"].values()) == {"/etc/mine.xml"}
    (plain,) = _launch_nodes(monkeypatch, fastdds_profile="")
    assert plain["additional_env"] == {}
    for distro, name in (("humble", "FASTRTPS_DEFAULT_PROFILES_FILE"), ("jazzy", "FASTRTPS_DEFAULT_PROFILES_FILE"),
                         ("kilted", "FASTDDS_DEFAULT_PROFILES_FILE"), ("rolling", "FASTDDS_DEFAULT_PROFILES_FILE")):
        monkeypatch.setenv("ROS_DISTRO", distro)
        (node,) = _launch_nodes(monkeypatch)
        assert node["additional_env"] == {name: shipped}, distro


def test_replay_launch_plays_the_bag_into_the_node() -> None:
    tree = ast.parse((LAUNCH / "replay.launch.py").read_text())
    (process,) = calls(tree, "ExecuteProcess")
    command = keyword(process, "cmd")
    assert [e.value for e in command.elts[:3]] == ["ros2", "bag", "play"]
    assert "--clock" in [e.value for e in command.elts if isinstance(e, ast.Constant)]
    (include,) = calls(tree, "IncludeLaunchDescription")
    assert "ssp.launch.py" in ast.unparse(include) and "'use_sim_time': 'true'" in ast.unparse(include)


def test_rviz_layout_shows_the_node_outputs() -> None:
    layout = yaml.safe_load((ROOT / "config" / "ssp.rviz").read_text())
    displays = layout["Visualization Manager"]["Displays"]
    topics = {d["Topic"]["Value"]: d for d in displays if d["Class"] == "rviz_default_plugins/Image"}
    outputs = {f"/{NODE_NAME}/{name}" for name in OUTPUTS if name != "similarity"}  # the default outputs
    assert set(topics) <= outputs and {"/ssp/overlay", "/ssp/mask"} <= set(topics)
    assert topics["/ssp/overlay"]["Enabled"] and topics["/ssp/mask"]["Enabled"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_launch_file_imports_and_builds(name: str) -> None:
    pytest.importorskip("launch_ros", reason="ROS 2 launch_ros is not installed (source /opt/ros/<distro>/setup.bash)")
    from launch.actions import DeclareLaunchArgument

    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), LAUNCH / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    declared = {e.name for e in description.entities if isinstance(e, DeclareLaunchArgument)}
    assert declared == EXPECTED[name]

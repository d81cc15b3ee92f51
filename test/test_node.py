import importlib.util

import pytest

from ssp_ros import node


@pytest.mark.skipif(importlib.util.find_spec("rclpy") is not None, reason="rclpy is installed: ROS path")
def test_node_without_ros_explains_what_to_source(capsys) -> None:
    assert node.main([]) == 1
    assert "rclpy is not importable: source a ROS 2 installation" in capsys.readouterr().err


def test_node_module_imports_no_ros_at_top_level() -> None:
    import ast
    from pathlib import Path

    tree = ast.parse(Path(node.__file__).read_text())
    top = {alias.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import) for alias in n.names}
    top |= {n.module.split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom) and n.module}
    ros = {"rclpy", "sensor_msgs", "std_srvs", "rcl_interfaces", "diagnostic_updater", "vision_msgs", "cv_bridge"}
    assert not top & ros, "ROS packages are imported inside the functions that need them"


class _Record:
    def __init__(self, **fields) -> None:
        self.__dict__.update(fields)


class _FakeNode:
    """declare_parameter/get_parameter as rclpy does them: an override wins over the declared default."""

    def __init__(self, overrides: dict) -> None:
        self.overrides, self.params, self.descriptors = overrides, {}, {}

    def declare_parameter(self, name, value, descriptor):
        self.params[name] = self.overrides.get(name, value)
        self.descriptors[name] = descriptor

    def get_parameter(self, name):
        return _Record(value=self.params[name])


@pytest.fixture
def fake_rcl_interfaces(monkeypatch):
    import sys
    import types

    msg = types.ModuleType("rcl_interfaces.msg")
    msg.ParameterDescriptor = lambda **kw: _Record(floating_point_range=[], integer_range=[], **kw)
    msg.FloatingPointRange = lambda **kw: _Record(**kw)
    msg.IntegerRange = lambda **kw: _Record(**kw)
    package = types.ModuleType("rcl_interfaces")
    package.msg = msg
    monkeypatch.setitem(sys.modules, "rcl_interfaces", package)
    monkeypatch.setitem(sys.modules, "rcl_interfaces.msg", msg)


def test_parameters_come_from_the_config_file_then_overrides(fake_rcl_interfaces, tmp_path) -> None:
    import yaml

    from ssp_ros.errors import ConfigError

    config = tmp_path / "ssp.yaml"
    config.write_text(yaml.safe_dump({"propagation": {"max_time_gap_s": 0.8}, "node": {"max_age_ms": 300.0}}))
    fake = _FakeNode({"config_file": str(config), "node.max_age_ms": 120, "runtime.backend": "torch"})
    cfg = node.declare_parameters(fake)
    assert cfg.propagation.max_time_gap_s == 0.8, "the file's value is the default"
    assert cfg.node.max_age_ms == 120.0, "an override (an int from a launch file) wins and becomes a float"
    gap = fake.descriptors["propagation.max_time_gap_s"]
    assert not gap.read_only and gap.floating_point_range[0].to_value == 60.0
    assert fake.descriptors["registration.min_inliers"].integer_range[0].from_value == 4
    assert fake.descriptors["runtime.backend"].read_only
    with pytest.raises(ConfigError, match=r"ROS parameters: propagation.max_time_gap_s: must be in \(0.0, inf\]"):
        node.declare_parameters(_FakeNode({"propagation.max_time_gap_s": -1.0}))


def test_rclpy_messages_are_built_with_byte_arrays() -> None:
    import numpy as np

    built = node.RclpyMessages(_Record).image("HEADER", np.arange(6, dtype=np.uint8).reshape(2, 3), "mono8")
    assert built.header == "HEADER" and (built.height, built.width, built.step, built.encoding) == (2, 3, 3, "mono8")
    assert built.data.typecode == "B" and list(built.data) == [0, 1, 2, 3, 4, 5]

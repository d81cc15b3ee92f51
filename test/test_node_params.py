import dataclasses

import pytest

from ssp_ros.config import SspConfig, load_config
from ssp_ros.errors import ConfigError
from ssp_ros.ros.params import PARAMS, SPECS, check_dynamic, config_with_params, param_values


def test_every_parameter_is_a_config_key_with_a_ros_value() -> None:
    cfg = load_config()
    values = param_values(cfg)
    assert list(values) == [spec.name for spec in PARAMS]
    for name, value in values.items():
        section, key = name.split(".")
        assert key in {f.name for f in dataclasses.fields(getattr(cfg, section))}, name
        assert isinstance(value, (bool, int, float, str)), f"{name}: ROS parameters cannot hold {value!r}"
    assert values["runtime.export_dir"] == "", "None travels as an empty string"


def test_values_round_trip_to_the_same_config() -> None:
    cfg = load_config()
    assert config_with_params(cfg, param_values(cfg)) == cfg


def test_overrides_are_applied_and_converted() -> None:
    cfg = config_with_params(SspConfig(), {"node.max_age_ms": 250, "runtime.export_dir": "models/export",
                                           "propagation.enabled": False})
    assert cfg.node.max_age_ms == 250.0 and isinstance(cfg.node.max_age_ms, float)
    assert cfg.runtime.export_dir == "models/export" and cfg.propagation.enabled is False
    assert config_with_params(cfg, {"runtime.export_dir": ""}).runtime.export_dir is None


@pytest.mark.parametrize("values, message", [
    ({"node.max_age_ms": -1.0}, r"ROS parameters: node.max_age_ms: must be in \[0.0, inf\], got -1.0"),
    ({"registration.min_inliers": 2.5}, "registration.min_inliers: expected int, got 2.5"),
    ({"node.imagetopic": "x"}, "node.imagetopic: not a parameter of this node"),
    ({"runtime.backend": "tensorrtt"}, "runtime.backend: expected one of"),
])
def test_bad_values_name_the_parameter(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_with_params(SspConfig(), values)


def test_ros_ranges_sit_inside_what_the_config_accepts() -> None:
    for spec in PARAMS:
        if spec.low is None:
            continue
        for bound in (spec.low, spec.high):
            value = type(param_values(SspConfig())[spec.name])(bound)
            config_with_params(SspConfig(), {spec.name: value})  # raises if the ROS range allows a refused value


def test_only_dynamic_parameters_change_in_flight() -> None:
    check_dynamic(["propagation.max_time_gap_s", "registration.min_inliers", "use_sim_time"])
    with pytest.raises(ConfigError, match="runtime.backend, node.reliable: cannot change while the node runs"):
        check_dynamic(["runtime.backend", "node.reliable"])
    assert {name for name, spec in SPECS.items() if spec.dynamic} >= {
        "propagation.enabled", "propagation.max_time_gap_s", "registration.min_inliers", "node.max_age_ms"}

import dataclasses
from pathlib import Path

import pytest

from ssp_ros.config import SspConfig, load_config
from ssp_ros.errors import ConfigError
from ssp_ros.ros.params import (
    PARAMS,
    SECTIONS,
    SPECS,
    check_dynamic,
    config_with_params,
    markdown_table,
    param_values,
)


def test_every_parameter_is_a_config_key_with_a_ros_value() -> None:
    cfg = load_config()
    values = param_values(cfg)
    assert list(values) == [spec.name for spec in PARAMS]
    for name, value in values.items():
        section, key = name.split(".")
        assert key in {f.name for f in dataclasses.fields(getattr(cfg, section))}, name
        assert isinstance(value, (bool, int, float, str)), f"{name}: ROS parameters cannot hold {value!r}"
    assert param_values(SspConfig())["runtime.export_dir"] == "", "None travels as an empty string"


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
    ({"node.max_age_ms": -1.0}, r"ROS parameters: node.max_age_ms: must be in \[0.0, 60000.0\], got -1.0"),
    ({"registration.min_inliers": 2.5}, "registration.min_inliers: expected int, got 2.5"),
    ({"node.imagetopic": "x"}, "node.imagetopic: not a parameter of this node"),
    ({"runtime.backend": "tensorrtt"}, "runtime.backend: expected one of"),
])
def test_bad_values_name_the_parameter(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_with_params(SspConfig(), values)


def test_ros_ranges_are_the_config_bounds() -> None:
    """One source: each parameter's bounds are its config field's, so a closed end is accepted by both and an
    open end (which a ROS range cannot express) is refused by the config with the parameter named."""
    bounded = [spec for spec in PARAMS if spec.bounds is not None and spec.bounds.finite]
    assert {spec.name for spec in bounded} >= {"node.max_age_ms", "propagation.max_time_gap_s",
                                                "registration.min_inliers", "registration.ratio"}
    for spec in bounded:
        kind = type(param_values(SspConfig())[spec.name])
        for end, is_open in ((spec.bounds.low, spec.bounds.open_low), (spec.bounds.high, spec.bounds.open_high)):
            if is_open:
                with pytest.raises(ConfigError, match=rf"{spec.name}: must be in "):
                    config_with_params(SspConfig(), {spec.name: kind(end)})
            else:
                config_with_params(SspConfig(), {spec.name: kind(end)})


def test_a_yaml_file_valid_for_the_demo_is_valid_for_the_node(tmp_path) -> None:
    """The loader and the node check the same bounds: a config file at the limits that ``load_config`` (what
    ``ssp demo`` reads) accepts becomes the node's parameters and comes back unchanged; one past a limit is
    refused by both with the same key named."""
    import yaml

    edge = {"registration": {"ratio": 1.0, "min_inliers": 10_000, "max_scale_change": 10.0},
            "propagation": {"max_time_gap_s": 60.0}, "node": {"max_age_ms": 0.0, "diagnostics_period_s": 0.05}}
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(edge))
    cfg = load_config(path)
    assert config_with_params(cfg, param_values(cfg)) == cfg
    path.write_text(yaml.safe_dump({"propagation": {"max_time_gap_s": 61.0}}))
    with pytest.raises(ConfigError, match=r"propagation\.max_time_gap_s: must be in \(0\.0, 60\.0\]"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"propagation\.max_time_gap_s: must be in \(0\.0, 60\.0\]"):
        config_with_params(cfg, {"propagation.max_time_gap_s": 61.0})


def test_descriptions_and_liveness_come_from_the_schema() -> None:
    fields = {f"{section}.{f.name}": f for section in SECTIONS
              for f in dataclasses.fields(getattr(SspConfig(), section))}
    assert set(SPECS) == set(fields)
    for name, spec in SPECS.items():
        assert spec.description == fields[name].metadata["doc"] and spec.dynamic == fields[name].metadata["live"]
    assert SPECS["runtime.backend"].choices == ("auto", "torch", "onnxruntime", "tensorrt")
    assert SPECS["runtime.export_dir"].optional and "empty = none" in SPECS["runtime.export_dir"].constraints


def test_readme_parameter_table_is_generated_from_the_schema() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert markdown_table() in readme, "README's parameter table is stale: paste the output of `ssp params`"


def test_only_dynamic_parameters_change_in_flight() -> None:
    check_dynamic(["propagation.max_time_gap_s", "registration.min_inliers", "use_sim_time"])
    with pytest.raises(ConfigError, match="runtime.backend, node.reliable: cannot change while the node runs"):
        check_dynamic(["runtime.backend", "node.reliable"])
    assert {name for name, spec in SPECS.items() if spec.dynamic} >= {
        "propagation.enabled", "propagation.max_time_gap_s", "registration.min_inliers", "node.max_age_ms"}

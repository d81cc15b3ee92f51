"""The node's ROS parameters as plain data: names, descriptions, ranges, which may change in flight.

Each parameter is a dotted key of ``SspConfig`` (``propagation.max_time_gap_s``). The node declares them
with the values of the config file (``config_file``) as defaults, so a launch file or parameter file
overrides single keys; ``config_with_params`` folds the values back into one validated ``SspConfig``.
ROS parameters cannot be null: an empty string stands for None in optional fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ssp_ros.config import SspConfig, config_from_dict, to_dict
from ssp_ros.errors import ConfigError


@dataclass(frozen=True)
class ParamSpec:
    """One ROS parameter backed by a config key."""

    name: str  # dotted key in SspConfig
    description: str
    low: float | None = None  # inclusive range for the ROS descriptor (numbers only)
    high: float | None = None
    dynamic: bool = False  # may change while the node runs (parameter callback)
    optional: bool = False  # the config value may be None ("" in ROS)


PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("node.image_topic", "input topic name before remapping"),
    ParamSpec("node.input_compressed", "subscribe to sensor_msgs/CompressedImage instead of Image"),
    ParamSpec("node.reliable", "reliable QoS for the input; false = sensor-data QoS (best effort, keep last 1)"),
    ParamSpec("node.max_age_ms", "drop frames whose header stamp is older than this (ms); 0 keeps all",
              0.0, 60_000.0, dynamic=True),
    ParamSpec("node.publish_similarity", "also publish ~/similarity (weight of the previous frame × 255)"),
    ParamSpec("node.diagnostics_period_s", "period of /diagnostics updates (s)", 0.05, 60.0),
    ParamSpec("runtime.backend", "inference runtime: torch | onnxruntime | tensorrt"),
    ParamSpec("runtime.device", "cpu | cuda | cuda:N"),
    ParamSpec("runtime.export_dir", "folder written by `ssp export` (onnxruntime, tensorrt); empty = none",
              optional=True),
    ParamSpec("propagation.enabled", "fuse with the previous frame (false = per-frame image model)", dynamic=True),
    ParamSpec("propagation.max_time_gap_s", "a larger gap between stamps starts over (s)", 0.001, 60.0,
              dynamic=True),
    ParamSpec("propagation.reset_on_backwards_time", "a stamp older than the previous one starts over "
              "(false: the frame is skipped)", dynamic=True),
    ParamSpec("registration.min_inliers", "fewer homography inliers -> registration failed -> start over",
              4, 10_000, dynamic=True),
    ParamSpec("registration.min_inlier_ratio", "inliers / matches below this -> registration failed", 0.0, 1.0,
              dynamic=True),
    ParamSpec("registration.max_scale_change", "per-frame zoom beyond this factor -> registration failed",
              1.001, 10.0, dynamic=True),
    ParamSpec("registration.ransac_threshold_px", "homography inlier threshold in full-resolution pixels",
              0.1, 50.0, dynamic=True),
    ParamSpec("registration.ratio", "Lowe ratio test for keypoint matches", 0.05, 1.0, dynamic=True),
)
SPECS = {spec.name: spec for spec in PARAMS}


def _get(data: dict, name: str) -> Any:
    section, key = name.split(".")
    return data[section][key]


def param_values(cfg: SspConfig) -> dict[str, Any]:
    """The ROS value of every parameter in ``cfg`` (None → "")."""
    data = to_dict(cfg)
    return {spec.name: "" if _get(data, spec.name) is None else _get(data, spec.name) for spec in PARAMS}


def config_with_params(cfg: SspConfig, values: dict[str, Any], source: str = "ROS parameters") -> SspConfig:
    """``cfg`` with ``values`` (parameter name → ROS value) applied and validated; ConfigError names the key."""
    data = to_dict(cfg)
    for name, value in values.items():
        spec = SPECS.get(name)
        if spec is None:
            raise ConfigError(f"{source}: {name}: not a parameter of this node (known: {', '.join(SPECS)})")
        if spec.optional and value == "":
            value = None
        if isinstance(value, int) and not isinstance(value, bool) and isinstance(_get(data, name), float):
            value = float(value)  # ROS launch files pass 1 for 1.0
        section, key = name.split(".")
        data[section][key] = value
    return config_from_dict(SspConfig, data, source)


def check_dynamic(names: list[str]) -> None:
    """ConfigError unless every name may change while the node runs."""
    fixed = [name for name in names if name in SPECS and not SPECS[name].dynamic]
    if fixed:
        raise ConfigError(f"{', '.join(fixed)}: cannot change while the node runs (restart it with the new value)")

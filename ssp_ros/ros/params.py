"""The node's ROS parameters, derived from the config schema: names, descriptions, ranges, which may change
in flight.

Every field of the sections in ``SECTIONS`` is a parameter named by its dotted key
(``propagation.max_time_gap_s``); its description, bounds and whether it may change while the node runs come
from the field's ``setting`` in ``ssp_ros/config.py``, the one place they are written. The node declares them
with the values of the config file (``config_file``) as defaults, so a launch file or parameter file
overrides single keys; ``config_with_params`` folds the values back into one validated ``SspConfig``. ROS
parameters cannot be null: an empty string stands for None in optional fields.
"""

from __future__ import annotations

import dataclasses
import json
import types
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from ssp_ros.config import SspConfig
from ssp_ros.errors import ConfigError
from ssp_ros.schema import Bounds, config_from_dict, to_dict

SECTIONS = ("node", "runtime", "propagation", "registration")  # the config sections a running node uses


@dataclass(frozen=True)
class ParamSpec:
    """One ROS parameter backed by a config key (all of it read from the schema)."""

    name: str  # dotted key in SspConfig
    description: str
    bounds: Bounds | None  # the config's bounds (a ROS range where both ends are finite)
    dynamic: bool  # may change while the node runs (parameter callback)
    optional: bool  # the config value may be None ("" in ROS)
    choices: tuple[str, ...] = ()  # the allowed strings of a Literal field

    @property
    def constraints(self) -> str:
        """The ROS descriptor's ``additional_constraints``: what the range cannot say."""
        parts = []
        if self.choices:
            parts.append(f"one of: {', '.join(self.choices)}")
        if self.bounds is not None:
            parts.append(f"in {self.bounds}")
        if self.optional:
            parts.append("empty = none")
        return "; ".join(parts)


def _spec(section: str, f: dataclasses.Field, hint: Any) -> ParamSpec:
    optional = get_origin(hint) in (Union, types.UnionType) and type(None) in get_args(hint)
    inner = next((a for a in get_args(hint) if a is not type(None)), hint) if optional else hint
    choices = tuple(get_args(inner)) if get_origin(inner) is Literal else ()
    return ParamSpec(f"{section}.{f.name}", f.metadata["doc"], f.metadata["bounds"], f.metadata["live"], optional,
                     choices)


def _specs() -> tuple[ParamSpec, ...]:
    sections = get_type_hints(SspConfig)
    return tuple(_spec(section, f, get_type_hints(sections[section])[f.name])
                 for section in SECTIONS for f in dataclasses.fields(sections[section]))


PARAMS: tuple[ParamSpec, ...] = _specs()
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


def markdown_table(cfg: SspConfig | None = None) -> str:
    """Every parameter as a Markdown table (name, default, range/choices, live, description): ``ssp params``,
    and the README's table, which a test keeps equal to this."""
    values = param_values(cfg or SspConfig())
    rows = ["| parameter | default | allowed | changes in flight | description |", "|---|---|---|---|---|"]
    for spec in PARAMS:
        cells = (f"`{spec.name}`", f"`{json.dumps(values[spec.name])}`", spec.constraints or "any",
                 "yes" if spec.dynamic else "no", spec.description)
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows)

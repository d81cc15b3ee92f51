"""The schema machinery every configuration shares: ``setting`` fields, ``Bounds``, the strict YAML converter.

A section is a dataclass whose fields are ``setting``s: the default, a description (with its unit), the allowed
``Bounds`` and whether the value may change while the node runs. ``config_from_dict`` builds a dataclass from
plain data: unknown keys, wrong types and out-of-range values raise ``ConfigError`` naming the source and the
dotted key. The runtime sections are in ``config.py``, the synthetic scene's in ``synthetic/config.py``, the
training recipe's in ``training/ssp_train/config.py``.

We use stdlib dataclasses plus a small strict converter rather than pydantic so the drone image needs
no extra compiled dependency for what is about a hundred lines.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from ssp_ros.errors import ConfigError


def require(ok: bool, key: str, message: str) -> None:
    """Raise a ConfigError for ``key`` unless ``ok``; used by the ``__post_init__`` checks that span fields."""
    if not ok:
        raise ConfigError(f"{key}: {message}")


@dataclass(frozen=True)
class Bounds:
    """The allowed interval of a number; either end may be open (the value itself excluded)."""

    low: float = -math.inf
    high: float = math.inf
    open_low: bool = False
    open_high: bool = False

    def contains(self, value: float) -> bool:
        return (self.low < value if self.open_low else self.low <= value) and \
            (value < self.high if self.open_high else value <= self.high)

    @property
    def finite(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    def __str__(self) -> str:
        return f"{'(' if self.open_low else '['}{self.low}, {self.high}{')' if self.open_high else ']'}"


def setting(default: Any, doc: str, bounds: Bounds | None = None, live: bool = False) -> Any:
    """A config field that carries its own documentation: ``doc`` (meaning and unit), ``bounds`` (checked on
    every load, and the range of its ROS parameter) and ``live`` (may change while the node runs). The
    loader, the ROS parameter descriptors and ``ssp params`` all read these; nothing else restates them."""
    return field(default=default, metadata={"doc": doc, "bounds": bounds, "live": live})


def _check(section: object, key: str, bounds: Bounds) -> None:
    value = getattr(section, key)
    if not bounds.contains(value):
        raise ConfigError(f"{key}: must be in {bounds}, got {value}")


def check_bounds(section: object) -> None:
    """ConfigError naming the first field of the dataclass ``section`` whose value is outside its ``bounds``."""
    for f in dataclasses.fields(section):
        if f.metadata.get("bounds") is not None:
            _check(section, f.name, f.metadata["bounds"])


def check_range(section: object, key: str, low: float, high: float = math.inf, *, open_low: bool = False,
                open_high: bool = False) -> None:
    """Require ``section.key`` in [low, high] (either end open by its flag): for schemas whose fields are not
    ``setting``s (the training recipe)."""
    _check(section, key, Bounds(low, high, open_low, open_high))


def check_pair(value: tuple[float, float], key: str, low: float, high: float) -> None:
    """A (min, max) pair inside [low, high] with min <= max."""
    require(low <= value[0] <= value[1] <= high, key, f"expected {low} <= min <= max <= {high}, got {list(value)}")


T = TypeVar("T")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML value to ``tp`` or raise ConfigError naming ``key``. Handles the types our schema uses."""
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping (section), got {value!r}")
        return _build(tp, value, key)
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(value, inner, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {list(args)}, got {value!r}")
        return value
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]: a list of any length
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{key}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(tp)
    if ok is None:
        raise TypeError(f"config schema uses unsupported type {tp!r} at {key}")
    if not ok:
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    return float(value) if tp is float else value


def _build(cls: type[T], data: dict, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping: unknown keys and bad values raise ConfigError with dotted keys."""
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    dotted = (prefix + ".") if prefix else ""
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (valid keys: {', '.join(names)})"
            raise ConfigError(f"{dotted}{key}: unknown key{hint}")
        kwargs[key] = _convert(value, hints[key], dotted + key)
    try:
        return cls(**kwargs)
    except ConfigError as err:
        raise ConfigError(f"{dotted}{err}") from None


def config_from_dict(cls: type[T], data: dict | None, source: str = "<dict>") -> T:
    """Build ``cls`` from a plain mapping; errors are prefixed with ``source`` (usually a file name)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return _build(cls, data)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file; a missing file or a syntax error raises ConfigError naming the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file ({err.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from None


def load_section(cls: type[T], path: str | Path) -> T:
    """Load one section's dataclass from a YAML file whose top level holds that section's keys."""
    return config_from_dict(cls, read_yaml(path), str(path))


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    """Nested YAML data as ``{"section.key": value}`` (how ROS parameters and recipe diffs name keys)."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def to_dict(config: Any) -> dict:
    """A dataclass config as plain YAML-ready data (tuples become lists), to save next to each run."""
    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value
    return plain(dataclasses.asdict(config))

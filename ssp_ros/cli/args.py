"""Argument types and helpers shared by the ``ssp`` sub-commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from ssp_ros.schema import config_from_dict, load_section, to_dict
from ssp_ros.synthetic.config import SyntheticConfig


def size(text: str) -> tuple[int, int]:
    """Parse ``HxW`` (e.g. 736x1280)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW like 368x640, got {text!r}") from None
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"height and width must be positive, got {text!r}")
    return h, w


def positive(text: str) -> int:
    """Parse an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def scenario(path: Path | None, frame_size: tuple[int, int] | None, default: SyntheticConfig) -> SyntheticConfig:
    """The synthetic scenario from ``--scenario`` (else ``default``), with ``--size`` applied and validated."""
    cfg = load_section(SyntheticConfig, path) if path else default
    if frame_size:
        cfg = config_from_dict(SyntheticConfig, {**to_dict(cfg), "height": frame_size[0], "width": frame_size[1]},
                               "--size")
    return cfg

"""What a camera frame must be before anything runs on it, checked in one place (pipeline and registration), and
a frame with its ground truth (``SyntheticFrame``: made by ``synthetic/``, written and read back by ``io.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ssp_ros.errors import FrameError


@dataclass
class SyntheticFrame:
    """One frame of synthetic video with its ground truth (generated, or read back from a sequence folder)."""

    index: int  # frame number in the video
    step: int  # time step; frames skip a step where the camera dropped one
    stamp: float  # seconds since the first time step
    image: np.ndarray  # H×W×3 uint8 RGB, with nuisances
    labels: np.ndarray  # H×W uint8 class ids (UAVid)
    world_to_image: np.ndarray  # 3×3 homography, world-texture pixels → image pixels
    flow: np.ndarray | None  # H×W×2 float32 forward flow (dx, dy) to the next frame; None on the last frame
    valid: np.ndarray | None  # H×W bool, where ``flow`` lands on the same surface inside the next frame
    sky: np.ndarray | None = None  # H×W bool, the sky (labelled clutter); None when not known (loaded frames)


def check_frame(frame: Any, name: str = "frame", min_side: int = 1) -> None:
    """Raise FrameError unless ``frame`` is an H×W×3 uint8 RGB numpy array with at least ``min_side`` pixels
    per side; the message starts with ``name`` and says how to fix the frame."""
    if not isinstance(frame, np.ndarray):
        raise FrameError(f"{name}: expected an H×W×3 uint8 RGB numpy array, got {type(frame).__name__}")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise FrameError(f"{name}: must be H×W×3 RGB, got shape {frame.shape} (convert mono/BGRA/Bayer first)")
    if frame.dtype != np.uint8:
        raise FrameError(f"{name}: must be uint8, got dtype {frame.dtype} (scale 16-bit or float images to 8 bits "
                         "first)")
    height, width = frame.shape[:2]
    if min(height, width) < max(min_side, 1):
        raise FrameError(f"{name}: {'empty ' if min(height, width) == 0 else ''}image of {height}x{width} is too "
                         f"small (at least {max(min_side, 1)} px per side)")

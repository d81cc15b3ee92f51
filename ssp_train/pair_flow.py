"""Optical flow of a training pair (frame k − gap → frame k) in both directions: exact for synthetic video,
estimated (OpenCV DIS by default, RAFT with local weights; ``ssp_ros.eval.flow``) for real video.

Flows are H×W×2 float32 (dx, dy) with H×W bool validity, in the convention of ``ssp_ros.eval.flow``: ``forward``
takes each pixel of frame k − gap to frame k, ``backward`` each pixel of frame k to frame k − gap.

Synthetic video carries the exact flow of each frame to the next (``SyntheticFrame.flow``, movers included).
``synthetic_pair_flow`` chains those steps for a gap > 1 (each step sampled at the nearest pixel: the flow's
change over half a pixel is ~1e-3 px on this smooth motion). The generator has no backward flow; the backward
flow here is the exact background homography's, kept valid only where the exact forward flow of its target
pixel comes back within ``ROUND_TRIP_PX``: exact on the ground, invalid on movers and on what they uncover.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ssp_ros.errors import SspError
from ssp_ros.eval.flow import FlowEstimator
from ssp_ros.frames import SyntheticFrame
from ssp_ros.synthetic import relative_homography

ROUND_TRIP_PX = 1.0  # backward flow kept where forward(backward(p)) returns within this distance of p


@dataclass(frozen=True)
class PairFlow:
    """Flow of a pair in both directions, with validity (see the module docstring)."""

    forward: np.ndarray  # H×W×2 float32, frame k − gap → frame k
    forward_valid: np.ndarray  # H×W bool
    backward: np.ndarray  # H×W×2 float32, frame k → frame k − gap
    backward_valid: np.ndarray  # H×W bool


def _pixel_grid(height: int, width: int) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return np.stack([xs, ys], axis=-1)


def _nearest(points: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rounded (rows, cols) of H×W×2 points, clipped into the frame, and whether they were inside."""
    cols = np.round(points[..., 0]).astype(np.int64)
    rows = np.round(points[..., 1]).astype(np.int64)
    inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    return np.clip(rows, 0, height - 1), np.clip(cols, 0, width - 1), inside


def synthetic_pair_flow(frames: list[SyntheticFrame]) -> PairFlow:
    """The flow between ``frames[0]`` and ``frames[-1]``, given every frame in between (consecutive frames of a
    synthetic video generated with its flow)."""
    if len(frames) < 2:
        raise ValueError(f"a pair needs at least 2 frames, got {len(frames)}")
    if any(f.flow is None or f.valid is None for f in frames[:-1]):
        raise SspError("synthetic frames without flow: generate the sequence with keep_flow=True")
    height, width = frames[0].labels.shape
    grid = _pixel_grid(height, width)
    position = grid + frames[0].flow
    valid = frames[0].valid.copy()
    for frame in frames[1:-1]:  # chain the per-frame steps
        rows, cols, inside = _nearest(position, height, width)
        valid &= inside & frame.valid[rows, cols]
        position = position + frame.flow[rows, cols]
    forward = (position - grid).astype(np.float32)

    homography = relative_homography(frames[0], frames[-1])
    target = _apply_homography(np.linalg.inv(homography), grid)
    backward = (target - grid).astype(np.float32)
    rows, cols, inside = _nearest(target, height, width)
    returned = target + forward[rows, cols]  # back in frame k: where the exact forward flow takes the target
    round_trip = np.linalg.norm(returned - grid, axis=-1)
    backward_valid = inside & valid[rows, cols] & (round_trip <= ROUND_TRIP_PX)
    return PairFlow(forward, valid, backward, backward_valid)


def _apply_homography(homography: np.ndarray, points: np.ndarray) -> np.ndarray:
    """H×W×2 points mapped by a 3×3 homography."""
    p = points.astype(np.float64) @ homography[:, :2].T + homography[:, 2]
    return (p[..., :2] / p[..., 2:3]).astype(np.float32)


def estimated_pair_flow(estimator: FlowEstimator, prev: np.ndarray, cur: np.ndarray) -> PairFlow:
    """Both directions with a flow estimator of ``ssp_ros.eval.flow`` (validity: its forward-backward check)."""
    forward, forward_valid = estimator(prev, cur)
    backward, backward_valid = estimator(cur, prev)
    return PairFlow(forward, forward_valid, backward, backward_valid)

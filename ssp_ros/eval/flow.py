"""Optical flow for evaluation and training: nearest warping, forward-backward checks, DIS and RAFT.

Convention: ``flow`` is H×W×2 float32 (dx, dy) taking each pixel p of frame k to ``p + flow[p]`` in
frame k+1; ``valid`` is H×W bool. Synthetic video carries its exact flow; for real video OpenCV's DIS is
the default estimator and torchvision's RAFT is used when a local weights file is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol, get_args

import cv2
import numpy as np

from ssp_ros.errors import SspError

FlowName = Literal["dis", "raft", "raft_small"]
FLOW_ESTIMATORS: tuple[str, ...] = get_args(FlowName)  # the names make_flow_estimator takes


def flow_targets(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest target pixel of each source pixel: (cols, rows) as int arrays and an inside-the-frame mask."""
    h, w = flow.shape[:2]
    cols = np.round(np.arange(w, dtype=np.float32)[None, :] + flow[..., 0]).astype(np.int64)
    rows = np.round(np.arange(h, dtype=np.float32)[:, None] + flow[..., 1]).astype(np.int64)
    inside = (cols >= 0) & (cols < w) & (rows >= 0) & (rows < h)
    return np.clip(cols, 0, w - 1), np.clip(rows, 0, h - 1), inside


def warp_nearest(next_values: np.ndarray, flow: np.ndarray, valid: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Pull frame k+1 values back to frame k: ``out[p] = next_values[round(p + flow[p])]``.

    Returns the warped H×W(×C) array and the H×W mask of pixels whose target lies inside the frame
    (and is ``valid``); other pixels hold an arbitrary value and must be ignored.
    """
    if next_values.shape[:2] != flow.shape[:2]:
        raise ValueError(f"values {next_values.shape[:2]} and flow {flow.shape[:2]} differ in size")
    cols, rows, ok = flow_targets(flow)
    if valid is not None:
        ok &= valid
    return next_values[rows, cols], ok


def forward_backward_valid(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """Pixels whose forward flow is undone by the backward flow at its target (a non-occlusion test).

    ``|f + b(p + f)|² < 0.01 (|f|² + |b(p + f)|²) + 0.5``, the test used for the KD occlusion mask.
    """
    back, inside = warp_nearest(backward, forward)
    err = np.sum((forward + back) ** 2, axis=-1)
    bound = 0.01 * (np.sum(forward**2, axis=-1) + np.sum(back**2, axis=-1)) + 0.5
    return inside & (err < bound)


class FlowEstimator(Protocol):
    """Estimates forward flow between two RGB uint8 frames of the same size."""

    def __call__(self, prev: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class DISFlow:
    """OpenCV DIS optical flow on grey images, with a forward-backward validity check."""

    def __init__(self, preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) -> None:
        self.dis = cv2.DISOpticalFlow_create(preset)

    def __call__(self, prev: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a, b = cv2.cvtColor(prev, cv2.COLOR_RGB2GRAY), cv2.cvtColor(cur, cv2.COLOR_RGB2GRAY)
        forward = self.dis.calc(a, b, None)
        backward = self.dis.calc(b, a, None)
        return forward, forward_backward_valid(forward, backward)


class RAFTFlow:
    """torchvision RAFT (large or small) with weights from a local file; 20 refinement iterations as in the paper."""

    def __init__(self, weights: str | Path, small: bool = False, iterations: int = 20, device: str = "cpu") -> None:
        import torch
        from torchvision.models.optical_flow import raft_large, raft_small

        path = Path(weights)
        if not path.is_file():
            raise SspError(f"{path}: RAFT weights file not found")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - torch raises many types for a bad file; report them as one
            raise SspError(f"{path}: cannot read RAFT weights ({err})") from None
        self.model = (raft_small if small else raft_large)(weights=None)
        try:
            self.model.load_state_dict(state)
        except RuntimeError as err:
            kind = "raft_small" if small else "raft_large"
            raise SspError(f"{path}: weights do not fit torchvision {kind}: {str(err).splitlines()[0]}") from None
        self.model.eval().to(device)
        self.torch, self.device, self.iterations = torch, device, iterations

    def _flow(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        torch = self.torch
        h, w = a.shape[:2]
        if min(h, w) < 128:  # RAFT's correlation pyramid needs 1/8-resolution maps of at least 16 px
            raise SspError(f"RAFT needs frames of at least 128 px per side, got {h}x{w}")
        ph, pw = (-h) % 8, (-w) % 8  # RAFT needs sizes divisible by 8: pad bottom/right by replication

        def prep(x: np.ndarray) -> torch.Tensor:
            t = torch.from_numpy(x).permute(2, 0, 1)[None].float().to(self.device) / 127.5 - 1.0
            return torch.nn.functional.pad(t, (0, pw, 0, ph), mode="replicate")

        with torch.inference_mode():
            flows = self.model(prep(a), prep(b), num_flow_updates=self.iterations)
        return flows[-1][0, :, :h, :w].permute(1, 2, 0).cpu().numpy().astype(np.float32)

    def __call__(self, prev: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        forward = self._flow(prev, cur)
        return forward, forward_backward_valid(forward, self._flow(cur, prev))


def make_flow_estimator(name: str, weights: str | Path | None = None) -> FlowEstimator:
    """``dis`` (default for real video) or ``raft`` / ``raft_small`` (needs ``weights``)."""
    if name == "dis":
        return DISFlow()
    if name in ("raft", "raft_small"):
        if weights is None:
            raise SspError(f"flow '{name}' needs a local weights file (no downloads at run time)")
        return RAFTFlow(weights, small=name == "raft_small")
    raise SspError(f"unknown flow estimator '{name}' (choose {', '.join(FLOW_ESTIMATORS)})")

"""The previous frame's stride-4 state warped into the current frame on the CPU, with OpenCV.

The exported fusion graph warps with GridSample, which ONNX Runtime's CPU provider runs one sample at a
time; torch's CPU ``grid_sample`` is little faster. Recent OpenCV (seen on 5.0) samples 1-, 3- and
4-channel float images with SIMD and float coordinates: warping the K + C planes of the state one at a
time costs a fraction of the graph's warp (``ssp bench`` measures both). Images of more than 4 channels,
and every image in older OpenCV, take the older path, whose bilinear weights are rounded to 1/32 of a
pixel (errors of 0.2 logits and more): so the planes are warped one by one, and ``precise_warp()`` checks
once per process that this OpenCV samples at float precision. Backends warp on the CPU only when it does.

The result is the graph's (``ssp_ros.models.warp``) to float rounding: the same cell coordinates (centres
at integers), zeros outside the previous frame, and the same validity rule.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from ssp_ros.errors import SspError

# A cell is valid when its source lies between the previous map's outer cell centres, widened by this many
# cells so that float rounding keeps the border cells of an identity (the rule of ``models/warp.py``).
VALID_MARGIN = 0.0005
_FLAGS = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP  # dst(x, y) = src(to_previous · (x, y))


PRECISE_ERROR = 1e-4  # largest bilinear error (on values in [0, 1]) of a float-precision warp; 1/32-px: ~1e-3


@functools.cache
def precise_warp() -> bool:
    """Whether this OpenCV's ``warpPerspective`` samples a 1-channel float image at float precision: a ramp
    shifted by 0.37 px must come back within ``PRECISE_ERROR`` of exact bilinear interpolation."""
    ramp = np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32) ** 2, (8, 1))
    shift = np.array([[1.0, 0.0, 0.37], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    warped = cv2.warpPerspective(ramp, shift, (64, 8), flags=_FLAGS)
    exact = 0.63 * ramp[:, :-1] + 0.37 * ramp[:, 1:]
    return float(np.abs(warped[:, :-1] - exact).max()) <= PRECISE_ERROR


def warp_planes(state: np.ndarray, to_previous: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Warp a 1×C×h×w float32 map of the previous frame into the current frame.

    ``to_previous`` (3×3) maps current cells to previous cells. Bilinear; sources outside the previous map
    read zeros (as GridSample's ``padding_mode="zeros"``). Returns a 1×C×h×w float32 array (``out`` if given:
    float32, C-contiguous, the shape of ``state``).
    """
    if state.ndim != 4 or state.shape[0] != 1:
        raise ValueError(f"warp_planes takes one 1×C×h×w map, got shape {state.shape}")
    planes = np.ascontiguousarray(state, dtype=np.float32)[0]
    h, w = planes.shape[-2:]
    matrix = np.asarray(to_previous, dtype=np.float64).reshape(3, 3)
    if out is None:
        out = np.empty(state.shape, np.float32)
    elif out.shape != state.shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"warp_planes: out must be float32, C-contiguous and {state.shape}; got {out.dtype} "
                         f"{out.shape}")  # OpenCV would write a new array and leave ``out`` as it was
    warped = out
    for src, dst in zip(planes, warped[0]):
        cv2.warpPerspective(src, matrix, (w, h), dst=dst, flags=_FLAGS, borderMode=cv2.BORDER_CONSTANT,
                            borderValue=0.0)
    return warped


def validity(to_previous: np.ndarray, height: int, width: int) -> np.ndarray:
    """1×1×h×w float32: 1 where the current cell's source lies inside the previous h×w map, else 0.

    In float32, as the graph computes its sampling grid."""
    m = np.asarray(to_previous, dtype=np.float32).reshape(3, 3)
    xs = np.arange(width, dtype=np.float32)[None, :]
    ys = np.arange(height, dtype=np.float32)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):  # a source at infinity is simply not inside
        den = m[2, 0] * xs + (m[2, 1] * ys + m[2, 2])
        x = m[0, 0] * xs + (m[0, 1] * ys + m[0, 2])
        x /= den
        y = m[1, 0] * xs + (m[1, 1] * ys + m[1, 2])
        y /= den
    inside = x >= -VALID_MARGIN
    inside &= x <= width - 1 + VALID_MARGIN
    inside &= y >= -VALID_MARGIN
    inside &= y <= height - 1 + VALID_MARGIN
    return inside.reshape(1, 1, height, width).astype(np.float32)


def use_cpu_warp(requested: bool | None, on_cpu: bool) -> bool:
    """Whether a backend warps with OpenCV: ``requested`` (None: on the CPU, when ``precise_warp()``); asking for
    it off the CPU or on an OpenCV without float-precision warps is an SspError."""
    if requested is None:
        return on_cpu and precise_warp()
    if requested and not on_cpu:
        raise SspError("the OpenCV warp needs the state on the CPU")
    if requested and not precise_warp():
        raise SspError(f"OpenCV {cv2.__version__} warps with 1/32-px weights, not at float precision: the CPU warp "
                       "would drift from the fusion graph; use the graph's warp (cpu_warp off) or a newer OpenCV")
    return requested


class StateWarper:
    """Warps the previous logits and features into reused buffers, so that a stream does not map and return
    megabytes a frame (at 736×1280 the warped state is 7.5 MB): the buffers live until the next call, which
    is long enough for a backend that feeds them straight into its blend graph."""

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def _buffer(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        buffer = self._buffers.get(name)
        if buffer is None or buffer.shape != shape:
            buffer = self._buffers[name] = np.empty(shape, np.float32)
        return buffer

    def __call__(self, prev_logits: np.ndarray, prev_feats: np.ndarray,
                 to_previous: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """→ (warped logits 1×K×h×w, warped features 1×C×h×w, validity 1×1×h×w), all float32."""
        h, w = prev_logits.shape[-2:]
        logits = warp_planes(prev_logits, to_previous, self._buffer("logits", tuple(prev_logits.shape)))
        feats = warp_planes(prev_feats, to_previous, self._buffer("feats", tuple(prev_feats.shape)))
        return logits, feats, validity(to_previous, h, w)

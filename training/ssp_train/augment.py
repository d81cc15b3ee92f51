"""Augmentations of training clips: one random square crop, horizontal flip and photometric jitter, drawn once per
clip and applied identically to every frame of it (images, labels, flow), so frame-to-frame geometry stays exact.

Geometry: pixel centres sit at integer coordinates (as in ``ssp_ros.registration``). A crop and a flip are the
pixel map ``A`` (frame → augmented pixels); a homography between two frames of the clip becomes
``H' = A·H·A⁻¹`` (``conjugate``). A flow map is cropped like an image, flipped with its x component negated,
and loses validity where its target leaves the crop.

Photometric jitter is a per-pixel colour map (brightness gain, contrast around a fixed mid-grey, saturation
around each pixel's own grey), so the same input colour gives the same output colour in every frame of a clip:
the frame difference behind the TC loss's occlusion weight changes only by the common gain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MID_GREY = 127.5  # contrast pivots around this fixed value (not each frame's mean, which differs between frames)
GREY_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)  # RGB → luma (ITU-R BT.601), as OpenCV's RGB2GRAY


def crop_matrix(x0: int, y0: int) -> np.ndarray:
    """Frame pixels → pixels of the crop whose top-left pixel is (x0, y0)."""
    return np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]])


def flip_matrix(width: int) -> np.ndarray:
    """Pixels → pixels of the horizontally flipped image of ``width`` (x' = width − 1 − x)."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def conjugate(homography: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """The homography between two frames after both went through ``transform``: ``T·H·T⁻¹``, [2, 2] = 1."""
    out = transform @ homography @ np.linalg.inv(transform)
    return out / out[2, 2]


@dataclass(frozen=True)
class View:
    """A crop (row and column slices of the frame) and an optional horizontal flip, with its pixel map."""

    rows: slice
    cols: slice
    flip: bool
    transform: np.ndarray  # 3×3 frame pixels → view pixels

    def apply(self, array: np.ndarray) -> np.ndarray:
        """The view of an H×W(×C) image or label map (contiguous copy)."""
        out = array[self.rows, self.cols]
        return np.ascontiguousarray(out[:, ::-1] if self.flip else out)

    def apply_flow(self, flow: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The view of an H×W×2 flow (dx, dy) and its H×W validity: cropped, flipped with dx negated, and
        invalid where the flow's target falls outside the crop."""
        flow = self.apply(flow)
        valid = self.apply(valid)
        if self.flip:
            flow = flow * np.array([-1.0, 1.0], np.float32)
        h, w = valid.shape
        x = np.arange(w, dtype=np.float32)[None, :] + flow[..., 0]
        y = np.arange(h, dtype=np.float32)[:, None] + flow[..., 1]
        inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
        return flow.astype(np.float32), valid & inside


def random_view(rng: np.random.Generator, height: int, width: int, crop: int, flip_prob: float) -> View:
    """A random square crop of side ``crop`` (0 = the whole frame) and a flip with probability ``flip_prob``."""
    ch, cw = (height, width) if crop == 0 else (crop, crop)
    y0 = int(rng.integers(0, height - ch + 1))
    x0 = int(rng.integers(0, width - cw + 1))
    flip = bool(rng.random() < flip_prob)  # always drawn, so the flip probability never changes the crops
    transform = crop_matrix(x0, y0)
    if flip:
        transform = flip_matrix(cw) @ transform
    return View(slice(y0, y0 + ch), slice(x0, x0 + cw), flip, transform)


@dataclass(frozen=True)
class Jitter:
    """Photometric factors of one clip: ``out = grey + s·(c·(b·x − m) + m − grey)`` per pixel, clipped to 0..255,
    with brightness gain b, contrast c around the mid-grey m, saturation s around the pixel's luma."""

    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0

    def apply(self, image: np.ndarray) -> np.ndarray:
        """An H×W×3 uint8 RGB image with the jitter applied (the identity returns it unchanged)."""
        if self.brightness == self.contrast == self.saturation == 1.0:
            return image
        x = image.astype(np.float32) * self.brightness
        x = (x - MID_GREY) * self.contrast + MID_GREY
        grey = (x @ GREY_WEIGHTS)[..., None]
        x = grey + (x - grey) * self.saturation
        return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def random_jitter(rng: np.random.Generator, strengths: tuple[float, float, float]) -> Jitter:
    """Brightness, contrast and saturation factors drawn uniformly from [1 − s, 1 + s] for each strength s.

    Always draws three numbers, so switching jitter on or off never changes the other random choices.
    """
    factors = [1.0 + s * float(rng.uniform(-1.0, 1.0)) for s in strengths]
    return Jitter(*factors)

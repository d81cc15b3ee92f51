"""Procedural texture helpers for the synthetic world: smooth noise, colour fields, polygon drawing.

All drawing uses OpenCV with sub-pixel vertex precision (``shift``) so that label maps, id maps and
images rasterise the same polygon identically.
"""

from __future__ import annotations

import cv2
import numpy as np

SUBPIXEL_BITS = 4  # cv2 fillPoly fractional bits: vertices are placed to 1/16 px
_SCALE = 1 << SUBPIXEL_BITS


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale_px: float, octaves: int = 3) -> np.ndarray:
    """Multi-octave value noise, float32 H×W with zero mean and unit std.

    Each octave is a coarse random grid (cell ``scale_px / 2**o`` pixels) upsampled bicubically.
    """
    h, w = shape
    total = np.zeros(shape, np.float32)
    amplitude = 1.0
    for octave in range(octaves):
        cell = max(scale_px / (2**octave), 1.0)
        gh, gw = max(int(np.ceil(h / cell)) + 2, 2), max(int(np.ceil(w / cell)) + 2, 2)
        grid = rng.standard_normal((gh, gw)).astype(np.float32)
        up = cv2.resize(grid, (int(gw * cell), int(gh * cell)), interpolation=cv2.INTER_CUBIC)
        total += amplitude * up[:h, :w]
        amplitude *= 0.5
    total -= total.mean()
    return total / max(float(total.std()), 1e-6)


def grain(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float = 0.7) -> np.ndarray:
    """Fine per-pixel texture (blurred white noise), float32 H×W, unit std."""
    g = rng.standard_normal(shape).astype(np.float32)
    if sigma_px > 0:
        g = cv2.GaussianBlur(g, (0, 0), sigma_px)
    return g / max(float(g.std()), 1e-6)


def to_fixed(points: np.ndarray) -> np.ndarray:
    """Float N×2 pixel coordinates → int32 fixed-point vertices for ``cv2.fillPoly(..., shift=SUBPIXEL_BITS)``."""
    return np.round(np.asarray(points, np.float64) * _SCALE).astype(np.int32).reshape(-1, 1, 2)


def fill_polygon(canvas: np.ndarray, points: np.ndarray, value: float | tuple) -> None:
    """Fill one polygon (float N×2 pixel coordinates) in place, hard-edged, sub-pixel vertices."""
    cv2.fillPoly(canvas, [to_fixed(points)], value, lineType=cv2.LINE_8, shift=SUBPIXEL_BITS)


def draw_polyline(canvas: np.ndarray, points: np.ndarray, width: float, value: float | tuple) -> None:
    """Draw one thick open polyline (float N×2 pixel coordinates, ``width`` pixels) in place, sub-pixel vertices."""
    cv2.polylines(canvas, [to_fixed(points)], False, value, thickness=max(int(round(width)), 1), lineType=cv2.LINE_8,
                  shift=SUBPIXEL_BITS)


def polygon_mask(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    """Boolean H×W mask of one polygon."""
    mask = np.zeros(shape, np.uint8)
    fill_polygon(mask, points, 1)
    return mask.astype(bool)


def rectangle(center: np.ndarray, length: float, width: float, angle: float) -> np.ndarray:
    """Corners (4×2) of a rectangle of ``length`` along direction ``angle`` (radians) and ``width`` across."""
    c, s = np.cos(angle), np.sin(angle)
    along, across = np.array([c, s]) * length / 2, np.array([-s, c]) * width / 2
    return np.array([center + along + across, center - along + across, center - along - across,
                     center + along - across])


def blob_outline(center: np.ndarray, radius: float, rng: np.random.Generator, roughness: float = 0.25) -> np.ndarray:
    """An irregular closed outline (K×2) around ``center``: a circle whose radius wavers with a few harmonics."""
    k = 28
    angles = np.linspace(0, 2 * np.pi, k, endpoint=False)
    harmonics = sum(rng.normal(0, roughness / h) * np.cos(h * angles + rng.uniform(0, 2 * np.pi)) for h in (2, 3, 5))
    r = radius * np.clip(1.0 + harmonics, 0.4, 1.8)
    return center + np.stack([r * np.cos(angles), r * np.sin(angles)], axis=1)

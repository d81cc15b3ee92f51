"""The colours of the synthetic world's materials, and their per-world jitter.

``STANDARD`` holds the colours the shipped model was trained on. A world drawn with ``Colours`` ranges open
shifts each material's hue, saturation and brightness by its own random amount (the shades of one material,
e.g. the four tree greens, move together, so a material stays recognisable as one thing), and scales the
contrast of all texture. A model trained on many such worlds has to learn what grass is from its shape and
context, not from one green.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np

from ssp_ros.synthetic.config import Colours


@dataclass(frozen=True)
class Palette:
    """RGB colours (0..255, float64; one row per shade) of each material, and a texture contrast factor."""

    asphalt: np.ndarray
    marking: np.ndarray
    grass: np.ndarray
    dry_grass: np.ndarray
    dark_grass: np.ndarray
    tree_greens: np.ndarray
    soils: np.ndarray
    tiled_roofs: np.ndarray
    water_deep: np.ndarray
    water_shallow: np.ndarray
    sand: np.ndarray
    rock: np.ndarray
    dirt: np.ndarray
    contrast: float = 1.0  # multiplies the gain of every texture modulation


STANDARD = Palette(
    asphalt=np.array([98.0, 98.0, 102.0]),
    marking=np.array([222.0, 222.0, 212.0]),
    grass=np.array([92.0, 122.0, 60.0]),
    dry_grass=np.array([142.0, 138.0, 84.0]),
    dark_grass=np.array([62.0, 92.0, 46.0]),
    tree_greens=np.array([[48.0, 80.0, 38.0], [58.0, 92.0, 44.0], [66.0, 98.0, 50.0], [44.0, 70.0, 40.0]]),
    soils=np.array([[128.0, 108.0, 84.0], [150.0, 146.0, 136.0], [104.0, 98.0, 92.0]]),
    tiled_roofs=np.array([[150.0, 74.0, 56.0], [122.0, 62.0, 52.0], [78.0, 78.0, 84.0], [108.0, 92.0, 82.0]]),
    water_deep=np.array([24.0, 52.0, 70.0]),
    water_shallow=np.array([62.0, 104.0, 104.0]),
    sand=np.array([[214.0, 196.0, 158.0], [196.0, 172.0, 128.0]]),
    rock=np.array([[150.0, 146.0, 140.0], [118.0, 112.0, 106.0]]),
    dirt=np.array([[136.0, 108.0, 80.0], [112.0, 88.0, 66.0]]),
)
MATERIALS = tuple(f.name for f in dataclasses.fields(Palette) if f.name != "contrast")


def draw_palette(colours: Colours, rng: np.random.Generator) -> Palette:
    """The standard palette with each material shifted by its own draw within the ``colours`` ranges."""
    jittered = {}
    for name in MATERIALS:
        hue = rng.uniform(-colours.hue_deg, colours.hue_deg)
        saturation = 1.0 + rng.uniform(-colours.saturation, colours.saturation)
        brightness = 1.0 + rng.uniform(-colours.brightness, colours.brightness)
        jittered[name] = shift_hsv(getattr(STANDARD, name), hue, saturation, brightness)
    contrast = 1.0 + rng.uniform(-colours.texture_contrast, colours.texture_contrast)
    return Palette(**jittered, contrast=contrast)


def shift_hsv(rgb: np.ndarray, hue_deg: float, saturation: float, brightness: float) -> np.ndarray:
    """RGB colours (…×3, 0..255) with the hue turned by ``hue_deg`` and saturation and value scaled."""
    pixels = (np.asarray(rgb, np.float32).reshape(-1, 1, 3) / 255.0).clip(0.0, 1.0)
    hsv = cv2.cvtColor(pixels, cv2.COLOR_RGB2HSV)  # float: H in degrees, S and V in [0, 1]
    hsv[..., 0] = np.mod(hsv[..., 0] + hue_deg, 360.0)
    hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0.0, 1.0)
    hsv[..., 2] = np.clip(hsv[..., 2] * brightness, 0.0, 1.0)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).reshape(np.shape(rgb)).astype(np.float64) * 255.0

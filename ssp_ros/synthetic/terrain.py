"""Bare ground in the synthetic world: large areas of sand, rock and dirt, and beaches beside the water.

Desert, quarries, building sites and beaches are everywhere in real drone footage and nowhere in a world of
grass, roads and roofs; a model that has never seen them calls them whatever else is beige. They are labelled
clutter: UAVid puts everything that is none of its seven other classes there.

Where: the bare areas are where a smooth random field (features about ``REGION_M`` across) is highest, so
they cover the drawn share of the world in a few large, natural-looking patches. Which material: a second
pair of fields splits them into sand, rock and dirt in shares drawn per world, so one world is mostly desert,
another mostly quarry. Each material has its own texture: sand has dunes and wind ripples, rock has terraces
with dark benches (a quarry's), dirt has damp patches.

The fields are drawn on a grid ``COARSE`` times coarser than the world and read back at the bare pixels only
(bilinear), which keeps a world of tens of millions of pixels cheap.
"""

from __future__ import annotations

import cv2
import numpy as np

from ssp_ros.synthetic.palette import Palette
from ssp_ros.synthetic.textures import smooth_noise

COARSE = 8  # world pixels per cell of the coarse fields
REGION_M = 90.0  # size of the bare areas' field features
MATERIAL_M = 120.0  # size of the zones of one material
DUNE_M = 30.0  # size of the dunes and of other slow shading
RIPPLE_M = (1.5, 3.5)  # wavelength of the sand's wind ripples
TERRACES = 5  # benches of a quarry over the range of its field
BEACH_M = (3.0, 12.0)  # width of the beaches, drawn per world
SAND, ROCK, DIRT = 0, 1, 2
REMAP_ROW = 4096  # points per row of the maps that read the coarse fields


def bare_ground_mask(n: int, px: float, share: float, rng: np.random.Generator) -> np.ndarray:
    """n×n bool: the world's bare areas, about ``share`` of it."""
    field = _coarse_field(n, REGION_M * px, rng)
    threshold = np.quantile(field, 1.0 - share)
    return cv2.resize(field, (n, n), interpolation=cv2.INTER_LINEAR) > threshold


def beach_mask(water: np.ndarray, px: float, rng: np.random.Generator) -> np.ndarray:
    """n×n bool: land within a beach's width of the ``water`` (n×n bool), along about two thirds of the shores."""
    n = water.shape[0]
    width = rng.uniform(*BEACH_M) * px
    to_water = cv2.distanceTransform((~water).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    waver = cv2.resize(_coarse_field(n, DUNE_M * px, rng), (n, n), interpolation=cv2.INTER_LINEAR)
    return ~water & (to_water < width * (1.0 + 0.4 * waver)) & (waver > -0.45)


class BareTexture:
    """One world's bare-ground look: ``colours(ys, xs, material)`` for pixels of sand, rock or dirt."""

    def __init__(self, n: int, px: float, palette: Palette, mid: np.ndarray, fine: np.ndarray,
                 rng: np.random.Generator) -> None:
        self.palette, self.mid, self.fine = palette, mid, fine
        self.shares = rng.dirichlet(np.ones(3))  # of sand, rock, dirt among the bare areas
        self.split = np.stack([_coarse_field(n, MATERIAL_M * px, rng) for _ in range(2)], axis=-1)
        self.slow = np.stack([_coarse_field(n, DUNE_M * px, rng) for _ in range(2)], axis=-1)
        self.ripple_angle = rng.uniform(0, np.pi)
        self.ripple_px = rng.uniform(*RIPPLE_M) * px

    def material(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """Sand, rock or dirt (0, 1, 2) at the pixels: sectors of the split fields' angle, sized by the shares."""
        a, b = _sample(self.split, ys, xs).T
        turn = (np.arctan2(b, a) / (2 * np.pi)) % 1.0
        return np.searchsorted(np.cumsum(self.shares)[:-1], turn).astype(np.int64)

    def colours(self, ys: np.ndarray, xs: np.ndarray, material: np.ndarray) -> np.ndarray:
        """N×3 float32 colours of bare pixels (world rows ``ys``, columns ``xs``) of the given materials."""
        contrast = self.palette.contrast
        dune, patch = _sample(self.slow, ys, xs).T
        mid, fine = self.mid[ys, xs], self.fine[ys, xs]
        shades = (self.palette.sand, self.palette.rock, self.palette.dirt)
        light = np.empty(len(ys), np.float32)
        rgb = np.empty((len(ys), 3), np.float32)
        for index, shade in enumerate(shades):
            sel = material == index
            mix = np.clip(0.5 + 0.4 * patch[sel], 0.0, 1.0)[:, None]
            rgb[sel] = shade[0] + (shade[1] - shade[0]) * mix
        sand, rock, dirt = material == SAND, material == ROCK, material == DIRT
        along = xs[sand] * np.cos(self.ripple_angle) + ys[sand] * np.sin(self.ripple_angle)
        ripple = np.cos(2 * np.pi * along / self.ripple_px + 4.0 * dune[sand])
        light[sand] = 1.0 + 0.10 * dune[sand] + contrast * (0.05 * ripple + 0.03 * fine[sand])
        level = (dune[rock] + 3.0) / 6.0 * TERRACES
        bench = np.floor(level)
        edge = (level - bench) < 0.06
        light[rock] = (1.0 + 0.06 * (bench % 3 - 1) + contrast * (0.14 * mid[rock] + 0.08 * fine[rock])) \
            * np.where(edge, 0.72, 1.0)
        light[dirt] = 1.0 - 0.12 * np.clip(patch[dirt], 0.0, 1.0) + contrast * (0.12 * mid[dirt] + 0.10 * fine[dirt])
        return rgb * light[:, None]


def _coarse_field(n: int, scale_px: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth unit-std field on the coarse grid of an n-pixel world (features ``scale_px`` world pixels)."""
    cells = -(-n // COARSE)
    return smooth_noise(rng, (cells, cells), scale_px / COARSE, octaves=3)


def _sample(coarse: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Bilinear values (N×C float32) of a coarse field (cells×cells×C) at world pixels ``ys, xs``.

    ``cv2.remap`` takes maps under 32767 on a side, so the N points are laid out in rows of REMAP_ROW.
    """
    rows = max(-(-len(ys) // REMAP_ROW), 1)
    pad = rows * REMAP_ROW - len(ys)
    map_x = np.pad((xs + 0.5) / COARSE - 0.5, (0, pad)).astype(np.float32).reshape(rows, REMAP_ROW)
    map_y = np.pad((ys + 0.5) / COARSE - 0.5, (0, pad)).astype(np.float32).reshape(rows, REMAP_ROW)
    read = cv2.remap(coarse, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return read.reshape(rows * REMAP_ROW, -1)[: len(ys)]

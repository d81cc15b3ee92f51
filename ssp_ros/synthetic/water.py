"""Open water in the synthetic world: where lakes, rivers and the sea lie, and their colour.

Class: UAVid has no water class. Its "background clutter" is everything that is none of its other seven
classes, so water is labelled clutter, like the sky and bare ground. (The paper's VDD-style relabelling has
a water class; a model for it would need its own label, which the world could then give.)

Shapes, in world pixels: a lake is an irregular blob; a river is a meandering band of constant width that
crosses the whole world; the sea fills a strip along one edge of the world, behind a wavy coastline. The
world beyond its edges is the world mirrored (``sampling.fold_reflect``), so an oblique view over the coast
sees the sea go on past the edge, twice as wide, and then mirrored land: a wide bay. The colour goes from
shallow (greenish, at the shore) to deep (dark blue) with the distance to the shore; the water's moving look
(waves, sun glints) is drawn per frame by ``waves.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ssp_ros.synthetic.config import WorldLayout
from ssp_ros.synthetic.palette import Palette
from ssp_ros.synthetic.textures import blob_outline, draw_polyline, fill_polygon

LAKE_RADIUS_M = (15.0, 55.0)
RIVER_WIDTH_M = (8.0, 24.0)
SEA_DEPTH = (0.18, 0.32)  # share of the world's side the sea covers, inland from its edge
SHALLOW_M = 5.0  # the water turns from its shallow to its deep colour over this distance from the shore (1/e)


@dataclass
class WaterBodies:
    """Where the world is open water (n×n bool) and the sun's direction (world X, Y, Z with Z down; unit)."""

    mask: np.ndarray
    sun: np.ndarray


def place_water(layout: WorldLayout, n: int, px: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Lakes and a river (``inland``) and the sea (``sea``) of one world, as n×n bool masks.

    Roads cross inland water on bridges and causeways, but end at the sea, so the world paints them apart.
    Nothing is drawn from ``rng`` for water the layout does not ask for.
    """
    inland, sea = np.zeros((n, n), np.uint8), np.zeros((n, n), np.uint8)
    if layout.lakes_per_km2 > 0:
        for _ in range(rng.poisson(layout.lakes_per_km2 * (n / px / 1000.0) ** 2)):
            fill_polygon(inland, lake_outline(rng.uniform(0, n, 2), px, rng), 1)
    if layout.river_prob > 0 and rng.random() < layout.river_prob:
        course, width = river_course(n, px, rng)
        draw_polyline(inland, course, width, 1)
    if layout.coast_prob > 0 and rng.random() < layout.coast_prob:
        fill_polygon(sea, sea_outline(n, px, rng), 1)
    return inland.astype(bool), sea.astype(bool)


def lake_outline(center: np.ndarray, px: float, rng: np.random.Generator) -> np.ndarray:
    """A lake's shore (K×2 world px) around ``center``."""
    return blob_outline(center, rng.uniform(*LAKE_RADIUS_M) * px, rng, roughness=0.35)


def river_course(n: int, px: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """A meandering centre line (N×2 world px) across the world, beyond both edges, and the river's width (px)."""
    angle = rng.uniform(0, np.pi)
    direction, normal = np.array([np.cos(angle), np.sin(angle)]), np.array([-np.sin(angle), np.cos(angle)])
    through = rng.uniform(0.3 * n, 0.7 * n, 2)
    t = np.linspace(-0.8 * n, 0.8 * n, int(1.6 * n / px) + 2)  # one point a metre
    wavelengths = rng.uniform(60.0, 220.0, 3) * px
    amplitudes = rng.uniform(5.0, 25.0, 3) * px
    phases = rng.uniform(0, 2 * np.pi, 3)
    bend = sum(a * np.sin(2 * np.pi * t / w + p) for a, w, p in zip(amplitudes, wavelengths, phases))
    points = through + t[:, None] * direction + bend[:, None] * normal
    return points, rng.uniform(*RIVER_WIDTH_M) * px


def sea_outline(n: int, px: float, rng: np.random.Generator) -> np.ndarray:
    """The sea's outline (K×2 world px): a strip along a random edge of the world, inland to a wavy coast."""
    depth = rng.uniform(*SEA_DEPTH) * n
    along = np.linspace(-1.0, n + 1.0, int(n / px) + 2)  # one point a metre, just past both corners
    coast = depth + sum(rng.uniform(3.0, 12.0) * px * np.sin(2 * np.pi * along / (rng.uniform(40, 160) * px)
                                                           + rng.uniform(0, 2 * np.pi)) for _ in range(3))
    local = np.concatenate([np.stack([along, coast], axis=1), [[n + 1.0, -1.0], [-1.0, -1.0]]])  # the edge v = 0
    quarter_turns = int(rng.integers(4))  # which edge: rotate the strip about the world's centre
    centre = np.array([n / 2.0, n / 2.0])
    c, s = np.cos(quarter_turns * np.pi / 2), np.sin(quarter_turns * np.pi / 2)
    return (local - centre) @ np.array([[c, s], [-s, c]]) + centre


def water_colour(mask: np.ndarray, palette: Palette, px: float, texture: np.ndarray) -> np.ndarray:
    """N×3 float32 colours of the ``mask`` pixels (in ``np.nonzero`` order): shallow at the shore, deep further
    out, with a slow brightness ``texture`` (N values, unit std)."""
    shore_px = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[mask]
    depth = (1.0 - np.exp(-shore_px / (SHALLOW_M * px)))[:, None].astype(np.float32)
    shallow, deep = palette.water_shallow.astype(np.float32), palette.water_deep.astype(np.float32)
    gain = (1.0 + np.float32(0.05 * palette.contrast) * texture)[:, None]
    return (shallow + (deep - shallow) * depth) * gain


def land_part(points: np.ndarray, water: np.ndarray) -> np.ndarray:
    """The longest run of a polyline's points (N×2 world px) that lies on land (not on ``water``, n×n bool)."""
    n = water.shape[0]
    col, row = np.clip(points[:, 0].astype(int), 0, n - 1), np.clip(points[:, 1].astype(int), 0, n - 1)
    dry = np.concatenate([[False], ~water[row, col], [False]])
    starts, ends = np.flatnonzero(~dry[:-1] & dry[1:]), np.flatnonzero(dry[:-1] & ~dry[1:])
    if not len(starts):
        return points[:0]
    longest = int(np.argmax(ends - starts))
    return points[starts[longest] : ends[longest]]

"""Facade textures of the 3D blocks: walls of one colour per building with rows and columns of windows, doors on
the ground floor, a darker plinth, a band under the eaves, and light by the sun.

A block's four walls are painted side by side in one strip (``blocks.py``: a = texels along the perimeter, b =
texels down from the top), so neighbouring walls meet at their shared corner in the texture as on the building
and are filtered together (``block_render.facade_atlas`` wraps the strip's ends around). The sun is the world's:
light on a wall is the ambient light of a shadow (``SHADOW_LIGHT``, the ground's shadow factor) plus the sun's
share, which on a vertical wall is the ground's times cot(elevation) = ``SHADOW_PER_HEIGHT`` times the cosine
between the wall and the sun's azimuth.
"""

from __future__ import annotations

import numpy as np

from ssp_ros.synthetic.blocks import FACADE_TEXEL_M, SHADOW_LIGHT, SHADOW_PER_HEIGHT, Wall
from ssp_ros.synthetic.textures import grain, smooth_noise

WALL_COLOURS = np.array([[226.0, 220.0, 204.0], [214.0, 196.0, 160.0], [196.0, 160.0, 112.0], [150.0, 84.0, 66.0],
                         [168.0, 168.0, 164.0], [190.0, 204.0, 212.0], [122.0, 118.0, 112.0]])
GLASS = np.array([[52.0, 62.0, 74.0], [70.0, 86.0, 102.0], [38.0, 44.0, 50.0], [96.0, 110.0, 118.0]])
FRAME_COLOURS = np.array([[236.0, 236.0, 232.0], [58.0, 54.0, 50.0], [120.0, 84.0, 56.0]])
DOOR_COLOURS = np.array([[92.0, 62.0, 44.0], [60.0, 60.0, 64.0], [140.0, 40.0, 36.0], [206.0, 204.0, 196.0]])
CURTAIN = np.array([214.0, 200.0, 170.0])
FRAME_M = 0.08  # window frame width
DOOR_M = (1.0, 2.1)  # door width and height
EDGE_M = 0.4  # wall kept plain at each corner and under the eaves


def wall_light(normal: np.ndarray, shadow_dir: np.ndarray) -> float:
    """Brightness of a wall with outward ``normal`` (2,) under a sun whose shadows fall along ``shadow_dir`` (2,)."""
    facing = max(0.0, float(-normal @ shadow_dir))
    return SHADOW_LIGHT + (1.0 - SHADOW_LIGHT) * SHADOW_PER_HEIGHT * facing


def paint_facade(walls: list[Wall], eaves_m: float, top_m: float, rng: np.random.Generator,
                 shadow_dir: np.ndarray) -> np.ndarray:
    """The facade strip of one block (H×W×3 uint8): ``walls`` in order, ``top_m`` at row 0, the ground at the bottom."""
    perimeter = walls[-1].offset_m + walls[-1].length_m
    rows, cols = int(np.ceil(top_m / FACADE_TEXEL_M)), int(np.ceil(perimeter / FACADE_TEXEL_M))
    colour = WALL_COLOURS[rng.integers(len(WALL_COLOURS))] * rng.uniform(0.9, 1.08)
    texture = 1.0 + 0.035 * smooth_noise(rng, (rows, cols), 1.0 / FACADE_TEXEL_M, octaves=2) \
        + 0.03 * grain(rng, (rows, cols), 0.6)
    strip = colour[None, None, :].astype(np.float32) * texture[..., None]

    def fill(along: tuple[float, float], height: tuple[float, float], rgb: np.ndarray) -> None:
        """Paint metres ``along`` the strip × ``height`` above the ground with ``rgb`` (keeping the wall's grain)."""
        c0, c1 = (int(round(x / FACADE_TEXEL_M)) for x in along)
        r0, r1 = (int(round((top_m - z) / FACADE_TEXEL_M)) for z in (height[1], height[0]))
        region = (slice(max(r0, 0), max(r1, 0)), slice(max(c0, 0), c1))
        strip[region] = rgb.astype(np.float32) * texture[region][..., None]

    floor_m, bay_m = rng.uniform(2.8, 3.4), rng.uniform(2.4, 3.8)
    window = (rng.uniform(0.9, 1.6), rng.uniform(1.1, 1.6))  # width, height
    sill_m = rng.uniform(0.8, 1.0)
    glass, frame = GLASS[rng.integers(len(GLASS))], FRAME_COLOURS[rng.integers(len(FRAME_COLOURS))]
    door = DOOR_COLOURS[rng.integers(len(DOOR_COLOURS))]
    fill((0.0, perimeter), (0.0, rng.uniform(0.3, 0.6)), colour * 0.72)  # plinth
    fill((0.0, perimeter), (eaves_m - 0.25, eaves_m), colour * 0.8)  # cornice or the shade under the eaves
    floors = [f * floor_m + sill_m for f in range(int(eaves_m / floor_m) + 1)
              if f * floor_m + sill_m + window[1] <= eaves_m - EDGE_M]
    for wall in walls:
        bays = int((wall.length_m - 2 * EDGE_M) / bay_m)
        if bays < 1:
            continue
        width = (wall.length_m - 2 * EDGE_M) / bays
        door_bay = int(rng.integers(bays)) if rng.random() < (0.3 if wall.gable else 0.75) else -1
        for k in range(bays):
            centre = wall.offset_m + EDGE_M + (k + 0.5) * width
            if k == door_bay:
                fill((centre - DOOR_M[0] / 2 - FRAME_M, centre + DOOR_M[0] / 2 + FRAME_M), (0.0, DOOR_M[1] + FRAME_M),
                     frame)
                fill((centre - DOOR_M[0] / 2, centre + DOOR_M[0] / 2), (0.0, DOOR_M[1]), door)
            for level, bottom in enumerate(floors):
                if level == 0 and k == door_bay:
                    continue
                pane = CURTAIN if rng.random() < 0.12 else glass * rng.uniform(0.8, 1.35)
                left, right = centre - window[0] / 2, centre + window[0] / 2
                fill((left - FRAME_M, right + FRAME_M), (bottom - FRAME_M, bottom + window[1] + FRAME_M), frame)
                fill((left, right), (bottom, bottom + window[1]), pane)
    edges = [int(round(wall.offset_m / FACADE_TEXEL_M)) for wall in walls] + [cols]
    for wall, c0, c1 in zip(walls, edges[:-1], edges[1:]):
        strip[:, c0:c1] *= np.float32(wall_light(wall.normal, shadow_dir))
    return np.clip(strip + 0.5, 0, 255).astype(np.uint8)

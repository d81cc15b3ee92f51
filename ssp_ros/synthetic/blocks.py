"""Buildings as 3D blocks: a rectangular footprint extruded to its eaves, under a flat roof or a gabled one.

World frame as in ``camera.py``: X, Y in metres along the world texture's u, v, Z down, so a block's eaves are at
Z = −eaves_m. A gabled roof has a real ridge (two sloped planes and two pentagonal gable walls) rather than a flat
top at the eaves: seen obliquely the ridge's parallax and the lit and shaded roof halves are what a real house
shows, and a plane per face costs no more to render than a flat one.

Every face is a planar convex polygon with a texture map, texture (a, b) → ``origin + a·e1 + b·e2`` (metres):

* roofs read the world texture itself, (a, b) = world pixels: the roof painted there (``world.py``), seen from
  straight above, is the roof's own texture, whatever its slope;
* walls read the block's facade strip (``facades.py``): the four walls unrolled side by side around the
  footprint, a = texels along the perimeter, b = texels down from the top (the ridge, or the eaves of a flat roof).

Footprint corners come from ``textures.rectangle``: edges 0→1 and 2→3 run along the building (the eaves of a
gabled roof), edges 1→2 and 3→0 across it (its gables); the ridge joins the midpoints of the gable edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FACADE_TEXEL_M = 0.1  # facade texture resolution (m per texel)
SHADOW_PER_HEIGHT = 0.45  # a shadow on the ground reaches this far per metre of height: cot of the sun's elevation
SHADOW_LIGHT = 0.55  # brightness in shadow (ambient light alone), relative to sunlit ground
GABLE_EDGES = (1, 3)  # footprint edges i → i + 1 that carry a gable under a ridged roof
UP = np.array([0.0, 0.0, -1.0])


@dataclass(frozen=True)
class Wall:
    """A wall's base from ``start`` to ``end`` (world metres, X, Y), its outward normal and its place in the strip."""

    start: np.ndarray
    end: np.ndarray
    normal: np.ndarray  # (2,) outward, unit
    offset_m: float  # where the wall starts along the facade strip
    gable: bool

    @property
    def length_m(self) -> float:
        return float(np.linalg.norm(self.end - self.start))


@dataclass(frozen=True)
class Face:
    """A planar convex polygon of a block, with its texture map and outward normal (world metres)."""

    corners: np.ndarray  # K×3
    origin: np.ndarray  # (3,) texture (0, 0)
    e1: np.ndarray  # (3,) one texel along a
    e2: np.ndarray  # (3,) one texel along b
    normal: np.ndarray  # (3,) outward, unit
    roof: bool  # reads the world texture (else the block's facade)


@dataclass(frozen=True)
class Block:
    """A building: footprint (4×2 world pixels, ``textures.rectangle`` order), eaves, ridge and facade strip."""

    footprint: np.ndarray
    eaves_m: float
    ridge_m: float  # rise of the ridge above the eaves; 0 = a flat roof
    facade: np.ndarray  # H×W×3 uint8 facade strip, FACADE_TEXEL_M per texel (facades.py)

    @property
    def top_m(self) -> float:
        return self.eaves_m + self.ridge_m


def block_walls(footprint: np.ndarray, gsd_m: float, ridged: bool) -> list[Wall]:
    """The four walls of a footprint (4×2 world pixels), in order around it."""
    corners = footprint * gsd_m
    centre = corners.mean(axis=0)
    walls, offset = [], 0.0
    for i in range(4):
        start, end = corners[i], corners[(i + 1) % 4]
        direction = (end - start) / np.linalg.norm(end - start)
        normal = np.array([-direction[1], direction[0]])
        if normal @ ((start + end) / 2 - centre) < 0:
            normal = -normal
        walls.append(Wall(start, end, normal, offset, ridged and i in GABLE_EDGES))
        offset += float(np.linalg.norm(end - start))
    return walls


def _at(xy: np.ndarray, height_m: float) -> np.ndarray:
    return np.array([xy[0], xy[1], -height_m])


def _roof_face(corners: np.ndarray, gsd_m: float) -> Face:
    """A roof plane through ``corners`` (K×3), textured by the world texture seen from above."""
    normal = np.cross(corners[1] - corners[0], corners[2] - corners[0])
    normal /= np.linalg.norm(normal)
    if normal @ UP < 0:
        normal = -normal
    # Z = α·u + β·v + γ on the plane (u, v world pixels): n·(X − corner) = 0 solved for Z
    alpha, beta = -normal[0] * gsd_m / normal[2], -normal[1] * gsd_m / normal[2]
    gamma = corners[0] @ normal / normal[2]
    return Face(corners=corners, origin=np.array([0.0, 0.0, gamma]), e1=np.array([gsd_m, 0.0, alpha]),
                e2=np.array([0.0, gsd_m, beta]), normal=normal, roof=True)


def block_faces(block: Block, gsd_m: float) -> list[Face]:
    """The roof plane(s) and the four walls of a block."""
    walls = block_walls(block.footprint, gsd_m, block.ridge_m > 0)
    eaves, top = block.eaves_m, block.top_m
    base = block.footprint * gsd_m
    ridge = {i: (base[i] + base[(i + 1) % 4]) / 2 for i in GABLE_EDGES}  # the ridge's ends, over the gables
    if block.ridge_m > 0:
        faces = [_roof_face(np.array([_at(base[0], eaves), _at(base[1], eaves), _at(ridge[1], top),
                                      _at(ridge[3], top)]), gsd_m),
                 _roof_face(np.array([_at(base[2], eaves), _at(base[3], eaves), _at(ridge[3], top),
                                      _at(ridge[1], top)]), gsd_m)]
    else:
        faces = [_roof_face(np.array([_at(corner, eaves) for corner in base]), gsd_m)]
    for i, wall in enumerate(walls):
        outline = [_at(wall.start, 0.0), _at(wall.end, 0.0), _at(wall.end, eaves)]
        if wall.gable:
            outline.append(_at(ridge[i], top))
        outline.append(_at(wall.start, eaves))
        direction = np.append((wall.end - wall.start) / wall.length_m, 0.0)
        faces.append(Face(corners=np.array(outline), origin=_at(wall.start, top) - direction * wall.offset_m,
                          e1=direction * FACADE_TEXEL_M, e2=-UP * FACADE_TEXEL_M, normal=np.append(wall.normal, 0.0),
                          roof=False))
    return faces


def mirrored(face: Face, axis: int, at_m: float) -> Face:
    """The face reflected in the plane X = ``at_m`` (``axis`` 0) or Y = ``at_m`` (``axis`` 1): same texels."""
    flip = np.ones(3)
    flip[axis] = -1.0
    shift = np.zeros(3)
    shift[axis] = 2.0 * at_m
    return Face(corners=face.corners * flip + shift, origin=face.origin * flip + shift, e1=face.e1 * flip,
                e2=face.e2 * flip, normal=face.normal * flip, roof=face.roof)


def shadow_outline(block: Block, shadow_dir: np.ndarray, gsd_m: float) -> np.ndarray:
    """The block's shadow on the ground (K×2 world pixels): the hull of its corners cast along ``shadow_dir``.

    A block (with its ridge) is convex, so its shadow is the convex hull of its corners' shadows.
    """
    base = block.footprint
    reach = shadow_dir * SHADOW_PER_HEIGHT / gsd_m  # world pixels of shadow per metre of height
    points = [base, base + reach * block.eaves_m]
    if block.ridge_m > 0:
        points.append(np.array([(base[i] + base[(i + 1) % 4]) / 2 for i in GABLE_EDGES]) + reach * block.top_m)
    return cv2.convexHull(np.concatenate(points).astype(np.float32)).reshape(-1, 2)

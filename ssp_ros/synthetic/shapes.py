"""Small objects seen from above (cars, people) as coloured polygon parts in a local metric frame.

A local frame has x along the object's heading, y to its left, in metres; ``transform_points`` places it
in world pixels. The first part is the object's outline; later parts are drawn on top of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CAR_COLORS = np.array([[235.0, 235.0, 232.0], [30.0, 30.0, 34.0], [168.0, 170.0, 174.0], [150.0, 28.0, 30.0],
                       [36.0, 62.0, 130.0], [96.0, 98.0, 102.0], [200.0, 190.0, 160.0]])
CLOTHES = np.array([[200.0, 40.0, 40.0], [40.0, 60.0, 160.0], [230.0, 230.0, 225.0], [30.0, 30.0, 30.0],
                    [220.0, 180.0, 40.0], [70.0, 120.0, 60.0]])


@dataclass(frozen=True)
class Part:
    """One filled polygon of an object: K×2 local metres and an RGB colour."""

    polygon: np.ndarray
    color: np.ndarray


def _box(x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])


def car_parts(rng: np.random.Generator) -> list[Part]:
    """A car about 4.5 m × 1.8 m: body, windscreen, rear window, roof."""
    length, width = rng.uniform(3.9, 4.9), rng.uniform(1.7, 1.95)
    color = CAR_COLORS[rng.integers(len(CAR_COLORS))] * rng.uniform(0.9, 1.05)
    hl, hw = length / 2, width / 2
    glass = np.array([38.0, 42.0, 48.0])
    return [
        Part(_box(-hl, hl, -hw, hw), color),
        Part(np.array([[0.12 * length, -0.85 * hw], [0.30 * length, -0.75 * hw], [0.30 * length, 0.75 * hw],
                       [0.12 * length, 0.85 * hw]]), glass),
        Part(_box(-0.38 * length, -0.26 * length, -0.75 * hw, 0.75 * hw), glass),
        Part(_box(-0.26 * length, 0.12 * length, -0.8 * hw, 0.8 * hw), np.minimum(color * 1.08, 255)),
    ]


def person_parts(rng: np.random.Generator) -> list[Part]:
    """A person from above: shoulders (an octagon about 0.5 m × 0.3 m) and a head."""
    angles = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    shoulders = np.stack([0.16 * np.cos(angles), 0.27 * np.sin(angles)], axis=1)
    head = np.stack([0.1 * np.cos(angles), 0.1 * np.sin(angles)], axis=1)
    hair = np.array([[40.0, 30.0, 25.0], [90.0, 70.0, 50.0], [20.0, 20.0, 20.0], [170.0, 150.0, 110.0]])
    return [Part(shoulders, CLOTHES[rng.integers(len(CLOTHES))]), Part(head, hair[rng.integers(len(hair))])]


def pose_matrix(center_px: np.ndarray, angle: float, px_per_m: float) -> np.ndarray:
    """3×3 homogeneous map from local metres to world pixels (rotation by ``angle``, then translation)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c * px_per_m, -s * px_per_m, center_px[0]], [s * px_per_m, c * px_per_m, center_px[1]],
                     [0.0, 0.0, 1.0]])


def transform_points(polygon: np.ndarray, center_px: np.ndarray, angle: float, px_per_m: float) -> np.ndarray:
    """Local-metre polygon (K×2) → world pixels."""
    m = pose_matrix(center_px, angle, px_per_m)
    return polygon @ m[:2, :2].T + m[:2, 2]

"""Independently moving objects: cars driving along roads and people walking.

Each mover has a rigid pose (local metres → world pixels, 3×3) that changes every time step; the
exact optical flow of its pixels follows from the pose change (see ``video.py``). Movers are why a
single global homography is not the whole truth.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ssp_ros.synthetic import labels as L
from ssp_ros.synthetic.shapes import Part, car_parts, person_parts, pose_matrix
from ssp_ros.synthetic.world import Road, World


class Mover(ABC):
    """A rigid object with parts, a class and a pose; ``step`` advances it by ``dt`` seconds."""

    label: int
    parts: list[Part]
    radius_m: float

    @abstractmethod
    def pose(self, px_per_m: float) -> np.ndarray:
        """3×3 map from the object's local metres to world pixels, now."""

    @abstractmethod
    def step(self, dt: float, world: World) -> None:
        """Advance the object by ``dt`` seconds."""


class Car(Mover):
    """A car keeping its lane along a road; at a road's end it turns round into the other lane."""

    label = L.MOVING_CAR

    def __init__(self, road: Road, rng: np.random.Generator, px_per_m: float) -> None:
        self.parts = car_parts(rng)
        self.radius_m = 2.6
        self.road = road
        self.s = rng.uniform(0.0, road.length)
        self.direction = rng.choice([-1.0, 1.0])
        self.speed_px = rng.uniform(5.0, 14.0) * px_per_m
        self.lane_px = min(1.75 * px_per_m, road.width_px / 4)

    def pose(self, px_per_m: float) -> np.ndarray:
        centre, heading = self.road.at(self.s)
        normal = np.array([-np.sin(heading), np.cos(heading)])
        heading = heading if self.direction > 0 else heading + np.pi
        return pose_matrix(centre + normal * self.lane_px * self.direction, heading, px_per_m)

    def step(self, dt: float, world: World) -> None:
        self.s += self.direction * self.speed_px * dt
        if not 0.0 <= self.s <= self.road.length:
            self.s = float(np.clip(self.s, 0.0, self.road.length))
            self.direction = -self.direction


class Walker(Mover):
    """A person wandering with a slowly changing heading; turns back at buildings and the world's edge."""

    label = L.HUMAN

    def __init__(self, position: np.ndarray, rng: np.random.Generator, px_per_m: float) -> None:
        self.parts = person_parts(rng)
        self.radius_m = 0.4
        self.rng = rng
        self.position = position.astype(np.float64)
        self.heading = rng.uniform(-np.pi, np.pi)
        self.speed_px = (0.0 if rng.random() < 0.2 else rng.uniform(0.6, 1.8)) * px_per_m

    def pose(self, px_per_m: float) -> np.ndarray:
        return pose_matrix(self.position, self.heading, px_per_m)

    def step(self, dt: float, world: World) -> None:
        if self.speed_px == 0.0:
            return
        self.heading += self.rng.normal(0.0, 0.6) * np.sqrt(dt)
        ahead = self.position + self.speed_px * dt * np.array([np.cos(self.heading), np.sin(self.heading)])
        u, v = int(ahead[0]), int(ahead[1])
        if not (0 <= u < world.size_px and 0 <= v < world.size_px) or world.labels[v, u] == L.BUILDING:
            self.heading += np.pi
            return
        self.position = ahead


def spawn_movers(world: World, cars: int, people: int, rng: np.random.Generator) -> list[Mover]:
    """Cars on random roads and people on open ground (not on buildings)."""
    px_per_m = 1.0 / world.gsd_m
    movers: list[Mover] = []
    if world.roads:
        movers += [Car(world.roads[rng.integers(len(world.roads))], rng, px_per_m) for _ in range(cars)]
    for _ in range(50 * people):
        if people == 0:
            break
        position = rng.uniform(0, world.size_px, 2)
        if world.labels[int(position[1]), int(position[0])] != L.BUILDING:
            movers.append(Walker(position, rng, px_per_m))
            people -= 1
    return movers

"""Independently moving objects: cars driving along roads and people walking, alone or in groups.

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

GROUP_SIZE = (2, 6)  # people in a group
GROUP_SPACING_M = (0.7, 0.9)  # between the centres of neighbours side by side, and of rows one behind the other
GROUP_ROW = 3  # people side by side in a row of a group


class Mover(ABC):
    """A rigid object with parts, a class and a pose; ``step`` advances it by ``dt`` seconds."""

    label: int
    parts: list[Part]

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
    """A person wandering with a slowly changing heading; turns back at buildings, water and the world's edge.

    Given a heading and a speed (a group's), the person keeps that course instead, so the group stays together.
    """

    label = L.HUMAN

    def __init__(self, position: np.ndarray, rng: np.random.Generator, px_per_m: float, heading: float | None = None,
                 speed_mps: float | None = None) -> None:
        self.parts = person_parts(rng)
        self.rng = rng
        self.position = position.astype(np.float64)
        self.wanders = heading is None
        self.heading = rng.uniform(-np.pi, np.pi) if heading is None else heading
        if speed_mps is None:
            speed_mps = 0.0 if rng.random() < 0.2 else rng.uniform(0.6, 1.8)
        self.speed_px = speed_mps * px_per_m

    def pose(self, px_per_m: float) -> np.ndarray:
        return pose_matrix(self.position, self.heading, px_per_m)

    def step(self, dt: float, world: World) -> None:
        if self.speed_px == 0.0:
            return
        if self.wanders:
            self.heading += self.rng.normal(0.0, 0.6) * np.sqrt(dt)
        ahead = self.position + self.speed_px * dt * np.array([np.cos(self.heading), np.sin(self.heading)])
        u, v = int(ahead[0]), int(ahead[1])
        if not (0 <= u < world.size_px and 0 <= v < world.size_px) or not world.walkable(u, v):
            self.heading += np.pi
            return
        self.position = ahead


def spawn_movers(world: World, cars: int, people: int, rng: np.random.Generator,
                 group_share: float = 0.0) -> list[Mover]:
    """Cars on random roads and people on open ground (not on buildings or water), ``group_share`` of them
    in groups."""
    px_per_m = 1.0 / world.gsd_m
    movers: list[Mover] = []
    if world.roads:
        movers += [Car(world.roads[rng.integers(len(world.roads))], rng, px_per_m) for _ in range(cars)]
    grouped = int(rng.binomial(people, group_share)) if group_share > 0 else 0
    people -= grouped
    for _ in range(50 * people):
        if people == 0:
            break
        position = rng.uniform(0, world.size_px, 2)
        if world.walkable(int(position[0]), int(position[1])):
            movers.append(Walker(position, rng, px_per_m))
            people -= 1
    if grouped:
        movers += _groups(world, grouped, rng, px_per_m)
    return movers


def _groups(world: World, people: int, rng: np.random.Generator, px_per_m: float) -> list[Mover]:
    """``people`` people in groups of GROUP_SIZE, rows of GROUP_ROW side by side: half the groups stand
    (facing about the same way), half stroll together at one speed."""
    members: list[Mover] = []
    for _ in range(50 * people):
        if people == 0:
            break
        size = min(int(rng.integers(GROUP_SIZE[0], GROUP_SIZE[1] + 1)), people)
        centre, heading = rng.uniform(0, world.size_px, 2), rng.uniform(-np.pi, np.pi)
        speed = 0.0 if rng.random() < 0.5 else rng.uniform(0.8, 1.4)
        axes = np.array([[np.cos(heading), np.sin(heading)], [-np.sin(heading), np.cos(heading)]])  # along, across
        spots = centre + formation(size) @ axes * px_per_m
        inside = all(0 <= p[0] < world.size_px and 0 <= p[1] < world.size_px for p in spots)
        if not inside or not all(world.walkable(int(p[0]), int(p[1])) for p in spots):
            continue
        for spot in spots:
            facing = heading + (rng.normal(0.0, 0.4) if speed == 0.0 else 0.0)
            members.append(Walker(spot, rng, px_per_m, heading=facing, speed_mps=speed))
        people -= size
    return members


def formation(size: int) -> np.ndarray:
    """Offsets (size×2 m, along and across the group's heading) of a group's members about its centre: rows of
    GROUP_ROW side by side, one row behind the other."""
    spots = []
    for k in range(size):
        row, col = divmod(k, GROUP_ROW)
        in_row = min(size - row * GROUP_ROW, GROUP_ROW)
        spots.append((-row * GROUP_SPACING_M[1], (col - (in_row - 1) / 2) * GROUP_SPACING_M[0]))
    offsets = np.array(spots)
    return offsets - offsets.mean(axis=0)

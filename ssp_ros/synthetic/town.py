"""Town districts and kerb-side parking: where the streets of a dense district run and where cars park.

Real towns seen from a drone are dense: blocks of buildings along a grid of streets, with cars parked in rows
along the kerbs. A district here is a square with a street grid (streets ``STREET_GAP_M`` apart, so the
blocks between them fill with rows of buildings facing both streets); the world draws the streets like its
other roads and the buildings like its others, side by side along each piece of street between two
crossings. Kerb-side parking puts rows of car slots on a parking lane along a road's edge, outside its
driving lanes, in runs along the kerb that cover the asked share of its length.

Geometry only, in world pixels: the world (``world.py``) draws it and checks each slot is free.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DISTRICT_M = (110.0, 200.0)  # side of a district
STREET_GAP_M = (50.0, 70.0)  # between parallel streets: two rows of buildings, one facing each street, fill it
STREET_WIDTH_M = (6.0, 8.0)
FRONTAGE_M = (8.0, 18.0)  # length of a town building along its street
PLOT_GAP_M = (0.5, 2.5)  # between neighbouring town buildings
PLOT_DEPTH_M = (9.0, 15.0)
PLOT_SETBACK_M = (0.5, 2.5)  # from the street's parking lane to the building
TOWN_HEIGHT_M = (5.0, 16.0)  # heights of flat (painted) town buildings: the length of their shadows
SLOT_M = (5.4, 6.4)  # length of a kerb-side parking slot (a car is 3.9-4.9 m long)
LANE_M = 2.4  # width of the parking lane along the road's edge (a car is 1.7-1.95 m wide)
RUN_M = 40.0  # mean length of a row of parked cars along a kerb
SLOT_TAKEN = 0.85  # share of a row's slots with a car


@dataclass(frozen=True)
class District:
    """A town district: a square (centre and side, world px; heading, rad) with a grid of straight streets of one
    width, each ``offsets`` from the centre line, in both directions."""

    center: np.ndarray
    side: float
    heading: float
    offsets: np.ndarray
    street_width: float

    def corners(self) -> np.ndarray:
        """The district's square (4×2 world px)."""
        half = self.side / 2.0
        return np.array([self._point(axis=0, offset=o, t=t) for o, t in ((-half, -half), (-half, half),
                                                                          (half, half), (half, -half))])

    def streets(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each street's two ends (world px), across the whole district."""
        half = self.side / 2.0
        return [(self._point(axis, o, -half), self._point(axis, o, half)) for axis in (0, 1) for o in self.offsets]

    def kerbs(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The streets cut at the crossings: each piece's two ends (world px), a street's width from the crossing
        streets' centre lines, so that a building set beside a piece faces one block."""
        half, clear = self.side / 2.0, self.street_width
        cuts = np.concatenate([[-half - clear], self.offsets, [half + clear]])
        pieces = []
        for axis in (0, 1):
            for offset in self.offsets:
                for a, b in zip(cuts[:-1], cuts[1:]):
                    t0, t1 = max(a + clear, -half), min(b - clear, half)
                    if t1 > t0:
                        pieces.append((self._point(axis, offset, t0), self._point(axis, offset, t1)))
        return pieces

    def _point(self, axis: int, offset: float, t: float) -> np.ndarray:
        """The point at ``t`` along a street of direction ``axis`` (0: along the heading, 1: across) at ``offset``."""
        along = np.array([np.cos(self.heading), np.sin(self.heading)])
        across = np.array([-np.sin(self.heading), np.cos(self.heading)])
        direction, normal = (along, across) if axis == 0 else (across, along)
        return self.center + offset * normal + t * direction


def district(center: np.ndarray, px: float, rng: np.random.Generator) -> District:
    """A district around ``center``: a square street grid turned by a random heading, streets ``STREET_GAP_M``
    apart and centred in the square."""
    side = rng.uniform(*DISTRICT_M) * px
    heading = rng.uniform(0, np.pi / 2)
    gap = rng.uniform(*STREET_GAP_M) * px
    count = max(int(side // gap), 1)
    offsets = (np.arange(count) - (count - 1) / 2) * gap
    return District(center=center, side=side, heading=heading, offsets=offsets,
                    street_width=rng.uniform(*STREET_WIDTH_M) * px)


@dataclass(frozen=True)
class Plot:
    """A town building's footprint: centre (world px), length along its street, depth, heading (rad), and its height
    (m)."""

    center: np.ndarray
    length: float
    depth: float
    heading: float
    height_m: float


def plots(town: District, px: float, rng: np.random.Generator, heights_m: tuple[float, float]) -> list[Plot]:
    """Buildings side by side along both sides of every piece of street, set back beyond a parking lane: the
    blocks' rows of houses, of heights drawn in ``heights_m``. Plots of two streets may overlap at a block's corners
    and back; the world keeps the first that is free."""
    found = []
    setback = town.street_width / 2 + LANE_M * px
    for start, end in town.kerbs():
        span = float(np.linalg.norm(end - start))
        direction = (end - start) / span
        heading = float(np.arctan2(direction[1], direction[0]))
        for side in (-1.0, 1.0):
            outward = np.array([-direction[1], direction[0]]) * side
            t = 0.0
            while True:
                length = rng.uniform(*FRONTAGE_M) * px
                if t + length > span:
                    break
                depth = rng.uniform(*PLOT_DEPTH_M) * px
                back = setback + rng.uniform(*PLOT_SETBACK_M) * px + depth / 2
                found.append(Plot(center=start + direction * (t + length / 2) + outward * back, length=length,
                                  depth=depth, heading=heading, height_m=rng.uniform(*heights_m)))
                t += length + rng.uniform(*PLOT_GAP_M) * px
    return found


def polyline(start: np.ndarray, end: np.ndarray, step: float) -> np.ndarray:
    """A straight polyline (N×2) from ``start`` to ``end`` with a point every ``step`` or closer."""
    count = max(int(np.ceil(np.linalg.norm(end - start) / step)), 1) + 1
    return start + np.linspace(0.0, 1.0, count)[:, None] * (end - start)


@dataclass(frozen=True)
class KerbSlot:
    """A parking slot beside a road: its centre (world px), the road's heading there (rad), the unit normal
    pointing away from the road, the slot's rectangle (length along the road × width, px), whether a car stands
    in it and which way that car faces (rad: with the traffic on its side of the road)."""

    center: np.ndarray
    heading: float
    outward: np.ndarray
    length: float
    width: float
    taken: bool
    facing: float


def kerb_slots(points: np.ndarray, cumulative: np.ndarray, road_width: float, share: float, px: float,
               rng: np.random.Generator) -> list[KerbSlot]:
    """Slots along both kerbs of a road (centre line ``points``, arc lengths ``cumulative``, N world px): rows of
    slots (of one length per row) whose runs cover about ``share`` of each kerb, alternating with free kerb."""
    slots = []
    lane = LANE_M * px

    def free_kerb() -> float:
        """The length of a stretch without parking: its mean makes the rows cover ``share`` of the kerb."""
        return rng.exponential(RUN_M * px * (1.0 - share) / share) if share < 1.0 else 0.0

    for side in (-1.0, 1.0):
        s = free_kerb()
        while s < cumulative[-1]:
            run_end = s + rng.exponential(RUN_M * px)
            length = rng.uniform(*SLOT_M) * px
            while s + length < min(run_end, cumulative[-1]):
                middle = s + length / 2
                i = int(np.clip(np.searchsorted(cumulative, middle) - 1, 0, len(points) - 2))
                a, b = points[i], points[i + 1]
                on_road = a + (b - a) * (middle - cumulative[i]) / max(cumulative[i + 1] - cumulative[i], 1e-9)
                heading = float(np.arctan2(b[1] - a[1], b[0] - a[0]))
                outward = np.array([-np.sin(heading), np.cos(heading)]) * side
                slots.append(KerbSlot(center=on_road + outward * (road_width + lane) / 2, heading=heading,
                                      outward=outward, length=length, width=lane,
                                      taken=bool(rng.random() < SLOT_TAKEN),
                                      facing=heading if side > 0 else heading + np.pi))
                s += length
            s = run_end + free_kerb()
    return slots

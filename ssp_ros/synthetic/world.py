"""A procedural top-down world: an orthophoto texture and its UAVid label map.

The world is a flat square seen from above: fields of low vegetation with dry and dark patches,
bare-soil and gravel clutter, roads with markings, parking lots full of cars, buildings with flat grey
roofs (that look like road) or pitched tiled roofs, and tree clusters whose canopy is a darker, blobbier
green than the grass around them. Buildings and trees cast shadows, which change colour but not class.
A layout may add large bare areas of sand, rock and dirt (``terrain.py``), lakes, a river and the sea with
beaches (``water.py``), dense town districts (``town.py``), and rows of cars parked along the kerbs; all of
them are off in the default layout, which draws nothing for them. Colours come from a ``Palette``
(``palette.py``): the standard one, or one drawn per world.

With ``WorldLayout.building_height_m`` above 0 the buildings (town buildings too) are also 3D blocks
(``blocks.py``) with painted facades (``facades.py``), for the renderer to raise: the roofs painted here are their
roofs' texture, and their shadows grow with their height. The town's layout is the flat one's for the same seed:
the eaves replace the height the flat shadows were drawn for, and facades and ridges draw from their own stream.

Coordinates: world pixels (u right, v down), ``gsd_m`` metres per pixel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ssp_ros.synthetic import labels as L
from ssp_ros.synthetic.blocks import SHADOW_LIGHT, SHADOW_PER_HEIGHT, Block, block_walls, shadow_outline
from ssp_ros.synthetic.config import WorldLayout
from ssp_ros.synthetic.facades import paint_facade
from ssp_ros.synthetic.palette import STANDARD, Palette
from ssp_ros.synthetic.shapes import Part, car_parts, transform_points
from ssp_ros.synthetic.terrain import SAND, BareTexture, bare_ground_mask, beach_mask
from ssp_ros.synthetic.textures import blob_outline, fill_polygon, grain, polygon_mask, rectangle, smooth_noise
from ssp_ros.synthetic.town import TOWN_HEIGHT_M, District, district, kerb_slots, plots, polyline
from ssp_ros.synthetic.water import WaterBodies, land_part, place_water, water_colour

OCCUPIED = (L.ROAD, L.BUILDING, L.STATIC_CAR)  # classes a new lot or building must keep clear of (and water)
SUN_ELEVATION = np.arctan(1.0 / 0.45)  # the sun's height (rad): a building's shadow is 0.45 × its height long
MIN_ROAD_M = 20.0  # a road the sea cuts shorter than this is dropped
DISTRICT_TRIES = 8  # candidate places for a town district
COVER_STEP = 8  # world pixels between the samples that measure how much of a candidate district is taken
FLAT_BUILDING_HEIGHT_M = (3.0, 14.0)  # heights the shadows of flat (painted) buildings are drawn for
ROOF_PITCH_DEG = (25.0, 40.0)  # slope of a 3D block's gabled roof


@dataclass
class Road:
    """A road centre line (dense N×2 world-pixel polyline) and its width; cars drive along it."""

    points: np.ndarray
    width_px: float

    def __post_init__(self) -> None:
        seg = np.linalg.norm(np.diff(self.points, axis=0), axis=1)
        self.cumulative = np.concatenate([[0.0], np.cumsum(seg)])

    @property
    def length(self) -> float:
        return float(self.cumulative[-1])

    def at(self, s: float) -> tuple[np.ndarray, float]:
        """Position (world px) and heading (radians) at arc length ``s`` (clamped to the road)."""
        s = float(np.clip(s, 0.0, self.length))
        i = int(np.clip(np.searchsorted(self.cumulative, s) - 1, 0, len(self.points) - 2))
        t = (s - self.cumulative[i]) / max(self.cumulative[i + 1] - self.cumulative[i], 1e-9)
        a, b = self.points[i], self.points[i + 1]
        return a + t * (b - a), float(np.arctan2(b[1] - a[1], b[0] - a[0]))


@dataclass
class World:
    """The rendered world: RGB texture, label map, roads, scale, open water, and the buildings raised as blocks."""

    rgb: np.ndarray  # n×n×3 uint8
    labels: np.ndarray  # n×n uint8, UAVid class ids
    roads: list[Road]
    gsd_m: float
    water: WaterBodies | None = None  # open water (labelled clutter) and the sun, for the waves; None: no water
    blocks: list[Block] = field(default_factory=list)  # empty: the buildings are roofs painted on flat ground

    @property
    def size_px(self) -> int:
        return self.labels.shape[0]

    def walkable(self, u: int, v: int) -> bool:
        """True if a person may stand on world pixel (u, v): not on a building, not in water."""
        return self.labels[v, u] != L.BUILDING and (self.water is None or not self.water.mask[v, u])


class _Canvas:
    """The world under construction: float RGB, labels and shared noise fields, painted crop by crop, in the
    colours of a palette, with shadows darkened by ``factor ** shadow_depth`` (1: as painted)."""

    def __init__(self, n: int, gsd: float, rng: np.random.Generator, palette: Palette = STANDARD,
                 shadow_depth: float = 1.0) -> None:
        self.n, self.gsd, self.rng = n, gsd, rng
        self.palette, self.shadow_depth = palette, shadow_depth
        self.water: np.ndarray | None = None  # n×n bool once the world has water
        self.bare: BareTexture | None = None  # the look of sand, rock and dirt, once the world has some
        px = 1.0 / gsd
        self.fine = grain(rng, (n, n), 0.6)
        self.mid = smooth_noise(rng, (n, n), 1.2 * px, octaves=3)
        self.blobs = smooth_noise(rng, (n, n), 0.7 * px, octaves=2)
        dry = np.clip(smooth_noise(rng, (n, n), 45 * px, octaves=2) - 0.3, 0, 1)
        dark = np.clip(1.6 * (smooth_noise(rng, (n, n), 30 * px, octaves=2) - 0.6), 0, 1)
        contrast = palette.contrast
        texture = 1.0 + 0.07 * contrast * self.mid + 0.06 * contrast * self.fine
        grass, dry_grass, dark_grass = palette.grass, palette.dry_grass, palette.dark_grass
        self.rgb = np.empty((n, n, 3), np.float32)
        for c in range(3):
            base = np.float32(grass[c]) + np.float32(dry_grass[c] - grass[c]) * dry
            base += (np.float32(dark_grass[c]) - base) * dark
            self.rgb[..., c] = base * texture
        self.labels = np.full((n, n), L.LOW_VEGETATION, np.uint8)

    def crop(self, points: np.ndarray, pad: float = 2.0) -> tuple[slice, slice, np.ndarray] | None:
        """Bounding-box slices around a polygon and the polygon shifted into the crop (None if off-world)."""
        x0, y0 = np.floor(points.min(axis=0) - pad).astype(int)
        x1, y1 = np.ceil(points.max(axis=0) + pad).astype(int)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, self.n), min(y1, self.n)
        if x1 <= x0 or y1 <= y0:
            return None
        return slice(y0, y1), slice(x0, x1), points - np.array([x0, y0])

    def mask(self, points: np.ndarray, keep: tuple[int, ...] = ()) -> tuple[slice, slice, np.ndarray] | None:
        """Crop slices and the polygon's boolean mask inside the crop, less the pixels of ``keep`` classes."""
        found = self.crop(points)
        if found is None:
            return None
        ys, xs, local = found
        m = np.zeros((ys.stop - ys.start, xs.stop - xs.start), np.uint8)
        fill_polygon(m, local, 1)
        m = m.astype(bool)
        if keep:
            m &= ~np.isin(self.labels[ys, xs], keep)
        return ys, xs, m

    def texture(self, ys: slice, xs: slice, gain: float) -> np.ndarray:
        """Brightness modulation of a crop: 1 + gain × contrast × (mid-scale noise + 0.8 × grain)."""
        return 1.0 + gain * self.palette.contrast * (self.mid[ys, xs] + 0.8 * self.fine[ys, xs])

    def paint(self, points: np.ndarray, color: np.ndarray, label: int | None, texture: float = 0.08,
              keep: tuple[int, ...] = ()) -> None:
        """Fill a polygon with a textured colour (and a class, unless None), sparing pixels of ``keep`` classes."""
        found = self.mask(points, keep)
        if found is None:
            return
        ys, xs, m = found
        self.rgb[ys, xs][m] = np.asarray(color, np.float32)[None, :] * self.texture(ys, xs, texture)[m][:, None]
        if label is not None:
            self.labels[ys, xs][m] = label

    def shade(self, points: np.ndarray, factor: float, keep: tuple[int, ...] = ()) -> None:
        """Multiply the colour under a polygon (a shadow): colour changes, class does not."""
        found = self.mask(points, keep)
        if found is not None:
            ys, xs, m = found
            self.rgb[ys, xs][m] *= factor**self.shadow_depth

    def free(self, points: np.ndarray, blocked: tuple[int, ...]) -> bool:
        """True if the polygon lies inside the world and covers no pixel of the ``blocked`` classes, nor water."""
        if points.min() < 0 or points.max() >= self.n:
            return False
        ys, xs, m = self.mask(points)
        if self.water is not None and self.water[ys, xs][m].any():
            return False
        return not np.isin(self.labels[ys, xs][m], blocked).any()

    def on_water(self, pos: np.ndarray) -> bool:
        """True if world position ``pos`` (inside the world) is open water."""
        return self.water is not None and bool(self.water[int(pos[1]), int(pos[0])])


def build_world(layout: WorldLayout, rng: np.random.Generator, palette: Palette = STANDARD,
                shadow_depth: float = 1.0) -> World:
    """Generate the world for a layout in a palette, shadows darkened by ``factor ** shadow_depth``;
    deterministic for a given generator state. A feature the layout leaves off draws nothing from ``rng``."""
    n = int(round(layout.size_m / layout.gsd_m))
    px = 1.0 / layout.gsd_m
    area_km2 = (layout.size_m / 1000.0) ** 2
    canvas = _Canvas(n, layout.gsd_m, rng, palette, shadow_depth)
    sun = rng.uniform(0, 2 * np.pi)
    shadow_dir = np.array([np.cos(sun), np.sin(sun)])

    def count(per_km2: float) -> int:
        return int(rng.poisson(per_km2 * area_km2))

    _add_clutter(canvas, count(layout.clutter_patches_per_km2), px)
    if layout.bare_ground_share[1] > 0:
        _add_bare_ground(canvas, rng.uniform(*layout.bare_ground_share), px)
    roads = _add_roads(canvas, layout.roads, px)
    if layout.lakes_per_km2 > 0 or layout.river_prob > 0 or layout.coast_prob > 0:
        roads = _add_water(canvas, roads, layout, px)
    districts = _add_districts(canvas, count(layout.town_districts_per_km2), px) \
        if layout.town_districts_per_km2 > 0 else []
    roads = roads + [Road(points=polyline(start, end, 0.5 * px), width_px=town.street_width)
                     for town in districts for start, end in town.streets()]
    if layout.kerb_parking_share > 0:
        _add_kerb_parking(canvas, roads, layout.kerb_parking_share, px, shadow_dir)
    builder = _Builder(canvas, layout, shadow_dir)
    for town in districts:
        _add_town_buildings(builder, town, px)
    _add_parking_lots(canvas, roads, count(layout.parked_cars_per_km2), px, shadow_dir)
    _add_buildings(builder, roads, count(layout.buildings_per_km2), px)
    _add_trees(canvas, count(layout.tree_clusters_per_km2), px, shadow_dir)
    water = None
    if canvas.water is not None:  # what was painted over the water since (bridges, canopies) is not water
        toward_sun = np.array([-np.cos(sun), -np.sin(sun), 0.0]) * np.cos(SUN_ELEVATION)
        toward_sun[2] = -np.sin(SUN_ELEVATION)  # Z points down
        water = WaterBodies(mask=canvas.water & (canvas.labels == L.CLUTTER), sun=toward_sun)
    rgb = np.clip(canvas.rgb + 0.5, 0, 255).astype(np.uint8)
    return World(rgb=rgb, labels=canvas.labels, roads=roads, gsd_m=layout.gsd_m, water=water, blocks=builder.blocks)


def _add_clutter(canvas: _Canvas, patches: int, px: float) -> None:
    rng = canvas.rng
    for _ in range(patches):
        center = rng.uniform(0, canvas.n, 2)
        soils = canvas.palette.soils
        color = soils[rng.integers(len(soils))] * rng.uniform(0.9, 1.1)
        canvas.paint(blob_outline(center, rng.uniform(4, 16) * px, rng), color, L.CLUTTER, texture=0.12)


def _bare_texture(canvas: _Canvas) -> BareTexture:
    """The world's look of sand, rock and dirt, drawn when first needed."""
    if canvas.bare is None:
        canvas.bare = BareTexture(canvas.n, 1.0 / canvas.gsd, canvas.palette, canvas.mid, canvas.fine, canvas.rng)
    return canvas.bare


def _add_bare_ground(canvas: _Canvas, share: float, px: float) -> None:
    """Large areas of sand, rock and dirt (class clutter) over about ``share`` of the world."""
    ys, xs = np.nonzero(bare_ground_mask(canvas.n, px, share, canvas.rng))
    texture = _bare_texture(canvas)
    canvas.rgb[ys, xs] = texture.colours(ys, xs, texture.material(ys, xs))
    canvas.labels[ys, xs] = L.CLUTTER


def _add_water(canvas: _Canvas, roads: list[Road], layout: WorldLayout, px: float) -> list[Road]:
    """Lakes, a river and the sea (class clutter) with sandy beaches; returns the roads left on land.

    Roads cross lakes and rivers on causeways and bridges (their pixels stay road); at the sea they end: the sea
    paints over them and each keeps its longest stretch on land (MIN_ROAD_M or more), so no car drives into it.
    """
    inland, sea = place_water(layout, canvas.n, px, canvas.rng)
    water = (inland & (canvas.labels != L.ROAD)) | sea
    if sea.any():
        ashore = [(land_part(road.points, sea), road.width_px) for road in roads]
        kept = [Road(points=points, width_px=width) for points, width in ashore if len(points) >= 2]
        roads = [road for road in kept if road.length >= MIN_ROAD_M * px]
    ys, xs = np.nonzero(water)
    canvas.rgb[ys, xs] = water_colour(water, canvas.palette, px, canvas.mid[ys, xs])
    canvas.labels[ys, xs] = L.CLUTTER
    canvas.water = water
    beach = beach_mask(water, px, canvas.rng) & (canvas.labels != L.ROAD)
    ys, xs = np.nonzero(beach)
    canvas.rgb[ys, xs] = _bare_texture(canvas).colours(ys, xs, np.full(len(ys), SAND))
    canvas.labels[ys, xs] = L.CLUTTER
    return roads


def _add_districts(canvas: _Canvas, count: int, px: float) -> list[District]:
    """Town districts, their streets drawn as roads: each the one of DISTRICT_TRIES candidates on land (less than
    a tenth under water) whose square roads and buildings cover least, so that its blocks have room."""
    rng = canvas.rng
    districts = []
    for _ in range(count):
        built = np.isin(canvas.labels[::COVER_STEP, ::COVER_STEP], OCCUPIED)  # every COVER_STEP-th pixel will do
        wet = np.zeros_like(built) if canvas.water is None else canvas.water[::COVER_STEP, ::COVER_STEP]
        best, covered = None, 1.0
        for _attempt in range(DISTRICT_TRIES):
            candidate = district(rng.uniform(0.1 * canvas.n, 0.9 * canvas.n, 2), px, rng)
            inside = polygon_mask(built.shape, candidate.corners() / COVER_STEP)
            if inside.any() and wet[inside].mean() < 0.1 and built[inside].mean() < covered:
                best, covered = candidate, float(built[inside].mean())
        if best is not None:
            districts.append(best)
    for town in districts:
        for start, end in town.streets():
            heading = np.arctan2(*(end - start)[::-1])
            canvas.paint(rectangle((start + end) / 2, np.linalg.norm(end - start), town.street_width, heading),
                         canvas.palette.asphalt * rng.uniform(0.85, 1.1), L.ROAD, texture=0.1)
            _edge_lines(canvas, polyline(start, end, 0.5 * px), town.street_width, px)
    return districts


class _Builder:
    """Draws buildings: the shadow and a flat or pitched roof on the ground; with ``building_height_m`` above 0
    the building's 3D block too, collected in ``blocks``."""

    def __init__(self, canvas: _Canvas, layout: WorldLayout, shadow_dir: np.ndarray) -> None:
        self.canvas, self.layout, self.shadow_dir = canvas, layout, shadow_dir
        self.raised = layout.building_height_m[1] > 0
        # facades and ridges: a stream apart (spawning draws nothing), so the layout is the flat one's
        self.detail_rng = canvas.rng.spawn(1)[0] if self.raised else None
        self.blocks: list[Block] = []

    def heights(self, flat_range_m: tuple[float, float]) -> tuple[float, float]:
        """The range a building's height is drawn from: its eaves when raised, else what its shadow is drawn for."""
        return self.layout.building_height_m if self.raised else flat_range_m

    def build(self, center: np.ndarray, length: float, depth: float, heading: float, height_m: float) -> None:
        """One building on ``rectangle(center, length, depth, heading)`` (world px), ``height_m`` tall."""
        canvas, px = self.canvas, 1.0 / self.canvas.gsd
        footprint = rectangle(center, length, depth, heading)
        flat = canvas.rng.random() < self.layout.flat_roof_share
        if self.raised:
            self.blocks.append(_raise_block(canvas, footprint, height_m, 0.0 if flat else depth / px,
                                            self.detail_rng, self.shadow_dir))
        else:
            _draw_shadow(canvas, footprint, self.shadow_dir * SHADOW_PER_HEIGHT * (height_m * px), SHADOW_LIGHT)
        if flat:
            _flat_roof(canvas, center, length, depth, heading, px, self.shadow_dir)
        else:
            _pitched_roof(canvas, center, length, depth, heading)


def _add_town_buildings(builder: _Builder, town: District, px: float) -> None:
    """A district's blocks: rows of buildings along its streets, each drawn where it is free, as
    ``_add_buildings`` draws a building."""
    canvas = builder.canvas
    for plot in plots(town, px, canvas.rng, builder.heights(TOWN_HEIGHT_M)):
        margin = 0.2 * px
        if not canvas.free(rectangle(plot.center, plot.length + margin, plot.depth + margin, plot.heading), OCCUPIED):
            continue
        builder.build(plot.center, plot.length, plot.depth, plot.heading, plot.height_m)


def _add_kerb_parking(canvas: _Canvas, roads: list[Road], share: float, px: float, shadow_dir: np.ndarray) -> None:
    """Rows of cars (class static car) parked along the kerbs, on a parking lane (class road) outside the
    driving lanes; a slot is used only where its lane is clear of other roads, buildings, cars and water."""
    rng = canvas.rng
    margin = 0.3 * px  # the check keeps off the road's own edge and the neighbouring slots
    for road in roads:
        for slot in kerb_slots(road.points, road.cumulative, road.width_px, share, px, rng):
            check = rectangle(slot.center + slot.outward * margin / 2, slot.length - 2 * margin,
                              slot.width - margin, slot.heading)
            if not canvas.free(check, OCCUPIED):
                continue
            canvas.paint(rectangle(slot.center, slot.length, slot.width, slot.heading),
                         canvas.palette.asphalt * rng.uniform(0.9, 1.1), L.ROAD, texture=0.08)
            if slot.taken:
                _draw_car(canvas, car_parts(rng), (slot.center, slot.facing), px, shadow_dir)


def _add_roads(canvas: _Canvas, count: int, px: float) -> list[Road]:
    """Gently curving roads that cross the whole world, with a dashed centre line and edge lines."""
    rng, n = canvas.rng, canvas.n
    roads = []
    for _ in range(count):
        angle = rng.uniform(0, np.pi)
        through = rng.uniform(0.2 * n, 0.8 * n, 2)
        direction, normal = np.array([np.cos(angle), np.sin(angle)]), np.array([-np.sin(angle), np.cos(angle)])
        t = np.linspace(-0.8 * n, 0.8 * n, 7)
        offsets = rng.normal(0, 12 * px, t.size)
        control = through + t[:, None] * direction + offsets[:, None] * normal
        dense_t = np.linspace(0, len(control) - 1, int(1.6 * n / (0.5 * px)))
        points = np.stack([np.interp(dense_t, np.arange(len(control)), control[:, i]) for i in range(2)], axis=1)
        points = cv2.GaussianBlur(points.reshape(-1, 1, 2), (1, 0), 15).reshape(-1, 2)
        width = rng.uniform(7.0, 10.0) * px
        road = Road(points=points, width_px=width)
        roads.append(road)
        _stroke(canvas, points, width, canvas.palette.asphalt * rng.uniform(0.85, 1.15), L.ROAD, texture=0.1)
        _edge_lines(canvas, points, width, px)
        dash, gap = 3.0 * px, 6.0 * px
        for start in np.arange(0, road.length - dash, dash + gap):
            i0, i1 = np.searchsorted(road.cumulative, [start, start + dash])
            if i1 - i0 >= 2:
                _stroke(canvas, points[i0:i1], 0.15 * px, canvas.palette.marking, L.ROAD, texture=0.05)
    return roads


def _edge_lines(canvas: _Canvas, points: np.ndarray, width: float, px: float) -> None:
    """The white lines along both edges of a road."""
    for side in (-1, 1):
        edge = _offset_polyline(points, side * (width / 2 - 0.4 * px))
        _stroke(canvas, edge, 0.15 * px, canvas.palette.marking * 0.9, L.ROAD, texture=0.05)


def _offset_polyline(points: np.ndarray, offset: float) -> np.ndarray:
    tangent = np.gradient(points, axis=0)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-9)
    return points + offset * np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)


def _stroke(canvas: _Canvas, points: np.ndarray, width: float, color: np.ndarray, label: int, texture: float) -> None:
    """Draw a thick polyline as a class region, chunk by chunk so each crop stays small."""
    for start in range(0, len(points) - 1, 64):
        chunk = points[start : start + 65]
        found = canvas.crop(chunk, pad=width)
        if found is None:
            continue
        ys, xs, local = found
        m = np.zeros((ys.stop - ys.start, xs.stop - xs.start), np.uint8)
        cv2.polylines(m, [np.round(local * 16).astype(np.int32)], False, 1,
                      thickness=max(int(round(width)), 1), lineType=cv2.LINE_8, shift=4)
        m = m.astype(bool)
        canvas.rgb[ys, xs][m] = color[None, :].astype(np.float32) * canvas.texture(ys, xs, texture)[m][:, None]
        canvas.labels[ys, xs][m] = label


def _beside_road(roads: list[Road], rng: np.random.Generator, depth: float, setback: float) -> tuple[np.ndarray, float]:
    """A spot beside a random road: centre ``setback + depth/2`` from the road edge, and the road heading."""
    road = roads[rng.integers(len(roads))]
    pos, heading = road.at(rng.uniform(0, road.length))
    side = rng.choice([-1.0, 1.0])
    normal = np.array([-np.sin(heading), np.cos(heading)]) * side
    return pos + normal * (road.width_px / 2 + setback + depth / 2), heading


def _draw_shadow(canvas: _Canvas, footprint: np.ndarray, offset: np.ndarray, factor: float) -> None:
    hull = cv2.convexHull(np.concatenate([footprint, footprint + offset]).astype(np.float32)).reshape(-1, 2)
    canvas.shade(hull, factor, keep=(L.BUILDING,))


def _add_parking_lots(canvas: _Canvas, roads: list[Road], cars: int, px: float, shadow_dir: np.ndarray) -> None:
    """Asphalt lots (class road) beside roads, with stall lines and parked cars (class static car)."""
    rng = canvas.rng
    placed, attempts = 0, 0
    while placed < cars and roads and attempts < 200:
        attempts += 1
        length, depth = rng.uniform(18, 36) * px, rng.uniform(11, 13) * px
        center, heading = _beside_road(roads, rng, depth, rng.uniform(0.5, 3.0) * px)
        lot = rectangle(center, length, depth, heading)
        if not canvas.free(rectangle(center, length + 2 * px, depth + 2 * px, heading), OCCUPIED):
            continue
        canvas.paint(lot, canvas.palette.asphalt * rng.uniform(0.9, 1.2), L.ROAD, texture=0.08)
        along = np.array([np.cos(heading), np.sin(heading)])
        across = np.array([-np.sin(heading), np.cos(heading)])
        stalls = int(length / (2.6 * px))
        for row in (-1, 1):
            for k in range(stalls):
                stall_center = center + along * ((k + 0.5) * 2.6 * px - length / 2) + across * row * depth / 4
                line = rectangle(stall_center + along * 1.3 * px, 0.12 * px, depth / 2 * 0.9, heading)
                canvas.paint(line, canvas.palette.marking * 0.85, L.ROAD, texture=0.03)
                if placed < cars and rng.random() < 0.75:
                    pose = (stall_center, heading + np.pi / 2 + (np.pi if rng.random() < 0.5 else 0.0))
                    _draw_car(canvas, car_parts(rng), pose, px, shadow_dir)
                    placed += 1


def _draw_car(canvas: _Canvas, parts: list[Part], pose: tuple[np.ndarray, float], px: float,
              shadow_dir: np.ndarray) -> None:
    center, angle = pose
    body = transform_points(parts[0].polygon, center, angle, px)
    canvas.shade(body + shadow_dir * 0.6 * px, 0.6)
    for i, part in enumerate(parts):
        canvas.paint(transform_points(part.polygon, center, angle, px), part.color,
                     L.STATIC_CAR if i == 0 else None, texture=0.03)


def _add_buildings(builder: _Builder, roads: list[Road], count: int, px: float) -> None:
    """Buildings beside the roads (and a few anywhere), where the ground is free."""
    canvas = builder.canvas
    rng = canvas.rng
    placed, attempts = 0, 0
    while placed < count and attempts < 30 * max(count, 1):
        attempts += 1
        length, depth = rng.uniform(9, 24) * px, rng.uniform(8, 16) * px
        if roads and rng.random() < 0.85:
            center, heading = _beside_road(roads, rng, depth, rng.uniform(2, 9) * px)
            heading += rng.normal(0, 0.03)
        else:
            center, heading = rng.uniform(0, canvas.n, 2), rng.uniform(0, np.pi)
        if not canvas.free(rectangle(center, length + 4 * px, depth + 4 * px, heading), OCCUPIED):
            continue
        builder.build(center, length, depth, heading, rng.uniform(*builder.heights(FLAT_BUILDING_HEIGHT_M)))
        placed += 1


def _raise_block(canvas: _Canvas, footprint: np.ndarray, eaves_m: float, gable_span_m: float,
                 rng: np.random.Generator, shadow_dir: np.ndarray) -> Block:
    """The 3D block of a building (a gabled roof spans ``gable_span_m``; 0 = flat), its facade and its shadow."""
    ridge_m = gable_span_m / 2 * float(np.tan(np.radians(rng.uniform(*ROOF_PITCH_DEG)))) if gable_span_m else 0.0
    facade = paint_facade(block_walls(footprint, canvas.gsd, ridge_m > 0), eaves_m, eaves_m + ridge_m, rng, shadow_dir)
    block = Block(footprint=footprint, eaves_m=eaves_m, ridge_m=ridge_m, facade=facade)
    canvas.shade(shadow_outline(block, shadow_dir, canvas.gsd), SHADOW_LIGHT, keep=(L.BUILDING,))
    return block


def _flat_roof(canvas: _Canvas, center: np.ndarray, length: float, depth: float, heading: float, px: float,
               shadow_dir: np.ndarray) -> None:
    """A flat roof whose grey overlaps asphalt: a parapet rim and a few rooftop units."""
    rng = canvas.rng
    grey = rng.uniform(85, 150)
    color = np.array([grey, grey, grey * rng.uniform(0.97, 1.06)])
    canvas.paint(rectangle(center, length, depth, heading), color * 1.12, L.BUILDING, texture=0.05)
    canvas.paint(rectangle(center, length - 1.0 * px, depth - 1.0 * px, heading), color, L.BUILDING, texture=0.1)
    along, across = np.array([np.cos(heading), np.sin(heading)]), np.array([-np.sin(heading), np.cos(heading)])
    for _ in range(rng.integers(0, 4)):
        offset = along * rng.uniform(-0.35, 0.35) * length + across * rng.uniform(-0.3, 0.3) * depth
        unit = rectangle(center + offset, rng.uniform(1.0, 3.0) * px, rng.uniform(1.0, 2.0) * px, heading)
        canvas.shade(unit + shadow_dir * 0.5 * px, 0.7)
        canvas.paint(unit, np.array([190.0, 190.0, 192.0]) * rng.uniform(0.85, 1.05), L.BUILDING, texture=0.03)


def _pitched_roof(canvas: _Canvas, center: np.ndarray, length: float, depth: float, heading: float) -> None:
    """A gabled roof: two tiled halves lit differently, split along the ridge."""
    rng = canvas.rng
    color = canvas.palette.tiled_roofs[rng.integers(len(canvas.palette.tiled_roofs))] * rng.uniform(0.9, 1.1)
    across = np.array([-np.sin(heading), np.cos(heading)])
    lit = rng.uniform(1.0, 1.2)
    for side, gain in ((-1, lit), (1, 2.0 - lit - 0.15)):
        half = rectangle(center + across * side * depth / 4, length, depth / 2, heading)
        canvas.paint(half, color * gain, L.BUILDING, texture=0.09)
    ridge = rectangle(center, length, 0.25 / canvas.gsd, heading)
    canvas.paint(ridge, color * 0.7, L.BUILDING, texture=0.03)


def _add_trees(canvas: _Canvas, clusters: int, px: float, shadow_dir: np.ndarray) -> None:
    """Clusters of round canopies: darker, blobby greens lit from the sun's side."""
    rng = canvas.rng
    for _ in range(clusters):
        center = rng.uniform(0, canvas.n, 2)
        spread = rng.uniform(3, 12) * px
        green = canvas.palette.tree_greens[rng.integers(len(canvas.palette.tree_greens))]
        for _ in range(rng.integers(2, 14)):
            pos = center + rng.normal(0, spread, 2)
            if not (0 <= pos[0] < canvas.n and 0 <= pos[1] < canvas.n):
                continue
            if canvas.labels[int(pos[1]), int(pos[0])] in (L.BUILDING, L.ROAD) or canvas.on_water(pos):
                continue
            radius = rng.uniform(1.6, 4.5) * px
            outline = blob_outline(pos, radius, rng, roughness=0.12)
            canvas.shade(outline + shadow_dir * radius * 0.9, 0.6, keep=(L.BUILDING,))
            found = canvas.mask(outline, keep=(L.BUILDING,))
            if found is None:
                continue
            ys, xs, m = found
            yy, xx = np.mgrid[ys, xs]
            toward_sun = -((xx - pos[0]) * shadow_dir[0] + (yy - pos[1]) * shadow_dir[1]) / radius
            contrast = canvas.palette.contrast
            light = (1.0 + 0.22 * toward_sun + 0.22 * contrast * canvas.blobs[ys, xs]
                     + 0.06 * contrast * canvas.fine[ys, xs])
            tint = green * rng.uniform(0.9, 1.1)
            canvas.rgb[ys, xs][m] = (tint[None, :] * light[m][:, None]).astype(np.float32)
            canvas.labels[ys, xs][m] = L.TREE

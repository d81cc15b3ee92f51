"""The richer synthetic worlds (issue #25): water with waves and glints, bare ground, sky kinds, palettes, towns
with kerb-side parking, people in groups; all off by default, so that today's worlds stay as they were."""

from dataclasses import replace

import cv2
import numpy as np
import pytest
from conftest import small_scenario

from ssp_ros.errors import ConfigError
from ssp_ros.eval.flow import warp_nearest
from ssp_ros.resources import share_dir
from ssp_ros.schema import config_from_dict, load_section
from ssp_ros.synthetic import SyntheticVideo, movers, palette, relative_homography, skies, terrain, town, waves, world
from ssp_ros.synthetic import labels as L
from ssp_ros.synthetic import video as video_module
from ssp_ros.synthetic.atmosphere import AtmosphereModel
from ssp_ros.synthetic.config import (
    SKY_KINDS,
    Atmosphere,
    CameraMotion,
    Colours,
    Nuisances,
    SyntheticConfig,
    WorldLayout,
)
from ssp_ros.synthetic.sampling import FOOTPRINT_STEP
from ssp_ros.synthetic.shapes import person_parts
from ssp_ros.synthetic.textures import fill_polygon, rectangle
from ssp_ros.synthetic.video import apply_homography
from ssp_ros.synthetic.world import build_world

CLEAN = Nuisances(exposure_drift=0.0, white_balance_drift=0.0, noise_sigma=0.0, motion_blur_prob=0.0, jpeg_prob=0.0,
                  drop_prob=0.0)
WET = WorldLayout(size_m=160.0, gsd_m=0.1, lakes_per_km2=150.0, river_prob=1.0, coast_prob=1.0)
BARE = dict(roads=0, buildings_per_km2=0.0, tree_clusters_per_km2=0.0, parked_cars_per_km2=0.0,
            clutter_patches_per_km2=0.0)


@pytest.fixture(scope="module")
def wet_video() -> tuple[SyntheticVideo, list]:
    """Five clean frames over a world with lakes, a river and the sea, seed 11 (the camera sees water)."""
    video = SyntheticVideo(small_scenario(world=WET, nuisances=CLEAN), frames=5, seed=11)
    return video, list(video)


def water_in_view(video: SyntheticVideo, frame) -> np.ndarray:
    """The frame's pixels that see the world's water, less a 2-pixel rim (nearest sampling may differ there)."""
    cfg = video.cfg
    mask = cv2.warpPerspective(video.world.water.mask.astype(np.uint8), frame.world_to_image, (cfg.width, cfg.height),
                               flags=cv2.INTER_NEAREST)
    return cv2.erode(mask, np.ones((5, 5), np.uint8)).astype(bool)


def test_new_features_are_off_by_default_and_draw_nothing(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a feature that is off was drawn")

    for module, name in ((world, "place_water"), (world, "bare_ground_mask"), (world, "beach_mask"),
                         (world, "district"), (world, "kerb_slots"), (video_module, "draw_palette"),
                         (video_module, "WaterSurface"), (movers, "_groups")):
        monkeypatch.setattr(module, name, refuse)
    video = SyntheticVideo(small_scenario(), frames=2, seed=3)
    list(video)
    assert video.world.water is None and video.sky.kind is None and video.sky.light is None
    assert video.sky.shadow_depth == 1.0 and video.sky.atmosphere == Atmosphere()
    assert not SyntheticConfig().colours.jitters
    # the streams added for the new features come after today's six, which stay as they were
    for seed in (0, 3002):
        today, now = np.random.SeedSequence(seed).spawn(6), np.random.SeedSequence(seed).spawn(9)[:6]
        assert [a.generate_state(4).tolist() for a in today] == [b.generate_state(4).tolist() for b in now]


def test_water_and_bare_ground_are_clutter() -> None:
    layout = WorldLayout(size_m=160.0, gsd_m=0.1, lakes_per_km2=150.0, river_prob=1.0, coast_prob=1.0,
                         bare_ground_share=(0.4, 0.4), **BARE)
    built = build_world(layout, np.random.default_rng(5))
    assert built.water is not None and built.water.mask.mean() > 0.15
    assert (built.labels[built.water.mask] == L.CLUTTER).all()
    # nothing but water, bare ground (with its beaches) and grass: bare ground is clutter too
    shares = np.bincount(built.labels.ravel(), minlength=8) / built.labels.size
    assert set(np.flatnonzero(shares)) == {L.CLUTTER, L.LOW_VEGETATION}
    assert shares[L.CLUTTER] > built.water.mask.mean() + 0.25
    assert np.linalg.norm(built.water.sun) == pytest.approx(1.0) and built.water.sun[2] < 0  # above the world


def test_roads_end_at_the_sea_and_nothing_is_built_in_water() -> None:
    layout = WorldLayout(size_m=160.0, gsd_m=0.1, coast_prob=1.0, roads=6, buildings_per_km2=3000.0)
    built = build_world(layout, np.random.default_rng(2))
    sea = built.water.mask
    for road in built.roads:
        cols, rows = road.points.astype(int).T
        inside = (cols >= 0) & (cols < built.size_px) & (rows >= 0) & (rows < built.size_px)
        assert not sea[rows[inside], cols[inside]].any()
    assert not np.isin(built.labels[sea], (L.BUILDING, L.STATIC_CAR, L.TREE, L.ROAD)).any()
    assert (built.labels == L.BUILDING).mean() > 0.05


def test_water_keeps_exact_labels_and_flow(wet_video) -> None:
    video, frames = wet_video
    for a, b in zip(frames[:-1], frames[1:]):
        wet = water_in_view(video, a) & a.valid
        assert wet.mean() > 0.05, "the camera should see water"
        assert (a.labels[wet] == L.CLUTTER).all()
        # the flow of water is the ground's: the camera homography
        ys, xs = np.nonzero(wet)
        grid = np.stack([xs, ys], -1).astype(np.float64)
        expected = apply_homography(relative_homography(a, b), grid) - grid
        np.testing.assert_allclose(a.flow[ys, xs], expected, atol=1e-3)
        # labels carried by the exact flow agree on water
        warped, ok = warp_nearest(b.labels, a.flow, a.valid)
        assert (warped[wet & ok] == L.CLUTTER).mean() > 0.995


def test_waves_and_glints_change_the_water_from_frame_to_frame() -> None:
    """The same view a frame and half a second later: water pixels change (waves travel, glints flash), land
    pixels do not."""
    height, width, gsd = 160, 240, 0.1
    mask = np.zeros((400, 400), bool)
    mask[:, 150:] = True  # water on most of the view
    sun = np.array([0.3, 0.2, -0.93]) / np.linalg.norm([0.3, 0.2, -0.93])
    surface = waves.WaterSurface(mask, sun, gsd, np.random.default_rng(0))
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = 100.25 + xs * 0.5, 100.25 + ys * 0.5  # 5 cm per pixel, no pixel on a world pixel's edge
    rays = np.stack([(xs - width / 2) / 150.0, (ys - height / 2) / 150.0, np.ones_like(xs)], axis=-1)
    jacobian = np.zeros((-(-height // FOOTPRINT_STEP), -(-width // FOOTPRINT_STEP), 2, 2), np.float32)
    jacobian[..., 0, 0] = jacobian[..., 1, 1] = 0.5
    images = []
    for t in (10.0, 10.0 + 1 / 30, 10.5):
        image = np.full((height, width, 3), 80.0, np.float32)
        surface.draw(image, u, v, np.ones((height, width), bool), rays, jacobian, t)
        images.append(image)
    wet = mask[np.rint(v).astype(int), np.rint(u).astype(int)]
    assert all(np.array_equal(image[~wet], images[0][~wet]) for image in images)
    assert (images[0][~wet] == 80.0).all()
    assert np.abs(images[1] - images[0]).mean(axis=2)[wet].mean() > 0.5  # the waves travel
    glints = [image.mean(axis=2)[wet] > 160.0 for image in images]
    assert min(g.sum() for g in glints) >= 10  # glints shine
    assert (glints[0] & glints[2]).sum() < 0.5 * glints[0].sum()  # and flash on and off


def test_every_sky_kind_appears_and_looks_its_own() -> None:
    assert tuple(skies.KINDS) == SKY_KINDS
    cfg = Atmosphere(sky_kinds=SKY_KINDS)
    seen = {skies.draw_sky(cfg, np.random.default_rng(seed)).kind for seed in range(30)}
    assert seen == set(SKY_KINDS)
    up = np.array([[np.cos(a) * 0.5, np.sin(a) * 0.5, -1.0] for a in np.linspace(0, 2 * np.pi, 64)])
    colours = {}
    for name in SKY_KINDS:
        look = skies.draw_sky(Atmosphere(sky_kinds=(name,)), np.random.default_rng(0))
        assert look.kind == name and look.atmosphere.zenith_rgb == skies.KINDS[name].zenith_rgb
        colours[name] = AtmosphereModel(look.atmosphere, np.random.default_rng(1), look.cloud_rgb).sky(up).mean(axis=0)
    for i, a in enumerate(SKY_KINDS):
        for b in SKY_KINDS[i + 1 :]:
            assert np.abs(colours[a] - colours[b]).max() > 20, (a, b, colours)
    assert colours["clear"][2] > colours["clear"][0] + 60  # blue
    assert np.ptp(colours["overcast"]) < 25  # grey
    dusk = skies.KINDS["dusk"]
    assert dusk.light_rgb[0] > dusk.light_rgb[2] and skies.KINDS["overcast"].shadow_depth < dusk.shadow_depth < 1.0
    with pytest.raises(ConfigError, match="sky_kinds: unknown kind"):
        Atmosphere(sky_kinds=("clear", "sunny"))


def test_an_overcast_flight_dims_the_ground_and_keeps_its_labels() -> None:
    def first(**atmosphere) -> object:
        return next(iter(SyntheticVideo(small_scenario(nuisances=CLEAN, atmosphere=Atmosphere(**atmosphere)), 1, 4)))

    plain, overcast = first(), first(sky_kinds=("overcast",))
    assert np.array_equal(plain.labels, overcast.labels)
    assert overcast.image.mean() < 0.9 * plain.image.mean()


def test_each_world_draws_its_own_palette() -> None:
    colours = Colours(hue_deg=20.0, saturation=0.3, brightness=0.25, texture_contrast=0.5)
    a, b = (palette.draw_palette(colours, np.random.default_rng(seed)) for seed in (0, 1))
    for name in palette.MATERIALS:
        assert not np.allclose(getattr(a, name), getattr(b, name), atol=1.0), name
        value = getattr(a, name).max(axis=-1) / getattr(palette.STANDARD, name).max(axis=-1)
        assert np.all((value > 0.74) & (value < 1.26)), name  # brightness within ±25 %
    assert 0.5 <= a.contrast <= 1.5 and a.contrast != b.contrast
    assert palette.STANDARD.contrast == 1.0
    np.testing.assert_allclose(palette.shift_hsv(palette.STANDARD.grass, 0.0, 1.0, 1.0), palette.STANDARD.grass,
                               atol=0.01)
    green = palette.shift_hsv(np.array([200.0, 0.0, 0.0]), 120.0, 1.0, 1.0)
    np.testing.assert_allclose(green, [0.0, 200.0, 0.0], atol=0.5)
    # the palette changes colours, not the layout
    layout = WorldLayout(size_m=100.0, gsd_m=0.1)
    one, two = (build_world(layout, np.random.default_rng(7), p) for p in (a, b))
    assert np.array_equal(one.labels, two.labels)
    grass = one.labels == L.LOW_VEGETATION
    assert np.abs(one.rgb[grass].mean(axis=0) - two.rgb[grass].mean(axis=0)).max() > 5


def test_kerb_side_cars_stay_off_the_driving_lanes_and_buildings() -> None:
    layout = WorldLayout(size_m=160.0, gsd_m=0.1, kerb_parking_share=1.0, town_districts_per_km2=40.0,
                         parked_cars_per_km2=0.0, tree_clusters_per_km2=0.0)
    built = build_world(layout, np.random.default_rng(3))
    cars = built.labels == L.STATIC_CAR
    lanes = np.zeros(cars.shape, np.uint8)  # every road's driving lanes, less a pixel along each edge
    for road in built.roads:
        for a, b in zip(road.points[:-1], road.points[1:]):
            fill_polygon(lanes, rectangle((a + b) / 2, np.linalg.norm(b - a), road.width_px - 2.0,
                                          np.arctan2(b[1] - a[1], b[0] - a[0])), 1)
    assert cars.mean() > 0.01
    assert not (cars & lanes.astype(bool)).any()
    # whole cars in rows: no building (or another car) took part of one
    count, car_ids, stats, _ = cv2.connectedComponentsWithStats(cars.astype(np.uint8), connectivity=4)
    area_m2 = stats[1:, cv2.CC_STAT_AREA] * built.gsd_m**2
    assert count - 1 > 40
    assert area_m2.min() > 0.9 * 3.9 * 1.7 and area_m2.max() < (4.9 + 0.2) * (1.95 + 0.2)  # a pixel all round
    # every car stands on a parking lane: its outline touches road
    near_road = cv2.dilate((built.labels == L.ROAD).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert set(np.unique(car_ids[cars & near_road])) == set(range(1, count))


def test_town_districts_are_street_grids_lined_with_buildings() -> None:
    layout = WorldLayout(size_m=200.0, gsd_m=0.1, town_districts_per_km2=50.0)
    districts = []
    original = world._add_districts

    def keep(*args):
        districts.extend(original(*args))
        return districts

    monkey = pytest.MonkeyPatch()
    monkey.setattr(world, "_add_districts", keep)
    try:
        built = build_world(layout, np.random.default_rng(2))
    finally:
        monkey.undo()
    assert districts
    inside = np.zeros(built.labels.shape, bool)
    for district in districts:
        inside |= cv2.fillPoly(np.zeros(built.labels.shape, np.uint8),
                               [np.round(district.corners()).astype(np.int32)], 1).astype(bool)
        for start, end in district.streets():
            middle = np.round((start + end) / 2).astype(int)
            if 0 <= middle.min() and middle.max() < built.size_px:
                assert built.labels[middle[1], middle[0]] in (L.ROAD, L.TREE, L.MOVING_CAR)
    building = built.labels == L.BUILDING
    assert building[inside].mean() > 1.2 * building[~inside].mean()


def test_people_are_real_sized() -> None:
    for seed in range(5):
        shoulders, head = (part.polygon for part in person_parts(np.random.default_rng(seed)))
        across, along = np.ptp(shoulders[:, 1]), np.ptp(shoulders[:, 0])
        assert 0.4 <= across <= 0.6 and 0.25 <= along <= 0.35 and np.ptp(head[:, 1]) < across


def test_groups_stand_or_stroll_together_on_dry_open_ground() -> None:
    offsets = movers.formation(6)
    gaps = np.linalg.norm(offsets[:, None] - offsets[None], axis=-1)[np.triu_indices(6, 1)]
    assert gaps.min() >= 0.69 and np.abs(offsets.mean(axis=0)).max() < 1e-9
    built = build_world(WorldLayout(size_m=100.0, gsd_m=0.1, lakes_per_km2=300.0), np.random.default_rng(0))
    assert built.water is not None
    people = movers.spawn_movers(built, 0, 60, np.random.default_rng(1), group_share=1.0)
    assert len(people) == 60 and not any(p.wanders for p in people)
    px_per_m = 1.0 / built.gsd_m
    positions = np.array([p.position for p in people])
    assert all(built.walkable(int(u), int(v)) for u, v in positions)
    apart = np.linalg.norm(positions[:, None] - positions[None], axis=-1) / px_per_m
    np.fill_diagonal(apart, np.inf)
    assert apart.min() >= 0.69 and apart.min(axis=1).max() < 1.0  # each has a neighbour within a metre
    # a strolling group keeps its shape: one heading, one speed (on open ground, nothing turns one back)
    open_ground = build_world(WorldLayout(size_m=100.0, gsd_m=0.1, **BARE), np.random.default_rng(0))
    people = movers.spawn_movers(open_ground, 0, 40, np.random.default_rng(2), group_share=1.0)
    strolling = [p for p in people if p.speed_px > 0]
    assert len(strolling) >= 4
    before = np.array([p.position for p in strolling])
    for _ in range(10):
        for p in strolling:
            p.step(1 / 30, open_ground)
    after = np.array([p.position for p in strolling])
    gaps_before = np.linalg.norm(before[:, None] - before[None], axis=-1)
    gaps_after = np.linalg.norm(after[:, None] - after[None], axis=-1)
    together = gaps_before < 3.0 * px_per_m  # members of one group
    np.testing.assert_allclose(gaps_after[together], gaps_before[together], atol=1e-6)
    assert np.linalg.norm(after - before, axis=1).min() > 0.2 * px_per_m


def test_bad_surface_settings_name_the_field() -> None:
    with pytest.raises(ConfigError, match="bare_ground_share"):
        WorldLayout(bare_ground_share=(0.5, 0.2))
    with pytest.raises(ConfigError, match="coast_prob"):
        WorldLayout(coast_prob=1.5)
    with pytest.raises(ConfigError, match="kerb_parking_share"):
        WorldLayout(kerb_parking_share=-0.1)
    with pytest.raises(ConfigError, match="hue_deg"):
        Colours(hue_deg=-5.0)
    with pytest.raises(ConfigError, match=r"colours\.saturation"):
        config_from_dict(SyntheticConfig, {"colours": {"saturation": 1.0}})
    with pytest.raises(ConfigError, match=r"atmosphere\.sky_kinds\[0\]"):
        config_from_dict(SyntheticConfig, {"atmosphere": {"sky_kinds": [3]}})


def test_varied_scenarios_ship_everything_on_over_todays_flights() -> None:
    scenarios = share_dir() / "config" / "scenarios"
    for name, base in (("varied", "default"), ("varied_oblique", "oblique")):
        cfg = load_section(SyntheticConfig, scenarios / f"{name}.yaml")
        today = load_section(SyntheticConfig, scenarios / f"{base}.yaml")
        assert cfg.camera == today.camera and cfg.nuisances == today.nuisances
        assert (cfg.height, cfg.width, cfg.fps, cfg.world.size_m) == (today.height, today.width, today.fps,
                                                                      today.world.size_m)
        w = cfg.world
        assert min(w.lakes_per_km2, w.river_prob, w.coast_prob, w.bare_ground_share[1], w.town_districts_per_km2,
                   w.kerb_parking_share, w.people_group_share) > 0
        assert set(cfg.atmosphere.sky_kinds) == set(SKY_KINDS) and cfg.colours.jitters
    assert CameraMotion() == load_section(SyntheticConfig, scenarios / "default.yaml").camera


def test_bare_ground_covers_its_share_in_three_materials() -> None:
    n, px = 800, 10.0
    mask = terrain.bare_ground_mask(n, px, 0.3, np.random.default_rng(0))
    assert abs(mask.mean() - 0.3) < 0.05
    texture = terrain.BareTexture(n, px, palette.STANDARD, np.zeros((n, n), np.float32), np.zeros((n, n), np.float32),
                                  np.random.default_rng(1))
    ys, xs = np.nonzero(np.ones((n, n), bool))
    material = texture.material(ys, xs)
    shares = np.bincount(material, minlength=3) / len(material)
    assert np.all(np.abs(shares - texture.shares) < 0.2) and set(np.unique(material)) <= {0, 1, 2}
    rgb = texture.colours(ys[:5000], xs[:5000], material[:5000])
    assert rgb.shape == (5000, 3) and np.isfinite(rgb).all() and rgb.min() > 0


def test_kerb_slots_cover_the_asked_share_outside_the_road() -> None:
    px = 10.0
    points = np.stack([np.linspace(0, 4000, 801), np.full(801, 500.0)], axis=1)
    cumulative = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    for share in (0.3, 1.0):
        slots = town.kerb_slots(points, cumulative, 70.0, share, px, np.random.default_rng(0))
        covered = sum(s.length for s in slots) / (2 * cumulative[-1])
        assert abs(covered - share) < 0.2, (share, covered)
        offsets = np.abs(np.array([s.center[1] for s in slots]) - 500.0)
        np.testing.assert_allclose(offsets, 35.0 + town.LANE_M * px / 2)  # just outside the 7 m road


def test_town_buildings_are_raised_with_the_rest_and_keep_the_flat_layout() -> None:
    """With walls on, a town's buildings are 3D blocks too (every building pixel lies in some block's footprint),
    and the town is laid out as the flat one of the same seed."""
    layout = WorldLayout(size_m=200.0, gsd_m=0.1, town_districts_per_km2=50.0, buildings_per_km2=300.0)
    flat = build_world(layout, np.random.default_rng(2))
    raised = build_world(replace(layout, building_height_m=(3.0, 20.0)), np.random.default_rng(2))
    np.testing.assert_array_equal(raised.labels, flat.labels)
    assert not flat.blocks and raised.blocks
    covered = np.zeros(raised.labels.shape, np.uint8)
    for block in raised.blocks:
        cv2.fillPoly(covered, [np.round(block.footprint).astype(np.int32)], 1)
        assert 3.0 <= block.eaves_m <= 20.0
    building = raised.labels == L.BUILDING
    assert covered[building].mean() > 0.97

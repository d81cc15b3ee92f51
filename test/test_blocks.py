"""Buildings as 3D blocks (``world.building_height_m``): walls labelled building, drawn with a per-pixel depth test
against the ground, the movers and each other, exact flow of their 3D points that is valid only where the point
is seen in the next frame, mirrored copies outside the world, and the flat world untouched when they are off."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
from conftest import small_scenario

from ssp_ros.errors import ConfigError
from ssp_ros.eval.flow import warp_nearest
from ssp_ros.synthetic import SyntheticVideo
from ssp_ros.synthetic import labels as L
from ssp_ros.synthetic.camera import CameraPose, project_points, rotation_world_to_camera
from ssp_ros.synthetic.config import Atmosphere, CameraMotion, Nuisances, SyntheticConfig, WorldLayout
from ssp_ros.synthetic.movers import Mover
from ssp_ros.synthetic.sampling import MipMap
from ssp_ros.synthetic.shapes import Part, pose_matrix
from ssp_ros.synthetic.video import BLOCK_ID, SKY_ID
from ssp_ros.synthetic.world import World, build_world

CLEAN = Nuisances(exposure_drift=0.0, white_balance_drift=0.0, noise_sigma=0.0, motion_blur_prob=0.0, jpeg_prob=0.0,
                  drop_prob=0.0)
HEIGHTS = (6.0, 18.0)


def walls_scenario(pitch: float, heights: tuple[float, float] = HEIGHTS, **camera) -> SyntheticConfig:
    """120×200 frames over a 200 m world of 3D blocks and no movers, the camera pitched ``pitch`` from nadir, clean."""
    motion = dict(altitude_m=(30.0, 40.0), hfov_deg=84.0, pitch_deg=(pitch, pitch), tilt_deg=2.0, yaw_offset_deg=0.0)
    motion.update(camera)
    world = WorldLayout(size_m=200.0, gsd_m=0.1, building_height_m=heights, moving_cars_per_km2=0.0, people_per_km2=0.0)
    return small_scenario(camera=CameraMotion(**motion), nuisances=CLEAN, atmosphere=Atmosphere(visibility_m=1500.0),
                          world=world)


@pytest.fixture(scope="module")
def oblique() -> tuple[SyntheticVideo, list]:
    scenario = replace(walls_scenario(pitch=55.0, speed_mps=15.0), fps=6.0)  # 2.5 m a frame: parallax, occlusion
    video = SyntheticVideo(scenario, frames=4, seed=11)
    return video, list(video)


def wall_pixels(video: SyntheticVideo, faces: np.ndarray) -> np.ndarray:
    """Pixels that show a wall (a block face that is not a roof)."""
    walls = np.array([i for i, face in enumerate(video._blocks.faces) if not face.roof])
    return np.isin(faces, walls)


def camera_centre(pose: CameraPose) -> np.ndarray:
    return np.array([pose.x, pose.y, -pose.altitude])


def test_blocks_are_building(oblique) -> None:
    video, frames = oblique
    render = video._render(0, [])
    blocks = render.blocks.faces >= 0
    assert np.array_equal(render.labels, frames[0].labels) and blocks.mean() > 0.1
    assert (render.labels[blocks] == L.BUILDING).all() and (render.ids[blocks] == BLOCK_ID).all()


def test_walls_show_in_oblique_views_and_hardly_at_nadir() -> None:
    """Over nine spots of one town, at 35 m: the share of the image that shows walls, looking down and at 55°."""
    video = SyntheticVideo(walls_scenario(pitch=0.0, heights=(3.0, 8.0)), frames=1, seed=11)
    size = video.world.size_px * video.world.gsd_m
    walls, blocks = {}, {}
    for pitch in (0.0, 55.0):
        shares = []
        for x in np.linspace(60.0, size - 60.0, 3):
            for y in np.linspace(60.0, size - 60.0, 3):
                video.poses = [CameraPose(x=x, y=y, altitude=35.0, yaw=0.3, pitch=-np.radians(pitch), roll=0.0)]
                faces = video._render(0, []).blocks.faces
                shares.append((wall_pixels(video, faces).mean(), (faces >= 0).mean()))
        walls[pitch], blocks[pitch] = np.mean(shares, axis=0)
    assert blocks[0.0] > 0.05 and walls[55.0] > 0.1, (blocks, walls)
    assert walls[0.0] < 0.3 * walls[55.0], walls


def test_exact_flow_carries_wall_and_roof_labels_and_image(oblique) -> None:
    video, frames = oblique
    for a, b in zip(frames[:-1], frames[1:]):
        blocks = a.labels == L.BUILDING
        warped, ok = warp_nearest(b.labels, a.flow, a.valid)
        assert ok[blocks].mean() > 0.8
        assert (warped[blocks & ok] == L.BUILDING).mean() > 0.99
        cols, rows = (np.round(np.indices(a.labels.shape)[::-1] + np.moveaxis(a.flow, -1, 0)).astype(int))
        sel = blocks & ok
        diff = np.abs(b.image[rows[sel], cols[sel]].astype(float) - a.image[sel]).mean(axis=1)
        still = np.abs(b.image[sel].astype(float) - a.image[sel]).mean(axis=1)
        assert np.median(diff) < 0.5 * np.median(still), (np.median(diff), np.median(still))


def test_a_wall_point_moves_as_its_3d_point_projects(oblique) -> None:
    """The flow of wall pixels against the ray–plane intersection worked out here and seen from the next pose."""
    video, frames = oblique
    render = video._render(0, [])
    pose, nxt = video.poses[video.steps[0]], video.poses[video.steps[1]]
    r, centre = rotation_world_to_camera(pose), camera_centre(pose)
    ys, xs = np.nonzero(wall_pixels(video, render.blocks.faces))
    pick = np.linspace(0, len(xs) - 1, 200).astype(int)
    ys, xs = ys[pick], xs[pick]
    expected = []
    for x, y in zip(xs, ys):
        face = video._blocks.faces[render.blocks.faces[y, x]]
        ray = r.T @ np.linalg.solve(video.k, [x, y, 1.0])
        point = centre + ray * (face.normal @ (face.corners[0] - centre)) / (face.normal @ ray)
        expected.append(point)
    target, depth = project_points(nxt, video.k, np.array(expected))
    assert (depth > 0).all()
    np.testing.assert_allclose(frames[0].flow[ys, xs], target - np.stack([xs, ys], -1), atol=1e-3)


def test_flow_is_valid_exactly_where_the_point_is_seen_next(oblique) -> None:
    """A point (ground or block) whose flow is valid is what the other frame's depth test shows around its target;
    a point that nearer surfaces hide all around its target is invalid, and so is ground that a block hides at its
    target. Flying forward, the blocks uncover the ground behind them; flying back (the flow from frame k + 1 to
    frame k) they hide it."""
    video, _ = oblique
    renders = [video._render(index, []) for index in range(len(video))]
    hidden_ground = 0
    for one, other in zip(renders[:-1], renders[1:]):
        for cur, nxt in ((one, other), (other, one)):
            _, valid = video._exact_flow(cur, nxt)
            seen = cur.ids != SKY_ID
            rays = video._rays[seen] @ rotation_world_to_camera(cur.camera)
            points = camera_centre(cur.camera) + cur.blocks.depth[seen][:, None] * rays
            target, depth = project_points(nxt.camera, video.k, points)
            col, row = np.round(target).astype(int).T
            inside = (col >= 1) & (col < 199) & (row >= 1) & (row < 119)  # away from the edge: 3×3 around it
            # the other frame's nearest and farthest depth around each target pixel (3×3: the rounding's reach)
            near = cv2.erode(nxt.blocks.depth, np.ones((3, 3)))[row[inside], col[inside]]
            far = cv2.dilate(nxt.blocks.depth, np.ones((3, 3)))[row[inside], col[inside]]
            valid, depth = valid[seen][inside], depth[inside]
            assert valid.mean() > 0.7
            assert ((depth[valid] > 0.98 * near[valid]) & (depth[valid] < 1.02 * far[valid])).all()
            assert not valid[depth > 1.1 * far].any()
            # ground whose target pixel shows a block in front of it
            there = nxt.blocks.depth[row[inside], col[inside]]
            behind = (cur.ids[seen][inside] == 0) & (nxt.blocks.faces[row[inside], col[inside]] >= 0) & (depth > there)
            assert not valid[behind].any()
            hidden_ground += int(behind.sum())
    assert hidden_ground > 200, "blocks should hide some ground between frames"


def test_nearer_faces_hide_farther_ones(oblique) -> None:
    """Each block pixel shows the nearest face its ray meets, found here by brute force over every face."""
    video, _ = oblique
    render = video._render(0, [])
    r, centre = rotation_world_to_camera(render.camera), camera_centre(render.camera)
    faces = video._blocks.faces
    normals = np.array([face.normal for face in faces])
    corners = np.array([np.concatenate([f.corners, f.corners[-1:].repeat(5 - len(f.corners), 0)]) for f in faces])
    edges = np.roll(corners, -1, axis=1) - corners
    ys, xs = np.nonzero(render.blocks.faces >= 0)
    pick = np.arange(0, len(xs), 17)
    agree = 0
    for x, y in zip(xs[pick], ys[pick]):
        ray = r.T @ np.linalg.solve(video.k, [x, y, 1.0])
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.einsum("fi,fi->f", normals, corners[:, 0] - centre) / (normals @ ray)
        hit = centre + t[:, None] * ray
        turns = np.einsum("fki,fi->fk", np.cross(edges, hit[:, None] - corners), normals)
        meets = (normals @ ray < 0) & (t > 0) & ((turns >= -1e-9).all(axis=1) | (turns <= 1e-9).all(axis=1))
        agree += np.flatnonzero(meets)[np.argmin(t[meets])] == render.blocks.faces[y, x]
    assert agree >= 0.99 * len(pick), f"{agree} of {len(pick)}"


class _Standing(Mover):
    """A car that does not move, placed by the test."""

    label = L.MOVING_CAR
    radius_m = 2.5

    def __init__(self, centre_px: np.ndarray) -> None:
        self.centre = centre_px
        self.parts = [Part(np.array([[-2.2, -0.9], [2.2, -0.9], [2.2, 0.9], [-2.2, 0.9]]), np.array([200.0, 30, 30]))]

    def pose(self, px_per_m: float) -> np.ndarray:
        return pose_matrix(self.centre, 0.0, px_per_m)

    def step(self, dt: float, world) -> None:
        pass


def test_a_car_behind_a_wall_is_hidden_and_one_in_front_is_drawn(oblique) -> None:
    video, _ = oblique
    render = video._render(0, [])
    pose = video.poses[0]
    r, centre = rotation_world_to_camera(pose), camera_centre(pose)

    def ground_under(x: int, y: int) -> np.ndarray:
        ray = r.T @ np.linalg.solve(video.k, [x, y, 1.0])
        return (centre + ray * (-centre[2] / ray[2]))[:2] / video.world.gsd_m

    walls = wall_pixels(video, render.blocks.faces)
    ys, xs = np.nonzero(walls[10:-10, 10:-10])
    y, x = ys[len(ys) // 2] + 10, xs[len(xs) // 2] + 10  # a wall pixel away from the frame's edge
    behind = video._render(0, [_Standing(ground_under(x, y))])
    assert behind.labels[y, x] == L.BUILDING and behind.ids[y, x] == BLOCK_ID
    assert not ((behind.labels == L.MOVING_CAR) & (render.blocks.faces >= 0)).any()  # none of it over a block
    ys, xs = np.nonzero((render.labels[10:-10, 10:-10] != L.BUILDING) & (render.ids[10:-10, 10:-10] == 0))
    y, x = ys[len(ys) // 2] + 10, xs[len(xs) // 2] + 10  # open ground
    front = video._render(0, [_Standing(ground_under(x, y))])
    assert front.labels[y, x] == L.MOVING_CAR and front.ids[y, x] == 1


def test_a_car_that_a_wall_hides_in_the_next_frame_has_no_valid_flow(oblique) -> None:
    """Flying back (frame 1 to frame 0), a wall comes between the camera and ground it saw: a car standing there is
    drawn in frame 1 and its flow into frame 0 is invalid."""
    video, _ = oblique
    cur, nxt = video._render(1, []), video._render(0, [])
    ys, xs = np.nonzero(cur.ids[10:-10, 10:-10] == 0)
    ys, xs = ys + 10, xs + 10
    rays = video._rays[ys, xs] @ rotation_world_to_camera(cur.camera)
    points = camera_centre(cur.camera) + cur.blocks.depth[ys, xs][:, None] * rays
    target, depth = project_points(nxt.camera, video.k, points)
    col, row = np.round(target).astype(int).T
    inside = (col >= 0) & (col < 200) & (row >= 0) & (row < 120)
    hidden = np.flatnonzero(inside)[nxt.blocks.depth[row[inside], col[inside]] < 0.8 * depth[inside]]
    assert len(hidden), "a wall should hide some of this ground in frame 0"
    spot = hidden[len(hidden) // 2]
    car = _Standing(points[spot, :2] / video.world.gsd_m)
    cur, nxt = video._render(1, [car]), video._render(0, [car])
    y, x = ys[spot], xs[spot]
    flow, valid = video._exact_flow(cur, nxt)
    assert cur.labels[y, x] == L.MOVING_CAR and not valid[y, x]


def test_mirrored_blocks_stand_outside_the_world() -> None:
    """A view across the world's edge sees 3D blocks beyond it: the mirrored copies, with exact flow."""
    video = SyntheticVideo(walls_scenario(pitch=65.0), frames=2, seed=11)
    size = video.world.size_px * video.world.gsd_m
    edge_view = [CameraPose(x=size - 70.0 + 0.5 * step, y=size / 2, altitude=35.0, yaw=np.pi / 2, pitch=-np.radians(65),
                            roll=0.0) for step in range(2)]  # heading +X, towards the edge: the image top is +X
    video.poses = edge_view
    cur, nxt = video._render(0, []), video._render(1, [])
    outside = cur.blocks.points[:, 0] > size
    assert outside.mean() > 0.05
    flow, valid = video._exact_flow(cur, nxt)
    drawn = cur.blocks.faces >= 0
    assert valid[drawn][outside].mean() > 0.8


def test_the_town_is_the_flat_one_raised_with_longer_shadows_for_taller_blocks() -> None:
    def town(heights: tuple[float, float]) -> World:
        return build_world(WorldLayout(size_m=120.0, gsd_m=0.1, building_height_m=heights), np.random.default_rng(5))

    flat, low, tall = town((0.0, 0.0)), town((4.0, 5.0)), town((15.0, 18.0))
    assert flat.blocks == [] and len(tall.blocks) > 5
    assert np.array_equal(flat.labels, tall.labels) and np.array_equal(low.labels, tall.labels)
    ground = low.labels != L.BUILDING
    assert tall.rgb[ground].mean() < low.rgb[ground].mean() - 2.0
    assert all(4.0 <= b.eaves_m <= 5.0 for b in low.blocks) and any(b.ridge_m > 0 for b in low.blocks)


def test_walls_off_by_default_and_the_flat_video_draws_none() -> None:
    assert WorldLayout().building_height_m == (0.0, 0.0)
    video = SyntheticVideo(small_scenario(), frames=2, seed=7)
    assert video.world.blocks == [] and video._blocks is None
    render = video._render(0, [])
    assert render.blocks is None and not (render.ids == BLOCK_ID).any()


def test_building_heights_are_checked_by_name() -> None:
    with pytest.raises(ConfigError, match=r"building_height_m: expected \[0, 0\] \(flat\) or a min >= 2"):
        WorldLayout(building_height_m=(0.0, 10.0))
    with pytest.raises(ConfigError, match="building_height_m: expected 0.0 <= min <= max <= 100.0"):
        WorldLayout(building_height_m=(12.0, 6.0))
    with pytest.raises(ConfigError, match=r"world\.building_height_m: max 25 m must stay 10 m below camera\.altitude"):
        replace(SyntheticConfig(camera=CameraMotion(altitude_m=(30.0, 40.0))), world=WorldLayout(
            building_height_m=(5.0, 25.0)))


def test_sample_points_reads_what_the_grid_sampler_reads() -> None:
    """Scattered points with their own footprints read the same texels as the grid sampler with the same footprint."""
    rng = np.random.default_rng(0)
    mip = MipMap(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8))
    ys, xs = np.mgrid[0:32, 0:48].astype(np.float32)
    for stretch in ((1.0, 1.0), (3.0, 1.0), (6.0, 6.0)):  # magnified, anisotropic, minified
        jac = np.zeros((8, 12, 2, 2), np.float32)
        jac[..., 0, 0], jac[..., 1, 1] = stretch
        u, v = xs * stretch[0] + 7.3, ys * stretch[1] + 2.6
        grid = mip.sample(u, v, jac)
        points = mip.sample_points(u.ravel(), v.ravel(), np.broadcast_to(jac[0, 0], (u.size, 2, 2)))
        np.testing.assert_allclose(points, grid.reshape(-1, 3), atol=1e-2)
    # many points of mixed footprints (sorted by level inside) each read what it reads alone
    u, v = rng.uniform(0, 256, (2, 5000))
    jac = rng.uniform(0.5, 20.0, (5000, 1, 1)) * np.eye(2) + rng.uniform(-2.0, 2.0, (5000, 2, 2))
    many = mip.sample_points(u, v, jac)
    for i in rng.choice(5000, 8, replace=False):
        np.testing.assert_allclose(many[i], mip.sample_points(u[i : i + 1], v[i : i + 1], jac[i : i + 1])[0], atol=1e-2)
    assert mip.sample_points(np.zeros(0), np.zeros(0), np.zeros((0, 2, 2))).shape == (0, 3)

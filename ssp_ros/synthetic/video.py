"""Synthetic drone video: frames, labels and exact forward optical flow, deterministic per seed.

Each frame is the world seen through the camera homography, read with mip-mapped, anisotropic filtering
(``sampling.py``) so that far ground does not alias, with the movers drawn on top, the haze and the sky
(``atmosphere.py``) and the camera nuisances applied. Pixels whose ray never meets the ground are sky,
labelled clutter as UAVid does. In a world with 3D blocks (``world.building_height_m``) the blocks are drawn
last, with a per-pixel depth test against the ground, the movers lying on it and each other
(``block_render.py``), and hazed by their own distance.

The flow of frame k → k+1 is exact: ground pixels move with ``H_{k+1}·H_k⁻¹``, a mover's pixels with
``H_{k+1}·A_{k+1}·A_k⁻¹·H_k⁻¹`` (A = the mover's pose), sky pixels with the camera's rotation alone,
``K·R_{k+1}·R_kᵀ·K⁻¹``: the sky is drawn at infinity, so that is its true motion (our choice over marking
it invalid: a segmenter's sky must stay sky, and this measures it), and a block's pixels with their 3D point,
seen from the next camera (the blocks show parallax against the ground's homography, as real buildings do).
A pixel's flow is valid when it lands inside frame k+1 on the same surface (ground, sky, the same mover or
the same block face), so occlusions by movers and blocks and out-of-view pixels are excluded.

Water is ground: its waves and glints (``waves.py``) change its look from frame to frame, but its labels and
flow are the ground's. A flight's sky kind (``skies.py``) lights the ground and the movers with its colour.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import cv2
import numpy as np

from ssp_ros.errors import ConfigError
from ssp_ros.frames import SyntheticFrame
from ssp_ros.synthetic import labels as L
from ssp_ros.synthetic.atmosphere import AtmosphereModel
from ssp_ros.synthetic.block_render import NEAR_M, BlockLayer, BlockRenderer
from ssp_ros.synthetic.camera import (
    CameraPose,
    camera_rays,
    fly,
    footprint_radius_m,
    ground_depth,
    intrinsics,
    project_points,
    rotation_world_to_camera,
    sky_to_image,
    world_to_image,
)
from ssp_ros.synthetic.config import SyntheticConfig
from ssp_ros.synthetic.movers import Mover, spawn_movers
from ssp_ros.synthetic.nuisances import NuisanceModel
from ssp_ros.synthetic.palette import STANDARD, draw_palette
from ssp_ros.synthetic.sampling import MipMap, fold_reflect, footprint_points, homography_jacobian, world_positions
from ssp_ros.synthetic.skies import draw_sky
from ssp_ros.synthetic.textures import fill_polygon
from ssp_ros.synthetic.waves import WaterSurface
from ssp_ros.synthetic.world import World, build_world

SKY_ID = np.iinfo(np.uint16).max  # the sky in a frame's surface-id map (0 ground, i + 1 mover i)
BLOCK_ID = SKY_ID - 1  # any block face (BlockLayer.faces tells which)
MIN_GROUND_SINE = 1e-3  # a ray this close to the horizon (sine of its angle below it) counts as sky


@dataclass
class _Render:
    """A frame before nuisances: clean image, labels, mover-id map and mover poses."""

    image: np.ndarray
    labels: np.ndarray
    ids: np.ndarray  # H×W uint16: 0 ground, i + 1 for mover i, SKY_ID for the sky
    h: np.ndarray
    sky_h: np.ndarray  # world directions → image pixels (K·R)
    poses: dict[int, np.ndarray]  # mover id → pose (local metres → world px), every mover
    boxes: dict[int, tuple[slice, slice]]  # mover id → image bounding box, movers in view only
    camera: CameraPose
    blocks: BlockLayer | None  # None: the world has no 3D blocks


def apply_homography(h: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map N×2 points with a 3×3 homography."""
    p = points @ h[:, :2].T + h[:, 2]
    return p[:, :2] / p[:, 2:3]


def relative_homography(prev: SyntheticFrame, cur: SyntheticFrame) -> np.ndarray:
    """The true background homography mapping ``prev`` image pixels to ``cur`` image pixels."""
    h = cur.world_to_image @ np.linalg.inv(prev.world_to_image)
    return h / h[2, 2]


def smallest_world_m(cfg: SyntheticConfig) -> float:
    """The smallest ``world.size_m`` a flight of ``cfg`` may be flown over: the near part of the camera's view at
    its highest altitude and full tilt (``footprint_radius_m``), and 20 m."""
    return 2.0 * footprint_radius_m(cfg.camera, cfg.width, cfg.height) + 20.0


def snug_world(cfg: SyntheticConfig, margin_m: float = 20.0) -> SyntheticConfig:
    """``cfg`` over a world just wider than its camera's view (``smallest_world_m`` and ``margin_m`` more to fly
    in) where its own is larger, for short flights whose ground does not matter (checks, tests): the default
    scenario's 360 m world takes 8-13 s of one core to build."""
    side = min(cfg.world.size_m, float(np.ceil(smallest_world_m(cfg) + margin_m)))
    return replace(cfg, world=replace(cfg.world, size_m=side))


class SyntheticVideo:
    """An iterable synthetic drone video: ``for frame in SyntheticVideo(cfg, frames=300, seed=0)``.

    The world is built once; iterating again replays exactly the same frames.
    """

    def __init__(self, cfg: SyntheticConfig, frames: int, seed: int) -> None:
        if frames < 1:
            raise ConfigError(f"frames: must be >= 1, got {frames}")
        needed = smallest_world_m(cfg)
        if cfg.world.size_m < needed:
            raise ConfigError(f"world.size_m: {cfg.world.size_m} m is too small for the camera's view "
                              f"(altitude up to {cfg.camera.altitude_m[1]} m, hfov {cfg.camera.hfov_deg}°): "
                              f"needs >= {needed:.0f} m")
        self.cfg, self.frames, self.seed = cfg, frames, seed
        # One stream per concern, so that e.g. asking for more frames does not change the first ones; a stream
        # added later comes last, so the earlier ones stay as they were.
        seeds = np.random.SeedSequence(seed).spawn(9)
        world_seed, drop_seed, flight_seed, self._mover_seed, self._nuisance_seed, sky_seed = seeds[:6]
        palette_seed, sky_kind_seed, wave_seed = seeds[6:]
        self.sky = draw_sky(cfg.atmosphere, np.random.default_rng(sky_kind_seed))
        palette = draw_palette(cfg.colours, np.random.default_rng(palette_seed)) if cfg.colours.jitters else STANDARD
        self.world: World = build_world(cfg.world, np.random.default_rng(world_seed), palette, self.sky.shadow_depth)
        self._mip = MipMap(self.world.rgb)
        self._blocks = BlockRenderer(self.world, self._mip) if self.world.blocks else None
        self._water = None if self.world.water is None else WaterSurface(
            self.world.water.mask, self.world.water.sun, self.world.gsd_m, np.random.default_rng(wave_seed))
        self.atmosphere = AtmosphereModel(self.sky.atmosphere, np.random.default_rng(sky_seed), self.sky.cloud_rgb)
        drops = np.random.default_rng(drop_seed).random(frames - 1) < cfg.nuisances.drop_prob
        self.steps = np.concatenate([[0], np.cumsum(np.where(drops, 2, 1))]).astype(int)
        self.poses = fly(cfg.camera, cfg.world.size_m, cfg.width, cfg.height, cfg.fps, int(self.steps[-1]) + 1,
                         np.random.default_rng(flight_seed))
        self.k = intrinsics(cfg.width, cfg.height, cfg.camera.hfov_deg)
        ys, xs = np.mgrid[0 : cfg.height, 0 : cfg.width].astype(np.float64)
        self._grid = np.stack([xs, ys], axis=-1)
        self._rays = camera_rays(self.k, cfg.height, cfg.width)

    def __len__(self) -> int:
        return self.frames

    def __iter__(self) -> Iterator[SyntheticFrame]:
        cfg = self.cfg
        mover_rng = np.random.default_rng(self._mover_seed)
        area_km2 = (cfg.world.size_m / 1000.0) ** 2
        movers = spawn_movers(self.world, int(mover_rng.poisson(cfg.world.moving_cars_per_km2 * area_km2)),
                              int(mover_rng.poisson(cfg.world.people_per_km2 * area_km2)), mover_rng,
                              cfg.world.people_group_share)
        nuisances = NuisanceModel(cfg.nuisances, np.random.default_rng(self._nuisance_seed))
        dt = 1.0 / cfg.fps
        motion = np.zeros(2)
        step = 0
        current = self._render(0, movers)
        for index in range(self.frames):
            nxt, flow, valid = None, None, None
            if index + 1 < self.frames:
                while step < self.steps[index + 1]:
                    for mover in movers:
                        mover.step(dt, self.world)
                    step += 1
                nxt = self._render(index + 1, movers)
                flow, valid = self._exact_flow(current, nxt)
                centre = np.array([[(cfg.width - 1) / 2.0, (cfg.height - 1) / 2.0]])
                motion = (apply_homography(nxt.h @ np.linalg.inv(current.h), centre) - centre)[0]
            image = nuisances.apply(current.image, float(self.steps[index]) * dt, motion)
            yield SyntheticFrame(index=index, step=int(self.steps[index]), stamp=float(self.steps[index]) * dt,
                                 image=image, labels=current.labels, world_to_image=current.h, flow=flow, valid=valid,
                                 sky=current.ids == SKY_ID)
            current = nxt

    def _render(self, index: int, movers: list[Mover]) -> _Render:
        """Draw frame ``index``: the filtered ground, the movers in view with their class and id, haze, sky."""
        cfg, world = self.cfg, self.world
        pose = self.poses[self.steps[index]]
        h = world_to_image(pose, self.k, world.gsd_m)
        rays = self._rays @ rotation_world_to_camera(pose)  # world directions (Rᵀ·d for each pixel's d)
        lengths = np.linalg.norm(rays, axis=-1)
        ground = rays[..., 2] > MIN_GROUND_SINE * lengths
        to_world = np.linalg.inv(h)
        u, v = world_positions(to_world, self._grid)
        u, v = np.where(ground, u, 0.0), np.where(ground, v, 0.0)
        jac = homography_jacobian(to_world, footprint_points(self._grid))
        jac[~footprint_points(ground)] = np.eye(2)
        image = self._mip.sample(u, v, jac)
        if self._water is not None:
            self._water.draw(image, u, v, ground, rays, jac, float(self.steps[index]) / cfg.fps)
        n = world.size_px
        labels = cv2.remap(world.labels, fold_reflect(u, n), fold_reflect(v, n), cv2.INTER_NEAREST,
                           borderMode=cv2.BORDER_REFLECT)
        labels[~ground] = L.CLUTTER
        ids = np.where(ground, 0, SKY_ID).astype(np.uint16)
        poses, boxes = {}, {}
        px_per_m = 1.0 / world.gsd_m
        for i, mover in enumerate(movers):
            pose_i = poses[i + 1] = mover.pose(px_per_m)
            to_image = h @ pose_i
            corners = apply_homography(pose_i, mover.parts[0].polygon)
            if np.any(ground_depth(pose, corners, world.gsd_m) <= 1.0):
                continue  # behind the camera (an oblique view): not in the image
            outline = apply_homography(to_image, mover.parts[0].polygon)
            x0, y0 = np.floor(outline.min(axis=0)).astype(int) - 1
            x1, y1 = np.ceil(outline.max(axis=0)).astype(int) + 2
            if x1 < 0 or y1 < 0 or x0 >= cfg.width or y0 >= cfg.height:
                continue
            for j, part in enumerate(mover.parts):
                points = apply_homography(to_image, part.polygon)
                fill_polygon(image, points, tuple(float(c) for c in part.color))
                if j == 0:
                    fill_polygon(labels, points, mover.label)
                    fill_polygon(ids, points, i + 1)
            boxes[i + 1] = (slice(max(y0, 0), min(y1, cfg.height)), slice(max(x0, 0), min(x1, cfg.width)))
        if self.sky.light is not None:
            image *= self.sky.light
        distance = pose.altitude * lengths[ground] / rays[..., 2][ground]
        image[ground] = self.atmosphere.haze(image[ground], distance)
        image[~ground] = self.atmosphere.sky(rays[~ground])
        blocks = None if self._blocks is None else self._draw_blocks(pose, rays, ground, lengths, image, labels, ids)
        rgb = np.clip(image + 0.5, 0, 255).astype(np.uint8)
        return _Render(image=rgb, labels=labels, ids=ids, h=h, sky_h=sky_to_image(pose, self.k), poses=poses,
                       boxes=boxes, camera=pose, blocks=blocks)

    def _draw_blocks(self, pose: CameraPose, rays: np.ndarray, ground: np.ndarray, lengths: np.ndarray,
                     image: np.ndarray, labels: np.ndarray, ids: np.ndarray) -> BlockLayer:
        """Draw the 3D blocks over a drawn frame where they are nearer than the ground (and the movers lying on it),
        in the sky kind's light, hazed by their own distance; ``rays`` are the pixels' world directions, ``lengths``
        their norms."""
        depth = np.full(ground.shape, np.inf)
        depth[ground] = pose.altitude / rays[..., 2][ground]
        layer = self._blocks.draw(pose, self.k, self._grid, self._rays, depth)
        drawn = layer.faces >= 0
        rgb = layer.rgb if self.sky.light is None else layer.rgb * self.sky.light
        image[drawn] = self.atmosphere.haze(rgb, layer.depth[drawn] * lengths[drawn])
        labels[drawn], ids[drawn] = L.BUILDING, BLOCK_ID
        return layer

    def _exact_flow(self, cur: _Render, nxt: _Render) -> tuple[np.ndarray, np.ndarray]:
        """Forward flow cur → nxt (H×W×2 float32) and its validity (H×W bool)."""
        cfg = self.cfg
        inv_h = np.linalg.inv(cur.h)
        target = apply_homography(nxt.h @ inv_h, self._grid.reshape(-1, 2)).reshape(self._grid.shape)
        for mover_id, (ys, xs) in cur.boxes.items():
            sel = cur.ids[ys, xs] == mover_id
            if not sel.any():
                continue
            motion = nxt.h @ nxt.poses[mover_id] @ np.linalg.inv(cur.poses[mover_id]) @ inv_h
            box = target[ys, xs]
            box[sel] = apply_homography(motion, self._grid[ys, xs][sel])
        sky = cur.ids == SKY_ID
        if sky.any():
            target[sky] = apply_homography(nxt.sky_h @ np.linalg.inv(cur.sky_h), self._grid[sky])
        if cur.blocks is not None:  # a block's point stays where it is: seen from the next camera
            drawn = cur.blocks.faces >= 0
            pixels, depth = project_points(nxt.camera, self.k, cur.blocks.points)
            ahead = depth > NEAR_M
            target[drawn] = np.where(ahead[:, None], pixels, self._grid[drawn])
        flow = (target - self._grid).astype(np.float32)
        col, row = np.round(target[..., 0]).astype(np.int64), np.round(target[..., 1]).astype(np.int64)
        valid = (col >= 0) & (col < cfg.width) & (row >= 0) & (row < cfg.height)
        valid[valid] = nxt.ids[row[valid], col[valid]] == cur.ids[valid]
        if cur.blocks is not None:  # on the same face there, and in front of the camera
            valid[valid] = nxt.blocks.faces[row[valid], col[valid]] == cur.blocks.faces[valid]
            valid[drawn] &= ahead
        return flow, valid

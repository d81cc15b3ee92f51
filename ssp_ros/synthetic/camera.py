"""The synthetic drone's flight and its pinhole camera, as a homography of the flat world.

World frame: X along world-texture u, Y along v (metres), Z = X × Y pointing into the ground, so the
camera flies at Z = −altitude. A nadir camera with yaw ψ has axes x = (cos ψ, sin ψ, 0),
y = (−sin ψ, cos ψ, 0), z = (0, 0, 1); pitch and roll tilt it away from nadir. The flight heads towards
the image top, and a forward pitch (``CameraMotion.pitch_deg``) turns the view that way, up to the horizon:
a pitch of −θ puts the optical axis θ from nadir, ahead of the drone.
For ground points (X, Y, 0): p ~ K [r1 r2 t] (X, Y, 1)ᵀ with t = −R·C, so world pixels map to image
pixels by ``K [r1 r2 t] diag(gsd, gsd, 1)``. Pixel centres are at integer coordinates (OpenCV).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ssp_ros.synthetic.config import CameraMotion


@dataclass(frozen=True)
class CameraPose:
    """Where the camera is (metres) and how it is turned (radians) at one time step."""

    x: float
    y: float
    altitude: float
    yaw: float
    pitch: float
    roll: float


def intrinsics(width: int, height: int, hfov_deg: float) -> np.ndarray:
    """3×3 pinhole matrix with square pixels and the principal point at the image centre."""
    f = (width / 2.0) / np.tan(np.radians(hfov_deg) / 2.0)
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def rotation_world_to_camera(pose: CameraPose) -> np.ndarray:
    """3×3 rotation taking world vectors into the camera frame (x right, y down, z along the view)."""
    c, s = np.cos(pose.yaw), np.sin(pose.yaw)
    nadir = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])  # rows: camera axes in world coordinates
    cp, sp, cr, sr = np.cos(pose.pitch), np.sin(pose.pitch), np.cos(pose.roll), np.sin(pose.roll)
    pitch = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
    roll = np.array([[cr, 0.0, sr], [0.0, 1.0, 0.0], [-sr, 0.0, cr]])
    return pitch @ roll @ nadir


def world_to_image(pose: CameraPose, k: np.ndarray, gsd_m: float) -> np.ndarray:
    """3×3 homography from world-texture pixels to image pixels for this pose."""
    r = rotation_world_to_camera(pose)
    t = -r @ np.array([pose.x, pose.y, -pose.altitude])
    h = k @ np.column_stack([r[:, 0], r[:, 1], t]) @ np.diag([gsd_m, gsd_m, 1.0])
    return h / np.linalg.norm(h)  # not by h[2, 2]: that is the world origin's depth, 0 where it is on the horizon


def ground_depth(pose: CameraPose, points_px: np.ndarray, gsd_m: float) -> np.ndarray:
    """Depth along the optical axis (m) of N×2 ground points given in world pixels; ≤ 0 behind the camera."""
    r = rotation_world_to_camera(pose)
    offset = np.column_stack([points_px * gsd_m - [pose.x, pose.y], np.full(len(points_px), pose.altitude)])
    return offset @ r[2]


def project_points(pose: CameraPose, k: np.ndarray, points_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image pixels (N×2) and depths along the optical axis (N, m; ≤ 0 behind the camera) of N×3 world points
    (metres, Z down)."""
    cam = (points_m - [pose.x, pose.y, -pose.altitude]) @ rotation_world_to_camera(pose).T
    z = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):  # points in the camera's plane: inf, and z says why
        return cam[:, :2] / z[:, None] * np.diag(k)[:2] + k[:2, 2], z


def sky_to_image(pose: CameraPose, k: np.ndarray) -> np.ndarray:
    """3×3 homography from world directions to image pixels: how a point at infinity (the sky) is seen."""
    return k @ rotation_world_to_camera(pose)


def camera_rays(k: np.ndarray, height: int, width: int) -> np.ndarray:
    """H×W×3 float64 viewing directions of the pixel centres in the camera frame (z = 1)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    return np.stack([(xs - k[0, 2]) / k[0, 0], (ys - k[1, 2]) / k[1, 1], np.ones_like(xs)], axis=-1)


NEAR_RAY_DEG = 60.0  # the ground seen by rays steeper than this stays inside the world (see footprint_radius_m)


def footprint_radius_m(motion: CameraMotion, width: int, height: int) -> float:
    """Radius of a ground disc that always contains the near part of the camera's view.

    The near part is the ground seen by rays within NEAR_RAY_DEG of nadir, at the highest altitude and the
    full tilt. An oblique camera also sees ground out to the horizon; beyond the world's edge that is the
    world mirrored (``cv2.BORDER_REFLECT``: seamless), far, hazed and filtered, so it needs no world of its own.
    """
    half_diag = np.tan(np.radians(motion.hfov_deg) / 2.0) * np.hypot(1.0, height / width)
    view = np.arctan(half_diag) + np.radians(motion.pitch_deg[1] + motion.tilt_deg)
    return motion.altitude_m[1] * float(np.tan(min(view, np.radians(NEAR_RAY_DEG)))) + 2.0


class _Wave:
    """A smooth random signal in [−1, 1]: two sinusoids with random periods and phases."""

    def __init__(self, rng: np.random.Generator, period_s: tuple[float, float]) -> None:
        self.periods = rng.uniform(*period_s, size=2)
        self.phases = rng.uniform(0, 2 * np.pi, size=2)

    def __call__(self, t: float) -> float:
        return float(0.6 * np.sin(2 * np.pi * t / self.periods[0] + self.phases[0])
                     + 0.4 * np.sin(2 * np.pi * t / self.periods[1] + self.phases[1]))


def fly(motion: CameraMotion, world_size_m: float, width: int, height: int, fps: float, steps: int,
        rng: np.random.Generator) -> list[CameraPose]:
    """Camera poses for ``steps`` time steps: a smooth wandering flight that turns back before the edge.

    The flight path wanders with a bounded turn rate; when the view would come near the world's edge it
    steers towards the centre (up to 30°/s), so the camera never sees beyond the world.
    """
    dt = 1.0 / fps
    keep_out = footprint_radius_m(motion, width, height)
    turn_radius = motion.speed_mps * (1.0 + motion.speed_jitter) / np.radians(30.0)
    soft = keep_out + 2.0 * turn_radius + 5.0
    centre = np.array([world_size_m / 2.0, world_size_m / 2.0])
    inner = max(world_size_m / 2.0 - soft, 0.0)
    pos = centre + rng.uniform(-inner, inner, 2) * 0.8
    heading = rng.uniform(-np.pi, np.pi)
    speed_wave, turn_wave, yaw_wave = _Wave(rng, (4.0, 12.0)), _Wave(rng, (5.0, 20.0)), _Wave(rng, (6.0, 18.0))
    pitch_wave, roll_wave = _Wave(rng, (3.0, 9.0)), _Wave(rng, (3.0, 9.0))
    alt_phase, forward_phase = rng.uniform(0, 2 * np.pi, 2)
    alt_mid, alt_amp = np.mean(motion.altitude_m), (motion.altitude_m[1] - motion.altitude_m[0]) / 2.0
    forward_mid, forward_amp = np.radians(np.mean(motion.pitch_deg)), np.radians(np.ptp(motion.pitch_deg) / 2.0)
    poses = []
    for step in range(steps):
        t = step * dt
        altitude = alt_mid + alt_amp * np.sin(2 * np.pi * t / motion.altitude_period_s + alt_phase)
        forward = forward_mid + forward_amp * np.sin(2 * np.pi * t / motion.pitch_period_s + forward_phase)
        poses.append(CameraPose(
            x=float(pos[0]), y=float(pos[1]), altitude=float(altitude),
            yaw=float(heading + np.pi / 2 + np.radians(motion.yaw_offset_deg) * yaw_wave(t)),
            pitch=float(-forward + np.radians(motion.tilt_deg) * pitch_wave(t)),  # negative: towards image top
            roll=float(np.radians(motion.tilt_deg) * roll_wave(t)),
        ))
        rate = np.radians(motion.turn_rate_dps) * turn_wave(t)
        if np.any(np.abs(pos - centre) > world_size_m / 2.0 - soft):
            to_centre = np.arctan2(*(centre - pos)[::-1])
            error = (to_centre - heading + np.pi) % (2 * np.pi) - np.pi
            rate = float(np.clip(2.0 * error, -np.radians(30.0), np.radians(30.0)))
        heading += rate * dt
        speed = motion.speed_mps * (1.0 + motion.speed_jitter * speed_wave(t))
        pos = pos + speed * dt * np.array([np.cos(heading), np.sin(heading)])
        pos = np.clip(pos, keep_out, world_size_m - keep_out)
    return poses

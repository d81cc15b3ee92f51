"""The sky band: found over the true sky of oblique frames, never on nadir frames or a bright roof, and
registration keeps its keypoints on the ground."""

from dataclasses import replace

import numpy as np
import pytest
from test_oblique import oblique_scenario

from ssp_ros.config import RegistrationConfig
from ssp_ros.eval.registration_check import tilt_sweep
from ssp_ros.registration import FIRST_FRAME, FrameRegistrar
from ssp_ros.sky_band import SKY_MAX_DEPTH, ground_mask, sky_rows
from ssp_ros.synthetic import SyntheticVideo
from ssp_ros.synthetic.config import Atmosphere


@pytest.mark.parametrize("seed", [1, 2])
def test_the_band_covers_the_sky_of_an_oblique_frame_and_little_ground(seed: int) -> None:
    frames = list(SyntheticVideo(oblique_scenario(pitch=72.0, tilt=3.0), frames=6, seed=seed))
    for frame in frames:
        rows = sky_rows(frame.image, frame.image.shape[:2])
        assert rows is not None, f"frame {frame.index}: no sky found"
        covered = np.arange(frame.image.shape[0])[:, None] < rows[None, :]
        assert covered[frame.sky].mean() > 0.97
        ground_lost = covered[~frame.sky].mean()
        assert ground_lost < 0.25, f"frame {frame.index}: {ground_lost:.2f} of the ground masked"  # far, in haze


def test_no_band_without_a_horizon() -> None:
    for pitch in (0.0, 40.0):
        for frame in SyntheticVideo(oblique_scenario(pitch=pitch, tilt=3.0), frames=3, seed=3):
            assert not frame.sky.any()
            assert sky_rows(frame.image, frame.image.shape[:2]) is None


def test_a_bright_roof_at_the_top_is_not_sky_and_a_textured_sky_is() -> None:
    rng = np.random.default_rng(0)
    grass = np.clip(rng.normal([90, 120, 60], 25, (120, 200, 3)), 0, 255).astype(np.uint8)
    roof = grass.copy()
    roof[:40, 60:110] = (200, 210, 230)  # bright and bluish, but a quarter of the width
    assert sky_rows(roof, (120, 200)) is None
    sky = grass.copy()
    sky[:30] = np.clip(rng.normal([150, 185, 225], 30, (30, 200, 3)), 0, 255)  # textured (clouds), across the frame
    rows = sky_rows(sky, (60, 100))  # at half resolution
    assert rows is not None and len(rows) == 100 and np.all(rows >= 15) and np.all(rows <= SKY_MAX_DEPTH * 60)
    mask = ground_mask(sky, (60, 100))
    assert mask.shape == (60, 100) and mask.dtype == np.uint8 and not mask[:15].any() and mask[-30:].all()
    dusk = grass.copy()
    dusk[:30] = (230, 150, 90)  # bright but orange: not found, so every keypoint is used
    assert sky_rows(dusk, (120, 200)) is None


def test_registration_keeps_keypoints_on_the_ground_of_a_textured_sky() -> None:
    scenario = oblique_scenario(pitch=72.0, tilt=3.0, atmosphere=Atmosphere(visibility_m=1500.0, sky_texture=70.0))
    frames = list(SyntheticVideo(scenario, frames=2, seed=4))
    for ignore_sky, expect_in_sky in ((False, True), (True, False)):
        features = FrameRegistrar(RegistrationConfig(ignore_sky=ignore_sky)).features(frames[0].image)
        points = features.points / features.to_work[0, 0]
        cols, rows = np.clip(np.rint(points).astype(int).T, 0, [[199], [119]])
        in_sky = frames[0].sky[rows, cols].sum()
        assert (in_sky > 10) == expect_in_sky, (ignore_sky, in_sky)


def test_tilt_sweep_reports_each_pitch_and_variant() -> None:
    variants = {"sky ignored": RegistrationConfig(), "all keypoints": RegistrationConfig(ignore_sky=False)}
    scenario = oblique_scenario(pitch=0.0, tilt=3.0, atmosphere=Atmosphere(visibility_m=1500.0, sky_texture=70.0))
    rows = tilt_sweep(replace(scenario), [30.0, 72.0], [5], 3, variants)
    assert [(r["pitch_deg"], r["variant"]) for r in rows] == [(30.0, "sky ignored"), (30.0, "all keypoints"),
                                                               (72.0, "sky ignored"), (72.0, "all keypoints")]
    by = {(r["pitch_deg"], r["variant"]): r for r in rows}
    assert all(r["pairs"] == 3 and r["failed"] == 0 and r["median_px"] < 2.0 for r in rows)
    assert by[(30.0, "all keypoints")]["sky_keypoints_per_frame"] == 0  # no horizon at 30°
    assert by[(72.0, "all keypoints")]["sky_keypoints_per_frame"] > 10
    assert by[(72.0, "sky ignored")]["sky_keypoints_per_frame"] < 1


@pytest.mark.parametrize("size", [(16, 20000), (17, 5000)])
def test_frames_of_extreme_aspect_register_instead_of_raising(size: tuple[int, int]) -> None:
    """Scaled to the work width such a frame keeps a row or two: no room for a sky band, and no error (it used to
    raise 'argmin of an empty sequence' on every frame)."""
    frame = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    assert sky_rows(frame, (1, 320)) is None and sky_rows(frame, (2, 320)) is None
    registrar = FrameRegistrar(RegistrationConfig())
    registrar.register(frame)
    second = registrar.register(frame)
    assert second.reason != FIRST_FRAME  # registered, or failed with the registrar's own reason

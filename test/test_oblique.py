"""Oblique synthetic flights: the horizon where the geometry puts it, sky labelled clutter, exact flow for
ground and sky, haze, and far ground filtered instead of aliased."""

import cv2
import numpy as np
import pytest
from conftest import small_scenario

from ssp_ros.errors import ConfigError
from ssp_ros.resources import share_dir
from ssp_ros.schema import load_section
from ssp_ros.synthetic import SyntheticVideo
from ssp_ros.synthetic import labels as L
from ssp_ros.synthetic.config import Atmosphere, CameraMotion, Nuisances, SyntheticConfig, WorldLayout
from ssp_ros.synthetic.sampling import FOOTPRINT_STEP, MipMap, fold_reflect
from ssp_ros.synthetic.video import SKY_ID

CLEAN = Nuisances(exposure_drift=0.0, white_balance_drift=0.0, noise_sigma=0.0, motion_blur_prob=0.0, jpeg_prob=0.0,
                  drop_prob=0.0)


def oblique_scenario(pitch: float, tilt: float = 0.0, **overrides) -> SyntheticConfig:
    base = dict(camera=CameraMotion(altitude_m=(30.0, 40.0), hfov_deg=84.0, pitch_deg=(pitch, pitch), tilt_deg=tilt,
                                    yaw_offset_deg=0.0),
                world=WorldLayout(size_m=200.0, gsd_m=0.1), nuisances=CLEAN,
                atmosphere=Atmosphere(visibility_m=1500.0, cloud_cover=0.4))
    base.update(overrides)
    return small_scenario(**base)


def test_the_horizon_is_where_the_pitch_puts_it() -> None:
    cfg = oblique_scenario(pitch=70.0)
    video = SyntheticVideo(cfg, frames=3, seed=1)
    frames = list(video)
    f = video.k[1, 1]
    horizon_row = video.k[1, 2] - f * np.tan(np.radians(90.0 - 70.0))  # no roll: a level line
    sky_rows = np.flatnonzero((frames[0].labels == L.CLUTTER).all(axis=1))
    assert 15 < horizon_row < cfg.height / 2
    assert sky_rows.max() == pytest.approx(horizon_row, abs=1.5)
    assert not (frames[0].labels[int(horizon_row) + 3 :] == L.CLUTTER).all(axis=1).any()
    sky = video._render(0, []).ids == SKY_ID
    assert np.array_equal(sky.any(axis=1), np.arange(cfg.height) <= horizon_row)
    # the sky is brighter and bluer than the ground just below the haze line
    image = frames[0].image.astype(float)
    top, bottom = image[: int(horizon_row) - 2].reshape(-1, 3), image[-20:].reshape(-1, 3)
    assert top.mean() > bottom.mean() + 30 and top[:, 2].mean() > top[:, 0].mean()


def test_nadir_and_low_pitch_views_have_no_sky() -> None:
    for pitch in (0.0, 45.0):
        frame = next(iter(SyntheticVideo(oblique_scenario(pitch=pitch), frames=1, seed=2)))
        assert (frame.labels == L.CLUTTER).all(axis=1).sum() == 0, pitch


@pytest.mark.parametrize("pitch", [45.0, 70.0])
def test_exact_flow_carries_the_image_in_ground_and_sky(pitch: float) -> None:
    """Frame k sampled where the exact flow takes each pixel in frame k + 1 looks like frame k (clean frames)."""
    frames = list(SyntheticVideo(oblique_scenario(pitch=pitch, tilt=4.0), frames=4, seed=3))
    for a, b in zip(frames[:-1], frames[1:]):
        grid = np.mgrid[0 : a.image.shape[0], 0 : a.image.shape[1]][::-1].transpose(1, 2, 0).astype(np.float32)
        target = grid + a.flow
        back = cv2.remap(b.image, target[..., 0], target[..., 1], cv2.INTER_LINEAR).astype(float)
        err = np.abs(back - a.image).mean(axis=2)[a.valid]
        still = np.abs(b.image.astype(float) - a.image).mean(axis=2)[a.valid]
        assert a.valid.mean() > 0.9
        assert np.median(err) < 3.0 and np.median(err) < 0.3 * np.median(still), (np.median(err), np.median(still))
        sky = (a.labels == L.CLUTTER) & a.valid
        if pitch > 60:
            assert sky.mean() > 0.05
            assert np.median(np.abs(back - a.image).mean(axis=2)[sky]) < 2.0


def test_haze_takes_far_ground_towards_the_airlight() -> None:
    clear = next(iter(SyntheticVideo(oblique_scenario(pitch=62.0, atmosphere=Atmosphere(visibility_m=0.0)), 1, 4)))
    hazy = next(iter(SyntheticVideo(oblique_scenario(pitch=62.0, atmosphere=Atmosphere(visibility_m=600.0)), 1, 4)))
    airlight = np.array(Atmosphere().airlight_rgb)
    assert np.array_equal(clear.labels, hazy.labels)
    far, near = slice(10, 30), slice(-20, None)
    gap = {name: np.abs(frame.image[rows].astype(float) - airlight).mean()
           for name, frame in (("clear", clear), ("hazy", hazy)) for rows in (far,)}
    assert gap["hazy"] < 0.5 * gap["clear"]
    # the near ground keeps most of its contrast
    assert hazy.image[near].std() > 0.6 * clear.image[near].std()


def test_mip_map_averages_texture_finer_than_the_footprint() -> None:
    checker = (np.indices((256, 256)).sum(axis=0) % 2 * 255).astype(np.uint8)[..., None].repeat(3, axis=2)
    mip = MipMap(checker)
    ys, xs = np.mgrid[0:32, 0:32].astype(np.float32)
    for scale, expect_std in ((1.0, 100.0), (8.0, 2.0)):
        jac = np.zeros((32 // FOOTPRINT_STEP, 32 // FOOTPRINT_STEP, 2, 2), np.float32)  # the footprint's points
        jac[..., 0, 0] = jac[..., 1, 1] = scale
        out = mip.sample(xs * scale + 3.0, ys * scale + 5.0, jac)
        if scale == 1.0:
            np.testing.assert_allclose(out[..., 0], checker[5:37, 3:35, 0], atol=1e-3)
        else:
            assert abs(out.mean() - 127.5) < 3 and out.std() < expect_std
    # anisotropic: 4 texels along x per pixel (MAX_ANISOTROPY), 1 along y: stripes across x blur out,
    # stripes across y stay sharp (an isotropic mip-map would blur both)
    stripes_x = np.broadcast_to((np.arange(256) % 2 * 255).astype(np.uint8)[None, :, None], (256, 256, 3)).copy()
    stripes_y = stripes_x.transpose(1, 0, 2).copy()
    jac = np.zeros((32 // FOOTPRINT_STEP, 32 // FOOTPRINT_STEP, 2, 2), np.float32)
    jac[..., 0, 0], jac[..., 1, 1] = 4.0, 1.0
    u, v = xs * 4.0 + 3.0, ys + 5.0
    assert MipMap(stripes_x).sample(u, v, jac).std() < 25
    assert MipMap(stripes_y).sample(u, v, jac).std() > 60
    with pytest.raises(ValueError, match=r"jacobian: expected \(8, 8\)"):
        MipMap(stripes_x).sample(u, v, np.zeros((32, 32, 2, 2), np.float32))  # every pixel, not the footprint's points


def test_fold_reflect_matches_opencv_border_reflect() -> None:
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 255, (40, 50), dtype=np.uint8)
    padded = cv2.copyMakeBorder(texture, 200, 200, 200, 200, cv2.BORDER_REFLECT)
    x = rng.uniform(-190, 240, 500).astype(np.float32)
    y = rng.uniform(-190, 230, 500).astype(np.float32)
    ours = cv2.remap(texture, fold_reflect(x, 50)[None], fold_reflect(y, 40)[None], cv2.INTER_NEAREST,
                     borderMode=cv2.BORDER_REFLECT)[0]
    ref = padded[np.floor(y + 0.5).astype(int) + 200, np.floor(x + 0.5).astype(int) + 200]
    assert np.mean(ours == ref) > 0.99  # rounding at exact half-pixels may differ
    far = fold_reflect(np.array([1e6 + 3.2], np.float32), 50)
    assert -0.5 <= far[0] <= 49.5


def test_oblique_scenario_ships_and_is_checked() -> None:
    cfg = load_section(SyntheticConfig, share_dir() / "config" / "scenarios" / "oblique.yaml")
    assert cfg.camera.pitch_deg[1] > 90 - np.degrees(np.arctan(np.tan(np.radians(cfg.camera.hfov_deg / 2))
                                                                  * cfg.height / cfg.width))  # the horizon shows
    assert cfg.atmosphere.visibility_m > 0
    with pytest.raises(ConfigError, match="tilt_deg"):
        CameraMotion(pitch_deg=(60.0, 75.0), tilt_deg=10.0)
    with pytest.raises(ConfigError, match="pitch_deg"):
        CameraMotion(pitch_deg=(50.0, 40.0))
    with pytest.raises(ConfigError, match="airlight_rgb"):
        Atmosphere(airlight_rgb=(300.0, 0.0, 0.0))

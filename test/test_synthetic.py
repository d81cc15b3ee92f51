import numpy as np
import pytest
from conftest import small_scenario

from ssp_ros.errors import ConfigError
from ssp_ros.eval.flow import warp_nearest
from ssp_ros.frames import SyntheticFrame
from ssp_ros.synthetic import SyntheticVideo, relative_homography
from ssp_ros.synthetic import labels as L
from ssp_ros.synthetic.camera import CameraPose, intrinsics, world_to_image
from ssp_ros.synthetic.config import CameraMotion, Nuisances, SyntheticConfig, WorldLayout
from ssp_ros.synthetic.video import apply_homography

MOVERS = (L.MOVING_CAR, L.HUMAN)


def test_same_seed_same_frames_other_seed_other_frames(small_video) -> None:
    again = list(SyntheticVideo(small_scenario(), frames=5, seed=7))
    for a, b in zip(small_video[:4], again[:4]):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
        assert np.array_equal(a.flow, b.flow) and np.array_equal(a.valid, b.valid)
    other = next(iter(SyntheticVideo(small_scenario(), frames=1, seed=8)))
    assert not np.array_equal(other.image, small_video[0].image)


def test_frames_have_the_configured_size_and_types(small_video) -> None:
    frame = small_video[0]
    assert frame.image.shape == (120, 200, 3) and frame.image.dtype == np.uint8
    assert frame.labels.shape == (120, 200) and frame.labels.dtype == np.uint8
    assert frame.flow.shape == (120, 200, 2) and frame.flow.dtype == np.float32 and frame.valid.dtype == bool
    assert small_video[-1].flow is None and small_video[-1].valid is None
    assert set(np.unique(np.concatenate([f.labels for f in small_video]))) <= set(range(8))


def test_world_holds_the_ambiguous_classes(small_video) -> None:
    counts = np.bincount(np.concatenate([f.labels.ravel() for f in small_video]), minlength=8)
    for cls in (L.BUILDING, L.ROAD, L.TREE, L.LOW_VEGETATION):
        assert counts[cls] > 0.01 * counts.sum(), f"class {L.NAMES[cls]} nearly absent: {counts}"


def static_agreement(a: SyntheticFrame, b: SyntheticFrame) -> tuple[int, int]:
    """Static-background pixels of ``a`` whose label reappears where the exact flow takes them in ``b``."""
    warped, ok = warp_nearest(b.labels, a.flow, a.valid)
    static = ok & ~np.isin(a.labels, MOVERS)
    return int((warped[static] == a.labels[static]).sum()), int(static.sum())


@pytest.mark.slow
def test_exact_flow_carries_static_labels_to_the_next_frame() -> None:
    frames = list(SyntheticVideo(SyntheticConfig(), frames=12, seed=5))  # the default 368×640 scenario
    agree = total = 0
    for a, b in zip(frames[:-1], frames[1:]):
        same, count = static_agreement(a, b)
        assert same >= 0.985 * count, f"frame {a.index}: only {same / count:.4f} of static pixels agree"
        assert a.valid.mean() > 0.9
        agree, total = agree + same, total + count
    # only class boundaries may disagree, by nearest rounding
    assert agree >= 0.99 * total, f"{agree / total:.4f} of static pixels agree over the video"


def test_background_flow_is_the_camera_homography(small_video) -> None:
    a, b = small_video[10], small_video[11]
    h = relative_homography(a, b)
    ys, xs = np.mgrid[0:120, 0:200].astype(np.float64)
    grid = np.stack([xs, ys], -1).reshape(-1, 2)
    expected = (apply_homography(h, grid) - grid).reshape(120, 200, 2)
    background = ~np.isin(a.labels, MOVERS)
    np.testing.assert_allclose(a.flow[background], expected[background], atol=1e-3)


def test_movers_move_against_the_background() -> None:
    scenario = small_scenario(world=WorldLayout(size_m=160.0, gsd_m=0.1, moving_cars_per_km2=6000.0))
    frames = list(SyntheticVideo(scenario, frames=12, seed=3))
    residuals = []
    for a, b in zip(frames[:-1], frames[1:]):
        h = relative_homography(a, b)
        ys, xs = np.nonzero(a.labels == L.MOVING_CAR)
        if len(xs):
            pts = np.stack([xs, ys], -1).astype(np.float64)
            residuals.append(np.linalg.norm(a.flow[ys, xs] - (apply_homography(h, pts) - pts), axis=1).max())
    assert residuals and max(residuals) > 1.0, "cars should move by more than a pixel against the ground"


def test_dropped_frames_skip_a_time_step() -> None:
    scenario = small_scenario(nuisances=Nuisances(drop_prob=0.4))
    video = SyntheticVideo(scenario, frames=30, seed=1)
    gaps = np.diff(video.steps)
    assert set(gaps) == {1, 2}
    frames = list(video)
    assert frames[5].stamp == pytest.approx(video.steps[5] / scenario.fps)
    skipped = int(np.argmax(gaps == 2))  # the flow across a dropped step still carries labels exactly
    same, count = static_agreement(frames[skipped], frames[skipped + 1])
    assert same >= 0.98 * count


def test_nuisances_change_the_image_not_the_labels() -> None:
    clean = small_scenario(nuisances=Nuisances(exposure_drift=0, white_balance_drift=0, noise_sigma=0,
                                                motion_blur_prob=0, jpeg_prob=0, drop_prob=0))
    noisy = small_scenario(nuisances=Nuisances(noise_sigma=8.0, jpeg_prob=1.0, motion_blur_prob=1.0, drop_prob=0))
    a = list(SyntheticVideo(clean, frames=2, seed=4))
    b = list(SyntheticVideo(noisy, frames=2, seed=4))
    assert np.array_equal(a[0].labels, b[0].labels)
    diff = np.abs(a[0].image.astype(int) - b[0].image.astype(int)).mean()
    assert diff > 2.0


@pytest.mark.parametrize("size", [(736, 1280), (1080, 1920)])
def test_large_resolutions(size: tuple[int, int]) -> None:
    scenario = small_scenario(height=size[0], width=size[1])
    frames = list(SyntheticVideo(scenario, frames=2, seed=0))
    assert frames[0].image.shape == (*size, 3) and frames[0].flow.shape == (*size, 2)


def test_camera_homography_looks_straight_down() -> None:
    k = intrinsics(640, 368, 70.0)
    pose = CameraPose(x=50.0, y=40.0, altitude=60.0, yaw=0.0, pitch=0.0, roll=0.0)
    h = world_to_image(pose, k, gsd_m=0.1)
    centre = apply_homography(h, np.array([[500.0, 400.0]]))[0]  # the world point under the camera
    np.testing.assert_allclose(centre, [(640 - 1) / 2, (368 - 1) / 2], atol=1e-9)
    one_metre = apply_homography(h, np.array([[510.0, 400.0]]))[0] - centre
    np.testing.assert_allclose(one_metre, [k[0, 0] / 60.0, 0.0], atol=1e-9)


def test_bad_scenarios_are_refused() -> None:
    with pytest.raises(ConfigError, match="frames: must be >= 1"):
        SyntheticVideo(small_scenario(), frames=0, seed=0)
    with pytest.raises(ConfigError, match=r"world\.size_m: 160\.0 m is too small"):
        SyntheticVideo(small_scenario(camera=CameraMotion(altitude_m=(100.0, 120.0))), frames=1, seed=0)

"""Tests for ssp_ros.registration: known homographies recovered, quality gate, input checks, stride scaling.

Frames are perspective views of a procedural "world" image (smoothed noise at a few scales plus filled
shapes and lines), so the true homography between two frames is known exactly.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ssp_ros.config import RegistrationConfig, available_detectors
from ssp_ros.errors import FrameError, SspError
from ssp_ros.frames import check_frame
from ssp_ros.geometry import homography_problem, resize_homography, scale_homography, work_size
from ssp_ros.registration import FrameRegistrar, Registration, estimate_homography

FULL = (736, 1280)  # (H, W) of the paper's frames
SMALL = (368, 640)


def make_world(height: int, width: int, seed: int, busy: bool = True) -> np.ndarray:
    """A textured RGB world: smoothed noise at a few scales, then filled rectangles, circles and lines."""
    rng = np.random.default_rng(seed)
    img = np.full((height, width, 3), 128.0, np.float32)
    for cells, amp in ((6, 50.0), (24, 30.0), (96, 20.0), (384, 12.0)) if busy else ((6, 25.0), (24, 8.0)):
        noise = rng.normal(0.0, 1.0, (max(2, cells * height // width), cells, 3)).astype(np.float32)
        img += amp * cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(height * width // (8000 if busy else 60000)):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        kind = rng.integers(3) if busy else rng.integers(2)
        if kind == 0:
            cv2.rectangle(img, (x, y), (x + int(rng.integers(8, 90)), y + int(rng.integers(8, 90))), color, -1)
        elif kind == 1:
            cv2.circle(img, (x, y), int(rng.integers(4, 45)), color, -1)
        else:
            end = (x + int(rng.integers(-300, 300)), y + int(rng.integers(-300, 300)))
            cv2.line(img, (x, y), end, color, int(rng.integers(1, 5)))
    return img


@pytest.fixture(scope="module")
def world() -> np.ndarray:
    return make_world(1700, 2600, seed=1)


def frame_placement(world: np.ndarray, size: tuple[int, int], scale: float = 1.0) -> np.ndarray:
    """World -> frame homography showing the world centre, ``scale`` frame pixels per world pixel."""
    h, w = size
    wy, wx = world.shape[:2]
    return np.array([[scale, 0.0, (w - 1) / 2 - scale * (wx - 1) / 2],
                     [0.0, scale, (h - 1) / 2 - scale * (wy - 1) / 2], [0.0, 0.0, 1.0]])


def motion(size: tuple[int, int], angle_deg: float = 0.0, scale: float = 1.0, shift: tuple[float, float] = (0, 0),
           perspective: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """A frame-to-frame homography about the frame centre: rotation, zoom, tilt (perspective) and shift."""
    h, w = size
    centre = np.array([[1.0, 0.0, -(w - 1) / 2], [0.0, 1.0, -(h - 1) / 2], [0.0, 0.0, 1.0]])
    a = np.deg2rad(angle_deg)
    rot = np.array([[scale * np.cos(a), -scale * np.sin(a), shift[0]], [scale * np.sin(a), scale * np.cos(a), shift[1]],
                    [perspective[0], perspective[1], 1.0]])
    return np.linalg.inv(centre) @ rot @ centre


def render(world: np.ndarray, world_to_frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.warpPerspective(world, world_to_frame, (size[1], size[0]), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)


def corner_error(h_est: np.ndarray, h_true: np.ndarray, size: tuple[int, int]) -> float:
    """Largest distance (px) between where the two homographies put the frame corners."""
    h, w = size
    corners = np.array([[[0.0, 0.0], [w - 1.0, 0.0], [w - 1.0, h - 1.0], [0.0, h - 1.0]]])
    diff = cv2.perspectiveTransform(corners, h_est) - cv2.perspectiveTransform(corners, h_true)
    return float(np.max(np.linalg.norm(diff, axis=2)))


def pair(world: np.ndarray, size: tuple[int, int], true_h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two frames whose true prev -> cur homography is ``true_h``."""
    place = frame_placement(world, size, scale=size[1] / FULL[1])
    return render(world, place, size), render(world, true_h @ place, size)


# A drone-like step: 1.5 deg yaw, 3 % zoom, a 10-18 px shift and a mild tilt change.
STEP = motion(FULL, angle_deg=1.5, scale=1.03, shift=(18.0, -10.0), perspective=(1.5e-5, -1e-5))


def test_orb_recovers_known_homography(world):
    prev, cur = pair(world, FULL, STEP)
    reg = estimate_homography(prev, cur, RegistrationConfig())
    assert reg.ok, reg.reason
    assert reg.reason == ""
    assert reg.homography.shape == (3, 3) and reg.homography.dtype == np.float64
    assert reg.homography[2, 2] == pytest.approx(1.0)
    assert corner_error(reg.homography, STEP, FULL) < 0.5  # ~0.04 px measured (sub-pixel polish)
    assert reg.inliers >= 200 and 0.5 < reg.inlier_ratio <= 1.0 and reg.inliers <= reg.matches
    aligned = cv2.warpPerspective(prev, reg.homography, (FULL[1], FULL[0]))
    inner = (slice(100, -100), slice(100, -100))
    diff = np.abs(aligned[inner].astype(np.int16) - cur[inner].astype(np.int16))
    assert np.median(diff) <= 2  # the docstring's promise: warpPerspective(prev, H) aligns prev onto cur


@pytest.mark.parametrize("method", ["ransac", "usac"])
def test_orb_sequence_with_registrar(world, method):
    """A short flight: each frame registered to the one before (cached keypoints) within 1 px."""
    rng = np.random.default_rng(3)
    registrar = FrameRegistrar(RegistrationConfig(method=method))
    place = frame_placement(world, FULL)
    first = registrar.register(render(world, place, FULL))
    assert not first.ok and first.reason == "first frame" and first.homography is None
    for _ in range(4):
        step = motion(FULL, angle_deg=rng.normal(0, 1), scale=float(np.exp(rng.normal(0, 0.02))),
                      shift=tuple(rng.normal(0, 12, 2)), perspective=tuple(rng.normal(0, 1e-5, 2)))
        place = step @ place
        reg = registrar.register(render(world, place, FULL))
        assert reg.ok, reg.reason
        assert corner_error(reg.homography, step, FULL) < 1.0  # the spec: < 1 px at 736×1280


def test_orb_exhaustive_path(world):
    """Few keypoints -> exhaustive matching + cv2.findHomography instead of coarse-to-fine; still accurate."""
    prev, cur = pair(world, FULL, STEP)
    reg = estimate_homography(prev, cur, RegistrationConfig(max_features=300))
    assert reg.ok, reg.reason
    assert corner_error(reg.homography, STEP, FULL) < 0.5


def test_orb_strong_tilt_and_large_step(world):
    """A strong tilt change (the affine coarse model is off at the corners) and a large rotation + zoom step
    (translational Lucas-Kanade needs the warped previous image)."""
    for step in (motion(FULL, angle_deg=2.0, shift=(30.0, 10.0), perspective=(6e-5, -3e-5)),
                 motion(FULL, angle_deg=8.0, scale=1.12, shift=(-80.0, 40.0), perspective=(1e-5, 0.0))):
        prev, cur = pair(world, FULL, step)
        reg = estimate_homography(prev, cur, RegistrationConfig())
        assert reg.ok, reg.reason
        assert corner_error(reg.homography, step, FULL) < 0.5


def test_orb_low_texture():
    """Smooth fields with a few objects: fewer keypoints (lower FAST threshold), still registered."""
    calm = make_world(1700, 2600, seed=5, busy=False)
    prev, cur = pair(calm, FULL, STEP)
    reg = estimate_homography(prev, cur, RegistrationConfig())
    assert reg.ok, reg.reason
    assert corner_error(reg.homography, STEP, FULL) < 1.0


def test_sift_recovers_known_homography(world):
    step = motion(SMALL, angle_deg=1.5, scale=1.03, shift=(9.0, -5.0), perspective=(3e-5, -2e-5))
    prev, cur = pair(world, SMALL, step)
    reg = estimate_homography(prev, cur, RegistrationConfig(detector="sift", max_features=1000))
    assert reg.ok, reg.reason
    assert corner_error(reg.homography, step, SMALL) < 0.5


@pytest.mark.skipif("akaze" not in available_detectors(), reason=f"AKAZE is not in OpenCV {cv2.__version__} "
                    "(OpenCV 5 moved it to opencv-contrib); test_config.py tests that the config refuses it")
def test_akaze_recovers_known_homography(world):
    step = motion(SMALL, angle_deg=1.5, scale=1.03, shift=(9.0, -5.0))
    prev, cur = pair(world, SMALL, step)
    reg = estimate_homography(prev, cur, RegistrationConfig(detector="akaze"))
    assert reg.ok, reg.reason
    assert corner_error(reg.homography, step, SMALL) < 2.0


def test_work_width_rescaling(world):
    """The work-image homography is rescaled right: same answer (and the truth) at different work widths."""
    prev, cur = pair(world, FULL, STEP)
    results = {}
    for work_width in (320, 500, 640, 1280):  # 500: a non-integer downscale factor
        reg = estimate_homography(prev, cur, RegistrationConfig(work_width=work_width))
        assert reg.ok, (work_width, reg.reason)
        results[work_width] = reg.homography
        assert corner_error(reg.homography, STEP, FULL) < 0.5, work_width
    assert corner_error(results[320], results[640], FULL) < 0.5


def test_unknown_detector_is_a_clear_error():
    with pytest.raises(SspError, match="unknown detector 'brisk'"):
        FrameRegistrar(RegistrationConfig(detector="brisk"))


def test_work_size_and_resize_convention():
    assert work_size(736, 1280, 640) == (368, 640)
    assert work_size(1080, 1920, 640) == (360, 640)
    assert work_size(368, 640, 1280) == (368, 640)  # never upscaled
    # cv2.resize aligns pixel edges: -0.5 -> -0.5 and W - 0.5 -> w - 0.5
    m = resize_homography(640 / 1280, 368 / 736)
    edges = m @ np.array([[-0.5, 1279.5], [-0.5, 735.5], [1.0, 1.0]])
    np.testing.assert_allclose(edges[:2], [[-0.5, 639.5], [-0.5, 367.5]])
    # and matches what cv2.resize does to a bright pixel block
    img = np.zeros((64, 64), np.float32)
    img[20:24, 36:40] = 1.0  # block centre (37.5, 21.5)
    small = cv2.resize(img, (16, 16), interpolation=cv2.INTER_AREA)
    ys, xs = np.nonzero(small)
    centre = resize_homography(0.25, 0.25) @ np.array([37.5, 21.5, 1.0])
    assert (xs.mean(), ys.mean()) == pytest.approx((centre[0], centre[1]))


def test_smaller_frames_are_not_upscaled(world):
    registrar = FrameRegistrar(RegistrationConfig(work_width=1280))
    feats = registrar.features(np.ascontiguousarray(world[:368, :640]))
    assert feats.work_shape == (368, 640)
    np.testing.assert_allclose(feats.to_work, np.eye(3))


def test_blank_frame_fails_without_raising(world):
    blank = np.full((*SMALL, 3), 127, np.uint8)
    textured = np.ascontiguousarray(world[:SMALL[0], :SMALL[1]])
    for prev, cur in ((blank, blank), (textured, blank), (blank, textured)):
        reg = estimate_homography(prev, cur)
        assert not reg.ok and reg.homography is None
        assert "too few keypoints" in reg.reason and "(0 < 20)" in reg.reason


def test_unrelated_frames_fail(world):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (*FULL, 3), dtype=np.uint8)
    other = render(make_world(1700, 2600, seed=9), frame_placement(world, FULL), FULL)
    scene = render(world, frame_placement(world, FULL), FULL)
    for prev, cur in ((noise, scene), (scene, noise), (scene, other)):
        reg = estimate_homography(prev, cur)
        assert not reg.ok and reg.homography is None
        assert reg.reason


def test_resolution_change_and_reset(world):
    registrar = FrameRegistrar()
    small = render(world, frame_placement(world, SMALL, 0.5), SMALL)
    big_prev, big_cur = pair(world, FULL, STEP)
    assert registrar.register(small).reason == "first frame"
    reg = registrar.register(big_prev)
    assert not reg.ok and reg.homography is None
    assert reg.reason == "resolution changed 368x640 -> 736x1280"
    assert registrar.register(big_cur).ok  # the new resolution became the reference
    registrar.reset()
    reg = registrar.register(big_cur)
    assert not reg.ok and reg.reason == "first frame"
    assert estimate_homography(small, big_cur).reason == "resolution changed 368x640 -> 736x1280"


def test_flipped_views_are_accepted(world):
    """Non-contiguous inputs (e.g. a BGR -> RGB view) work; H of an identical frame is the identity."""
    frame = render(world, frame_placement(world, SMALL, 0.5), SMALL)[:, :, ::-1]
    reg = estimate_homography(frame, frame)
    assert reg.ok, reg.reason
    assert corner_error(reg.homography, np.eye(3), SMALL) < 0.1


@pytest.mark.parametrize(("frame", "message"), [
    (np.zeros((64, 64), np.uint8), "shape"),
    (np.zeros((64, 64, 1), np.uint8), "shape"),
    (np.zeros((64, 64, 4), np.uint8), "shape"),
    (np.zeros((64, 64, 3), np.float32), "dtype float32"),
    (np.zeros((0, 0, 3), np.uint8), "empty"),
    (np.zeros((0, 64, 3), np.uint8), "empty"),
])
def test_bad_inputs_raise(frame, message):
    with pytest.raises(ValueError, match=message):
        check_frame(frame)
    registrar = FrameRegistrar()
    with pytest.raises(ValueError, match=message):
        registrar.register(frame)
    good = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match=f"cur_rgb: .*{message}"):
        estimate_homography(good, frame)
    with pytest.raises(ValueError, match=f"prev_rgb: .*{message}"):
        estimate_homography(frame, good)


def test_non_array_is_a_frame_error():
    with pytest.raises(FrameError, match="numpy array, got list"):
        check_frame([[1, 2, 3]])


def test_bad_input_leaves_state_alone(world):
    registrar = FrameRegistrar()
    prev, cur = pair(world, FULL, STEP)
    registrar.register(prev)
    with pytest.raises(ValueError):
        registrar.register(cur.astype(np.float32))
    assert registrar.register(cur).ok


def test_disabled_registration_returns_the_identity_without_detecting(world, monkeypatch):
    registrar = FrameRegistrar(RegistrationConfig(enabled=False))
    monkeypatch.setattr(registrar, "features", lambda frame: pytest.fail("detected keypoints while disabled"))
    prev, cur = pair(world, FULL, STEP)
    for frame in (prev, cur):  # even the first frame: the propagation rules start over there, not registration
        reg = registrar.register(frame)
        assert reg.ok and np.array_equal(reg.homography, np.eye(3))
    with pytest.raises(ValueError):  # a malformed frame is still refused
        registrar.register(cur.astype(np.float32))


def test_tiny_frame_fails_gracefully():
    reg = estimate_homography(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8))
    assert not reg.ok and "too few keypoints" in reg.reason


def test_scale_homography_translation():
    h = np.array([[1.0, 0.0, 12.0], [0.0, 1.0, -8.0], [0.0, 0.0, 1.0]])
    expected = np.array([[1.0, 0.0, 3.0], [0.0, 1.0, -2.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(scale_homography(h, 4), expected, atol=1e-12)
    np.testing.assert_allclose(scale_homography(h, 1), h, atol=1e-12)


def test_scale_homography_scaling_uses_cell_centres():
    """Zoom x2 about pixel (0, 0): cell i (centre pixel 4i + 1.5) maps to pixel 8i + 3 = centre of cell 2i + 0.375."""
    h = np.diag([2.0, 2.0, 1.0])
    np.testing.assert_allclose(scale_homography(h, 4), [[2.0, 0.0, 0.375], [0.0, 2.0, 0.375], [0.0, 0.0, 1.0]])


def test_scale_homography_commutes_with_cell_centres():
    """For any H: mapping a cell's centre pixel with H == the centre pixel of the cell H_stride maps it to."""
    rng = np.random.default_rng(1)
    h = motion(FULL, angle_deg=3.0, scale=1.05, shift=(7.0, -3.0), perspective=(2e-5, 1e-5))
    for stride in (2, 4, 8):
        hs = scale_homography(h, stride)
        cells = rng.uniform(0, 150, (20, 1, 2))
        centre = cells * stride + (stride - 1) / 2
        np.testing.assert_allclose(cv2.perspectiveTransform(cells, hs) * stride + (stride - 1) / 2,
                                   cv2.perspectiveTransform(centre, h), atol=1e-9)
    with pytest.raises(ValueError):
        scale_homography(h, 0)


def test_homography_problem_gate():
    size = FULL
    assert homography_problem(np.eye(3), *size, 1.5) == ""
    assert homography_problem(STEP, *size, 1.5) == ""
    assert homography_problem(np.full((3, 3), np.nan), *size, 1.5) == "non-finite homography"
    assert "near-singular" in homography_problem(np.diag([1e-5, 1e-5, 1.0]), *size, 1.5)
    assert homography_problem(motion(size, scale=2.3), *size, 1.5) == "scale change 2.30 > 1.5"
    assert homography_problem(motion(size, scale=0.5), *size, 1.5) == "scale change 0.50 < 0.67 (1/1.5)"
    mirror = np.array([[-1.0, 0.0, size[1] - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert "not a convex quadrilateral" in homography_problem(mirror, *size, 1.5)
    assert "infinity" in homography_problem(motion(size, perspective=(-2e-3, 0.0)), *size, 1.5)
    assert "perspective" in homography_problem(motion(size, perspective=(5e-4, 0.0)), *size, 1.5)
    shear = np.array([[1.0, 0.6, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert "shear" in homography_problem(shear, *size, 1.5)
    assert homography_problem(-np.eye(3), *size, 1.5) == ""  # H and -H are the same map


def test_registration_failed_helper():
    reg = Registration.failed("too few inliers (3 < 20)", matches=40, inliers=3)
    assert not reg.ok and reg.homography is None and reg.inlier_ratio == pytest.approx(3 / 40)
    with pytest.raises(AttributeError):
        reg.ok = True  # frozen


def test_hamming_popcount_without_numpy_bitwise_count(monkeypatch):
    """The guided matcher's popcount also works on numpy < 2.0 (no np.bitwise_count), with equal results."""
    from ssp_ros import matching

    words = np.random.default_rng(0).integers(0, 2**63, (50, 4), dtype=np.uint64)
    expected = np.array([sum(bin(int(v)).count("1") for v in row) for row in words])
    np.testing.assert_array_equal(matching._popcount_rows(words.copy()), expected)
    monkeypatch.delattr(np, "bitwise_count", raising=False)
    np.testing.assert_array_equal(matching._popcount_rows(words.copy()), expected)


@pytest.mark.slow
def test_registrar_is_no_worse_than_the_opencv_pipeline_it_replaces():
    """Parity with the library: on 40 consecutive pairs of a synthetic flight (known ground-plane homography),
    our registrar's corner error is no worse than BFMatcher + ratio test + cv2.findHomography (USAC) on the
    same keypoints for at least 95 % of pairs, and it fails no more often. Speed: ``ssp bench``."""
    from ssp_ros.eval.registration_check import compare, summary, synthetic_pairs
    from ssp_ros.synthetic.config import SyntheticConfig

    report = summary(compare(synthetic_pairs(SyntheticConfig(), 40, seed=3000)))
    assert report["ours_no_worse_share"] >= 0.95, report
    assert report["ours"]["failed"] <= report["opencv"]["failed"], report
    assert report["ours"]["median_px"] < 0.5, report

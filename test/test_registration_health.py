from collections import Counter

import numpy as np
import pytest

from ssp_ros.eval.registration_health import RegistrationLog
from ssp_ros.registration import FIRST_FRAME, FrameRegistrar, Registration


def shift(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def test_the_log_summarises_registered_frames_and_counts_failures_by_reason() -> None:
    log = RegistrationLog()
    log.add(Registration.failed(FIRST_FRAME), (120, 200))
    log.add(Registration(shift(3.0, 4.0), 80, 100, 0.8, True), (120, 200))
    log.add(Registration(shift(0.0, 1.0), 40, 100, 0.4, True), (120, 200))
    log.add(Registration.failed("too few inliers", matches=30, inliers=5), (120, 200))
    log.add(None, (120, 200))  # propagation off: nothing to record
    summary = log.summary(Counter({"first frame": 1, "registration failed": 1}))
    assert summary["pairs"] == 3 and summary["registered"] == 2 and summary["failed"] == 1
    assert summary["failures"] == {"too few inliers": 1}
    assert summary["inlier_ratio"]["min"] == 0.4 and summary["inlier_ratio"]["max"] == 0.8
    assert summary["inliers"]["median"] == 60.0
    assert summary["corner_motion_px"]["max"] == pytest.approx(5.0) and summary["corner_motion_px"]["min"] == 1.0
    assert summary["resets"] == {"registration failed": 1}  # the stream's start is no reset


def test_a_clip_where_nothing_registered_has_no_distributions() -> None:
    log = RegistrationLog()
    log.add(Registration.failed(FIRST_FRAME), (10, 10))
    log.add(Registration.failed("too few matches (3 < 15)", matches=3), (10, 10))
    summary = log.summary(Counter({"first frame": 1, "registration failed": 1}))
    assert summary["registered"] == 0 and summary["inlier_ratio"] is None and summary["corner_motion_px"] is None
    assert summary["pairs"] == 1 and summary["failed"] == 1


def test_a_first_frame_is_no_pair_and_no_failure(small_video) -> None:
    """What the registrar says of frames 0 and 1 of a flight: one pair, registered; the first frame starts the
    stream, which is neither a failure nor a reset."""
    registrar = FrameRegistrar()
    log = RegistrationLog()
    for frame in small_video[:2]:
        log.add(registrar.register(frame.image), frame.image.shape[:2])
    summary = log.summary(Counter({"first frame": 1}))
    assert summary["pairs"] == 1 and summary["registered"] == 1 and summary["failed"] == 0
    assert summary["failures"] == {} and summary["resets"] == {}

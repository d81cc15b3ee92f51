import pytest

from ssp_ros import propagation as P
from ssp_ros.config import PropagationConfig
from ssp_ros.registration import Registration

OK = Registration(homography=None, inliers=100, matches=120, inlier_ratio=0.83, ok=True)
FAILED = Registration.failed("too few inliers (5 < 20)")
SIZE = (368, 640)


def running(cfg: PropagationConfig | None = None) -> P.Propagator:
    """A propagator that has processed one frame at t = 0."""
    prop = P.Propagator(cfg or PropagationConfig())
    assert prop.decide(0.0, SIZE, None) == P.Decision(False, P.FIRST_FRAME)
    prop.commit("state-0", 0.0, SIZE)
    return prop


def test_fuses_consecutive_frames_after_the_first() -> None:
    prop = running()
    assert prop.decide(0.033, SIZE, OK).fuse
    assert prop.resets == {P.FIRST_FRAME: 1}


@pytest.mark.parametrize("stamp, size, registration, reason", [
    (0.033, (736, 1280), OK, P.RESOLUTION_CHANGED),
    (0.9, SIZE, OK, P.TIME_GAP),
    (-0.1, SIZE, OK, P.BACKWARDS_TIME),
    (0.0, SIZE, OK, P.BACKWARDS_TIME),  # a duplicated stamp
    (0.033, SIZE, FAILED, P.REGISTRATION_FAILED),
    (0.033, SIZE, None, P.REGISTRATION_FAILED),
])
def test_reset_rules(stamp: float, size: tuple[int, int], registration: Registration | None, reason: str) -> None:
    prop = running()
    decision = prop.decide(stamp, size, registration)
    assert not decision.fuse and decision.reason == reason
    assert prop.resets[reason] == 1


def test_reset_details_name_the_numbers() -> None:
    assert running().decide(0.033, (736, 1280), OK).detail == "368x640 -> 736x1280"
    assert running().decide(0.9, SIZE, OK).detail == "0.900 s > 0.5 s"
    assert running().decide(0.033, SIZE, FAILED).detail == "too few inliers (5 < 20)"


def test_time_gap_threshold_comes_from_config() -> None:
    assert running(PropagationConfig(max_time_gap_s=2.0)).decide(0.9, SIZE, OK).fuse


def test_requested_reset_applies_once() -> None:
    prop = running()
    prop.request_reset()
    assert prop.decide(0.033, SIZE, OK).reason == P.REQUESTED
    prop.commit("state-1", 0.033, SIZE)
    assert prop.decide(0.066, SIZE, OK).fuse


def test_disabled_never_fuses() -> None:
    prop = P.Propagator(PropagationConfig(enabled=False))
    for stamp in (0.0, 0.033):
        assert prop.decide(stamp, SIZE, OK).reason == P.DISABLED
        prop.commit("state", stamp, SIZE)


def test_backwards_stamps_are_dropped_when_configured() -> None:
    prop = running(PropagationConfig(reset_on_backwards_time=False))
    assert prop.admit(0.033) is None
    assert "not newer" in prop.admit(0.0)
    assert prop.dropped == {P.BACKWARDS_TIME: 1} and prop.state == "state-0"
    assert running().admit(-1.0) is None, "by default an old stamp resets instead of being dropped"

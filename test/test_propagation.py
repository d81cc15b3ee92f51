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


def test_a_reset_request_clears_the_not_newer_gate() -> None:
    """~/reset after a frame stamped far in the future: the next frame is admitted and starts over."""
    prop = running(PropagationConfig(reset_on_backwards_time=False))
    prop.commit("future", 2.0**31 - 1, SIZE)
    assert prop.admit(0.033) is not None
    prop.request_reset()
    assert prop.admit(0.066) is None
    assert prop.decide(0.066, SIZE, OK).reason == P.REQUESTED
    prop.commit("state-1", 0.066, SIZE)
    assert prop.admit(0.1) is None and prop.decide(0.1, SIZE, OK).fuse


def test_one_bad_stamp_never_blocks_the_stream() -> None:
    """Whatever the settings, a run of NOT_NEWER_LIMIT refusals ends the gate: the last stamp was the outlier."""
    prop = running(PropagationConfig(reset_on_backwards_time=False))
    prop.commit("future", 2.0**31 - 1, SIZE)
    stamps = [0.033 * k for k in range(1, P.NOT_NEWER_LIMIT + 3)]
    refused = [prop.admit(t) is not None for t in stamps[:P.NOT_NEWER_LIMIT + 1]]
    assert refused == [True] * P.NOT_NEWER_LIMIT + [False]
    assert prop.dropped[P.BACKWARDS_TIME] == P.NOT_NEWER_LIMIT
    assert prop.decide(stamps[P.NOT_NEWER_LIMIT], SIZE, OK).reason == P.BACKWARDS_TIME
    prop.commit("state", stamps[P.NOT_NEWER_LIMIT], SIZE)
    assert prop.admit(stamps[-1]) is None and prop.decide(stamps[-1], SIZE, OK).fuse


def test_a_late_frame_among_newer_ones_is_still_dropped() -> None:
    """The gate's purpose stands: one late frame between newer ones is refused, and the count starts again."""
    prop = running(PropagationConfig(reset_on_backwards_time=False))
    for k in range(1, 3 * P.NOT_NEWER_LIMIT):
        assert prop.admit(0.033 * k) is None
        prop.commit(f"state-{k}", 0.033 * k, SIZE)
        assert prop.admit(0.033 * k - 0.01) is not None, "a late frame"
    assert prop.dropped[P.BACKWARDS_TIME] == 3 * P.NOT_NEWER_LIMIT - 1

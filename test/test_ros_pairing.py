"""Stamp pairing of camera images and another segmenter's masks (ssp_ros/ros/pairing.py), without ROS."""

from __future__ import annotations

import random

import pytest

from ssp_ros.ros.pairing import (
    CLEARED,
    DUPLICATE,
    IMAGE,
    LATE,
    MASK,
    NO_PARTNER,
    OVERFLOW,
    PARTNER_DROPPED,
    SUPERSEDED,
    Pair,
    StampPairer,
)

S = 1_000_000_000  # ns per second


def reasons(drops) -> list[tuple[str, int, str]]:
    return [(d.side, d.stamp_ns, d.reason) for d in drops]


def test_an_image_and_its_mask_pair_in_either_order() -> None:
    pairer = StampPairer(wait_s=0.5, hold=4)
    assert pairer.add(IMAGE, 10 * S, "i10", 0.0) == (None, [])
    assert pairer.add(MASK, 10 * S, "m10", 0.1) == (Pair(10 * S, "i10", "m10"), [])
    assert pairer.add(MASK, 11 * S, "m11", 0.2) == (None, [])  # out of order: the mask first
    assert pairer.add(IMAGE, 11 * S, "i11", 0.3) == (Pair(11 * S, "i11", "m11"), [])
    assert pairer.paired == 2 and pairer.received == {IMAGE: 2, MASK: 2}
    assert pairer.waiting(IMAGE) == pairer.waiting(MASK) == 0 and not +pairer.dropped[IMAGE]


def test_stamps_are_matched_exactly_to_the_nanosecond() -> None:
    """One nanosecond apart is another frame: never paired (as float seconds, 1e9 + 1 ns and 1e9 ns are close)."""
    pairer = StampPairer(wait_s=0.5, hold=4)
    stamp = 1_700_000_000 * S + 123_456_789
    assert pairer.add(IMAGE, stamp, "image", 0.0) == (None, [])
    assert pairer.add(MASK, stamp + 1, "mask", 0.0) == (None, [])
    assert pairer.waiting(IMAGE) == pairer.waiting(MASK) == 1 and pairer.paired == 0
    pair, _ = pairer.add(MASK, stamp, "mask of the image", 0.0)
    assert pair == Pair(stamp, "image", "mask of the image")


def test_a_mask_that_never_comes_lets_its_image_go_after_the_wait() -> None:
    pairer = StampPairer(wait_s=0.5, hold=4)
    pairer.add(IMAGE, 1 * S, "i1", 0.0)
    assert pairer.expire(0.5) == [], "waited exactly the wait: still waiting"
    (drop,) = pairer.expire(0.51)
    assert (drop.side, drop.stamp_ns, drop.reason) == (IMAGE, 1 * S, NO_PARTNER) and "500 ms" in drop.detail
    assert pairer.waiting(IMAGE) == 0 and pairer.dropped[IMAGE] == {NO_PARTNER: 1}


def test_a_mask_after_the_wait_does_not_pair_and_names_why() -> None:
    """The bounded wait holds at pairing time, not only when ``expire`` runs: a mask arriving after its image's
    wait finds the image gone, and is dropped as a mask whose image was already dropped."""
    pairer = StampPairer(wait_s=0.5, hold=4)
    pairer.add(IMAGE, 1 * S, "i1", 0.0)
    pair, drops = pairer.add(MASK, 1 * S, "m1", 0.7)
    assert pair is None
    assert reasons(drops) == [(IMAGE, 1 * S, NO_PARTNER), (MASK, 1 * S, PARTNER_DROPPED)]
    assert NO_PARTNER in drops[1].detail


def test_a_newer_pair_drops_what_waits_with_older_stamps_on_both_sides() -> None:
    """The newest-frame policy: once the pair of stamp 3 forms, image 1, image 2 and mask 2.5 can only be older
    than a frame being processed; they go, and the late mask of image 1 goes as its partner's follower."""
    pairer = StampPairer(wait_s=10.0, hold=8)
    pairer.add(IMAGE, 1 * S, "i1", 0.0)
    pairer.add(IMAGE, 2 * S, "i2", 0.0)
    pairer.add(MASK, 5 * S // 2, "m2.5", 0.0)
    pairer.add(IMAGE, 3 * S, "i3", 0.0)
    pairer.add(IMAGE, 4 * S, "i4", 0.0)
    pair, drops = pairer.add(MASK, 3 * S, "m3", 0.1)
    assert pair == Pair(3 * S, "i3", "m3")
    assert reasons(drops) == [(IMAGE, 1 * S, SUPERSEDED), (IMAGE, 2 * S, SUPERSEDED), (MASK, 5 * S // 2, SUPERSEDED)]
    assert pairer.waiting(IMAGE) == 1, "image 4 is newer than the pair: it still waits for its mask"
    pair, drops = pairer.add(MASK, 1 * S, "m1", 0.2)
    assert pair is None and reasons(drops) == [(MASK, 1 * S, PARTNER_DROPPED)]
    assert pairer.add(MASK, 4 * S, "m4", 0.3)[0] == Pair(4 * S, "i4", "m4")


def test_a_late_pair_is_dropped_but_a_clock_that_went_back_starts_over() -> None:
    """Both halves of stamp 9.9 s arrive after the pair of 10 s: within the wait, so late, and dropped (nothing
    older than a processed frame is paired). Stamps 6 s back are a camera whose clock went back: they pair."""
    pairer = StampPairer(wait_s=0.5, hold=4)
    pairer.add(IMAGE, 10 * S, "i10", 0.0)
    pairer.add(MASK, 10 * S, "m10", 0.0)
    for side in (IMAGE, MASK):
        pair, drops = pairer.add(side, 99 * S // 10, "late", 0.1)
        assert pair is None and reasons(drops) == [(side, 99 * S // 10, PARTNER_DROPPED if side == MASK else LATE)]
    pairer.add(IMAGE, 4 * S, "restart", 0.2)
    assert pairer.add(MASK, 4 * S, "restart mask", 0.3)[0] == Pair(4 * S, "restart", "restart mask")


def test_a_bag_played_again_pairs_its_stamps_again() -> None:
    """``ros2 bag play --loop``: the same stamps come back. Once a stamp is older than the last pair by more than
    the wait the stream starts over, so they pair again instead of being refused as duplicates."""
    pairer = StampPairer(wait_s=0.5, hold=32)
    for _ in range(2):
        for i in range(50):
            stamp = 10 * S + i * S // 30
            pairer.add(IMAGE, stamp, f"i{i}", 0.0)
            assert pairer.add(MASK, stamp, f"m{i}", 0.0)[0] == Pair(stamp, f"i{i}", f"m{i}")
    assert pairer.paired == 100 and not pairer.dropped[IMAGE] and not pairer.dropped[MASK]
    pairer.clear()  # a deactivation forgets the stamps too
    pairer.add(IMAGE, 10 * S, "again", 0.0)
    assert pairer.add(MASK, 10 * S, "mask", 0.0)[0] == Pair(10 * S, "again", "mask")


def test_duplicate_stamps_are_dropped_and_the_first_stands() -> None:
    pairer = StampPairer(wait_s=1.0, hold=4)
    pairer.add(IMAGE, 1 * S, "first", 0.0)
    pair, drops = pairer.add(IMAGE, 1 * S, "second", 0.1)
    assert pair is None and reasons(drops) == [(IMAGE, 1 * S, DUPLICATE)]
    pair, _ = pairer.add(MASK, 1 * S, "mask", 0.2)
    assert pair == Pair(1 * S, "first", "mask"), "a duplicate does not make its stamp's partner a late one"
    for side in (IMAGE, MASK):  # a stamp already paired: a repeat of either side is a duplicate
        pair, drops = pairer.add(side, 1 * S, "again", 0.3)
        assert pair is None and reasons(drops) == [(side, 1 * S, DUPLICATE)]
    assert pairer.paired == 1 and pairer.dropped == {IMAGE: {DUPLICATE: 2}, MASK: {DUPLICATE: 1}}


def test_at_most_hold_items_wait_per_side_and_the_oldest_stamp_goes() -> None:
    pairer = StampPairer(wait_s=60.0, hold=2)
    pairer.add(MASK, 5 * S, "m5", 0.0)
    pairer.add(MASK, 3 * S, "m3", 0.0)
    pair, drops = pairer.add(MASK, 4 * S, "m4", 0.0)
    assert pair is None and reasons(drops) == [(MASK, 3 * S, OVERFLOW)]
    pair, drops = pairer.add(IMAGE, 3 * S, "i3", 0.0)
    assert pair is None and reasons(drops) == [(IMAGE, 3 * S, PARTNER_DROPPED)]
    assert pairer.add(IMAGE, 5 * S, "i5", 0.0)[0] == Pair(5 * S, "i5", "m5")


def test_clear_drops_everything_waiting() -> None:
    pairer = StampPairer(wait_s=60.0, hold=4)
    pairer.add(IMAGE, 1 * S, "i1", 0.0)
    pairer.add(MASK, 2 * S, "m2", 0.0)
    assert reasons(pairer.clear()) == [(IMAGE, 1 * S, CLEARED), (MASK, 2 * S, CLEARED)]
    assert pairer.waiting(IMAGE) == pairer.waiting(MASK) == 0


def test_the_bounds_must_make_sense() -> None:
    with pytest.raises(ValueError, match="wait_s must be > 0 and hold >= 1"):
        StampPairer(wait_s=0.0, hold=1)
    with pytest.raises(ValueError, match="side must be one of"):
        StampPairer(wait_s=1.0, hold=1).add("depth", 0, None, 0.0)


def test_a_shuffled_stream_never_pairs_across_stamps_and_accounts_for_every_item() -> None:
    """Random arrival order, losses on both sides and repeats: every pair holds the image and mask of its own
    stamp, pairs come out in increasing stamp order, and each item is paired, dropped or still waiting."""
    rng = random.Random(5)
    pairer = StampPairer(wait_s=0.3, hold=3)
    events = []
    for i in range(400):
        stamp = 1000 * S + i * 33_333_333
        t = i / 30
        for side in (IMAGE, MASK):
            if rng.random() < 0.9:  # 10 % lost on the way
                events.append((t + rng.uniform(0, 0.25), side, stamp))  # up to 7 frames late, within the wait
            if rng.random() < 0.03:
                events.append((t + rng.uniform(0, 0.25), side, stamp))  # a repeat
    events.sort()
    pairs, dropped = [], 0
    for now, side, stamp in events:
        pair, drops = pairer.add(side, stamp, (side, stamp), now)
        dropped += len(drops)
        if pair is not None:
            assert pair.image == (IMAGE, pair.stamp_ns) and pair.mask == (MASK, pair.stamp_ns)
            pairs.append(pair.stamp_ns)
    assert pairs == sorted(pairs) and len(set(pairs)) == len(pairs) and len(pairs) > 150
    waiting = pairer.waiting(IMAGE) + pairer.waiting(MASK)
    assert len(events) == 2 * len(pairs) + dropped + waiting
    assert sum(pairer.received.values()) == len(events)
    assert sum(sum(c.values()) for c in pairer.dropped.values()) == dropped

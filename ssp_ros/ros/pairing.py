"""Camera images and another segmenter's masks paired by header stamp, without ROS: the stabiliser node's input.

``StampPairer`` takes items of two sides (``IMAGE``, ``MASK``) with their stamps in integer nanoseconds (sec and
nanosec of the header, never a float) and pairs an image with the mask of exactly its stamp; nothing is ever paired
with another stamp's partner. It keeps the node's newest-frame policy: once a pair forms, every item still waiting
with an older stamp is dropped (its frame is older than one about to be processed), so old pairs are dropped,
never queued; an item arriving after a newer pair formed is dropped (``LATE``) unless its stamp is older than that
pair's by more than the wait: the camera's clock went back (a bag played again, a restart), and the stream starts
over from it (the stabiliser resets on a backwards stamp) instead of stalling until the stamps catch up. The wait
is bounded twice: an item waits at most ``wait_s`` seconds (of the caller's monotonic clock, from its arrival) and
at most ``hold`` items per side wait at once (the oldest stamp goes first).

Every item dropped comes back as a ``Drop`` with its reason and is counted per side and reason. A stamp seen
recently is remembered, so a late partner is dropped with the reason its partner went (``PARTNER_DROPPED``), and a
second item of a stamp already paired or waiting as a ``DUPLICATE``. Not thread-safe: the caller holds a lock.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any

IMAGE, MASK = "image", "mask"
SIDES = (IMAGE, MASK)
NO_PARTNER = "no partner within the wait"  # waited wait_s without its partner
SUPERSEDED = "superseded by a newer pair"  # waiting when a pair of a newer stamp formed
PARTNER_DROPPED = "partner already dropped"  # arrived after its partner had been dropped
LATE = "older than the last pair"  # stamped before the newest pair, by less than the wait: its frame is past
DUPLICATE = "duplicate stamp"  # a second item of a stamp already waiting or paired on this side
OVERFLOW = "too many waiting"  # more than ``hold`` items of one side waiting: the oldest stamp goes
CLEARED = "cleared"  # waiting when the pairer was cleared (the node deactivated, the class list changed)
UNPAIRED = "unpaired: "  # the prefix of an image's reason in the node's input status (the pairing dropped it)
MEMORY = 256  # recent stamps remembered per side (paired, dropped) to name why a late item goes


@dataclass(frozen=True)
class Pair:
    """An image and the mask of exactly its stamp; ``classes_version``: the class list in use when it formed (the
    stabiliser node's, which changes with a LabelInfo; the pairer leaves it 0)."""

    stamp_ns: int
    image: Any
    mask: Any
    classes_version: int = 0


@dataclass(frozen=True)
class Drop:
    """An item the pairer let go without a partner, and why (``reason`` is the counter key)."""

    side: str
    stamp_ns: int
    reason: str
    detail: str


@dataclass
class _Waiting:
    item: Any
    arrived: float


def _other(side: str) -> str:
    return MASK if side == IMAGE else IMAGE


class _Recent:
    """The last ``MEMORY`` stamps of one kind, with a note each (why it was dropped)."""

    def __init__(self) -> None:
        self._notes: OrderedDict[int, str] = OrderedDict()

    def add(self, stamp: int, note: str = "") -> None:
        self._notes[stamp] = note
        self._notes.move_to_end(stamp)
        while len(self._notes) > MEMORY:
            self._notes.popitem(last=False)

    def get(self, stamp: int) -> str | None:
        return self._notes.get(stamp)


class StampPairer:
    """Exact-stamp pairing of images and masks with a bounded wait; counters per side in ``received``, ``paired``
    and ``dropped`` (side → reason → count)."""

    def __init__(self, wait_s: float, hold: int) -> None:
        if wait_s <= 0 or hold < 1:
            raise ValueError(f"wait_s must be > 0 and hold >= 1, got {wait_s} and {hold}")
        self.wait_s, self.hold = wait_s, hold
        self._waiting: dict[str, dict[int, _Waiting]] = {side: {} for side in SIDES}
        self._dropped: dict[str, _Recent] = {side: _Recent() for side in SIDES}
        self._paired = _Recent()
        self._last: int | None = None  # the stamp of the newest pair
        self.received: Counter[str] = Counter()
        self.paired = 0
        self.dropped: dict[str, Counter[str]] = {side: Counter() for side in SIDES}

    def waiting(self, side: str) -> int:
        """How many items of ``side`` wait for their partner now."""
        return len(self._waiting[side])

    def add(self, side: str, stamp_ns: int, item: Any, now: float) -> tuple[Pair | None, list[Drop]]:
        """Offer an item of ``side`` stamped ``stamp_ns``, arrived at ``now`` (seconds, monotonic): the pair it
        completes (None if it waits or is dropped) and every item dropped on the way, this one included."""
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {side!r}")
        self.received[side] += 1
        drops = self.expire(now)
        other = _other(side)
        if self._last is not None and stamp_ns <= self._last - round(self.wait_s * 1e9):
            self._forget()  # the clock went back (a bag played again): its stamps may repeat the ones remembered
        if self._paired.get(stamp_ns) is not None or stamp_ns in self._waiting[side]:
            drops.append(self._drop(side, stamp_ns, DUPLICATE, f"a {side} of stamp {stamp_ns} ns came before",
                                    remember=False))  # the first of the stamp still stands
            return None, drops
        partner = self._waiting[other].pop(stamp_ns, None)
        if partner is None:
            fate = self._dropped[other].get(stamp_ns)
            if fate is not None:
                drops.append(self._drop(side, stamp_ns, PARTNER_DROPPED, f"its {other} was dropped: {fate}"))
                return None, drops
            if self._last is not None and self._last - round(self.wait_s * 1e9) < stamp_ns < self._last:
                drops.append(self._drop(side, stamp_ns, LATE, f"the pair of stamp {self._last} ns came first"))
                return None, drops
            self._waiting[side][stamp_ns] = _Waiting(item, now)
            if len(self._waiting[side]) > self.hold:
                oldest = min(self._waiting[side])
                del self._waiting[side][oldest]
                drops.append(self._drop(side, oldest, OVERFLOW, f"more than {self.hold} {side}s waiting for "
                                                                f"their partner"))
            return None, drops
        for waiting_side in SIDES:  # the newest-frame policy: nothing older than this pair is kept for later
            for older in sorted(s for s in self._waiting[waiting_side] if s < stamp_ns):
                del self._waiting[waiting_side][older]
                drops.append(self._drop(waiting_side, older, SUPERSEDED, f"the pair of stamp {stamp_ns} ns formed "
                                                                         "first"))
        self._paired.add(stamp_ns)
        self._last = stamp_ns
        self.paired += 1
        image, mask = (item, partner.item) if side == IMAGE else (partner.item, item)
        return Pair(stamp_ns, image, mask), drops

    def refuse(self, side: str, reason: str) -> None:
        """Count an item of ``side`` that could not be offered (no valid stamp) as received and dropped."""
        self.received[side] += 1
        self.dropped[side][reason] += 1

    def expire(self, now: float) -> list[Drop]:
        """Drop every item that has waited longer than ``wait_s`` at ``now``."""
        drops = []
        for side in SIDES:
            for stamp in sorted(s for s, w in self._waiting[side].items() if now - w.arrived > self.wait_s):
                del self._waiting[side][stamp]
                drops.append(self._drop(side, stamp, NO_PARTNER, f"no {_other(side)} of its stamp within "
                                                                  f"{1000 * self.wait_s:g} ms"))
        return drops

    def clear(self, why: str = "the node was deactivated") -> list[Drop]:
        """Drop everything waiting (the node stops, or the class list changed; what comes after starts afresh)."""
        drops = [self._drop(side, stamp, CLEARED, why)
                 for side in SIDES for stamp in sorted(self._waiting[side])]
        for side in SIDES:
            self._waiting[side].clear()
        self._forget()
        return drops

    def _forget(self) -> None:
        """Start the stream over: no stamp paired or dropped before is remembered."""
        self._paired, self._last = _Recent(), None
        self._dropped = {side: _Recent() for side in SIDES}

    def _drop(self, side: str, stamp: int, reason: str, detail: str, remember: bool = True) -> Drop:
        self.dropped[side][reason] += 1
        if remember:  # a partner of this stamp arriving later goes too, as PARTNER_DROPPED
            self._dropped[side].add(stamp, reason)
        return Drop(side, stamp, reason, detail)

"""Log throttling per kind of event: a stream of bad frames must not flood the node's log, and the lines held
back are counted and reported in the next line of their kind, so the log still says how often it happened.

rclpy's ``throttle_duration_sec`` throttles one call site for the life of the process and drops what it holds
back without a count; the DDS transport logs through Python's ``logging``, which has no throttle. One small
class serves both.
"""

from __future__ import annotations

import threading


class LogThrottle:
    """At most one line per ``key`` every ``period_s`` seconds. Thread-safe."""

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def check(self, key: str, now: float) -> int | None:
        """None if a line of kind ``key`` at ``now`` (seconds, monotonic) is to be held back (it is counted);
        otherwise how many were held back since the last line of that kind."""
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.period_s:
                self._held[key] = self._held.get(key, 0) + 1
                return None
            self._last[key] = now
            return self._held.pop(key, 0)


def with_held_back(text: str, held: int, period_s: float) -> str:
    """``text``, noting ``held`` lines of its kind that were not logged (none: ``text`` as is)."""
    return f"{text} (and {held} more like it in the last {period_s:g} s)" if held else text

"""Private DDS domain ids for the tests that talk DDS, one set per pytest-xdist worker.

Each file keeps its own range of ids, and the process id picks one in it, so that two test runs on one shared
machine seldom meet. The README runs the suite on two pytest-xdist workers: a worker takes only the ids congruent
to its index modulo the number of workers, so two files running at once never share a domain, whichever ranges
they use. Without xdist every id of the range is open to the one process."""

from __future__ import annotations

import os

FAST_DDS_MAX_DOMAIN = 232  # Fast DDS's port formula overflows above this id


def worker() -> tuple[int, int]:
    """(this pytest-xdist worker's index, the number of workers); (0, 1) without xdist."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name.removeprefix("gw")), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


def private_domain(first: int, count: int) -> int:
    """A domain id in ``first`` .. ``first + count - 1`` that no other worker of this run can take."""
    if first < 0 or first + count - 1 > FAST_DDS_MAX_DOMAIN:
        raise ValueError(f"domains {first}..{first + count - 1} are not all within 0..{FAST_DDS_MAX_DOMAIN}")
    index, workers = worker()
    ids = [d for d in range(first, first + count) if d % workers == index]
    if not ids:
        raise RuntimeError(f"{workers} pytest-xdist workers leave worker {index} no domain in "
                           f"{first}..{first + count - 1}: run with fewer workers (the README uses -n 2)")
    return ids[os.getpid() % len(ids)]

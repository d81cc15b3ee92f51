"""Private DDS domain ids for the tests that talk DDS, one set per pytest-xdist worker.

Each file takes its ids from one of the ranges below, and the process id picks one in it, so that two test runs
on one shared machine seldom meet. The README runs the suite on two pytest-xdist workers: a worker takes only the
ids congruent to its index modulo the number of workers, so two files running at once never share a domain,
whichever ranges they use. Without xdist every id of the range is open to the one process."""

from __future__ import annotations

import os

FAST_DDS_MAX_DOMAIN = 232  # Fast DDS's port formula overflows above this id

# One worker runs its files one after the other, so ranges may overlap where a file's nodes are gone when it ends;
# ``IN_PROCESS`` and ``INTEROP`` overlap no other range (``test_dds_domains.py`` checks it).
NODE_BENCH = range(1, 10)  # test_node_bench: the node bench's processes
CYCLONE_NODE = range(10, 110)  # test_dds_node: the node as a process on Cyclone DDS
RCLPY_NODES = range(40, 90)  # the node as an rclpy process (low ids keep Fast DDS's ports below the ephemeral range)
REFUSALS = range(90, 100)  # node processes that refuse to start or stop at once
FAST_DDS_PROFILE = range(100, 110)  # test_fastdds_profile: in CYCLONE_NODE's range, which no Fast DDS test uses
IN_PROCESS = range(110, 150)  # conftest's rclpy context: nodes inside the pytest process
CYCLONE_TRANSPORT = range(150, 220)  # test_dds_transport
INTEROP = range(220, FAST_DDS_MAX_DOMAIN + 1)  # test_interop: both middlewares at once
RANGES = (NODE_BENCH, CYCLONE_NODE, RCLPY_NODES, REFUSALS, FAST_DDS_PROFILE, IN_PROCESS, CYCLONE_TRANSPORT, INTEROP)


def worker() -> tuple[int, int]:
    """(this pytest-xdist worker's index, the number of workers); (0, 1) without xdist."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name.removeprefix("gw")), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


def private_domain(ids: range) -> int:
    """A domain id of ``ids`` that no other worker of this run can take."""
    if not ids or ids.start < 0 or ids[-1] > FAST_DDS_MAX_DOMAIN:
        raise ValueError(f"domains {ids.start}..{ids.stop - 1} are not all within 0..{FAST_DDS_MAX_DOMAIN}")
    index, workers = worker()
    mine = [d for d in ids if d % workers == index]
    if not mine:
        raise RuntimeError(f"{workers} pytest-xdist workers leave worker {index} no domain in "
                           f"{ids.start}..{ids.stop - 1}: run with fewer workers (the README uses -n 2)")
    return mine[os.getpid() % len(mine)]

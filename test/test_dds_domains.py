"""The tests' private DDS domains: two pytest-xdist workers never share one, each stays in its file's range, and the
in-process and interop ranges overlap no other."""

from __future__ import annotations

import pytest
from dds_domains import IN_PROCESS, INTEROP, RANGES, private_domain


def domains_of(monkeypatch, index: int, workers: int) -> list[int]:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{index}")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(workers))
    return [private_domain(ids) for ids in RANGES]


def test_two_workers_never_share_a_domain_and_stay_in_range(monkeypatch) -> None:
    first, second = domains_of(monkeypatch, 0, 2), domains_of(monkeypatch, 1, 2)
    assert not set(first) & set(second)
    for picked in (first, second):
        assert all(d in ids for d, ids in zip(picked, RANGES))


@pytest.mark.parametrize("alone", [IN_PROCESS, INTEROP], ids=["in-process", "interop"])
def test_the_ranges_that_must_be_alone_are(alone: range) -> None:
    assert all(not set(alone) & set(ids) for ids in RANGES if ids is not alone)


def test_without_xdist_the_whole_range_is_open(monkeypatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    assert private_domain(range(76, 78)) in (76, 77)
    assert private_domain(range(5, 6)) == 5


def test_too_many_workers_or_a_range_past_fast_dds_is_refused(monkeypatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw12")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "16")
    with pytest.raises(RuntimeError, match="worker 12 no domain in 1..9"):
        private_domain(range(1, 10))
    with pytest.raises(ValueError, match="220..240"):
        private_domain(range(220, 241))

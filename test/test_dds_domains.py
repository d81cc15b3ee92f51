"""The tests' private DDS domains: two pytest-xdist workers never share one, and each stays in its file's range."""

from __future__ import annotations

import pytest
from dds_domains import private_domain

RANGES = [(1, 9), (10, 100), (40, 50), (110, 40), (90, 10), (100, 10), (150, 70), (220, 13)]  # what the files use


def domains_of(monkeypatch, index: int, workers: int) -> list[int]:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{index}")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(workers))
    return [private_domain(first, count) for first, count in RANGES]


def test_two_workers_never_share_a_domain_and_stay_in_range(monkeypatch) -> None:
    first, second = domains_of(monkeypatch, 0, 2), domains_of(monkeypatch, 1, 2)
    assert not set(first) & set(second)
    for picked in (first, second):
        assert all(lo <= d < lo + count for d, (lo, count) in zip(picked, RANGES))


def test_without_xdist_the_whole_range_is_open(monkeypatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    assert private_domain(76, 2) in (76, 77)
    assert private_domain(5, 1) == 5


def test_too_many_workers_or_a_range_past_fast_dds_is_refused(monkeypatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw12")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "16")
    with pytest.raises(RuntimeError, match="worker 12 no domain in 1..9"):
        private_domain(1, 9)
    with pytest.raises(ValueError, match="220..240"):
        private_domain(220, 21)

"""Shared fixtures: a small synthetic scenario, one short video generated once per session, the shipped model
exported once, and a private rclpy context for the in-process ROS tests."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from dds_domains import IN_PROCESS, private_domain

from ssp_ros.frames import SyntheticFrame
from ssp_ros.synthetic import SyntheticVideo
from ssp_ros.synthetic.config import CameraMotion, SyntheticConfig, WorldLayout


def small_scenario(**overrides) -> SyntheticConfig:
    """A fast scenario: 120×200 frames over a 160 m world at 0.1 m per world pixel."""
    base = dict(height=120, width=200, world=WorldLayout(size_m=160.0, gsd_m=0.1),
                camera=CameraMotion(altitude_m=(30.0, 40.0)))
    base.update(overrides)
    return SyntheticConfig(**base)


def untrained_weights(folder: Path, input_size: tuple[int, int], metadata: dict | None = None) -> Path:
    """``tiny.safetensors`` in ``folder``: the default SSP model for ``input_size``, untrained (seeded), for tests of
    what runs around the model, not of what it predicts."""
    import torch

    from ssp_ros.config import ModelConfig
    from ssp_ros.models import build_ssp, save_weights

    torch.manual_seed(0)
    path = folder / "tiny.safetensors"
    save_weights(build_ssp(ModelConfig(input_size=input_size), 8), path, metadata or {})
    return path


@pytest.fixture(scope="session")
def small_video() -> list[SyntheticFrame]:
    """Forty frames of the small scenario, seed 7."""
    return list(SyntheticVideo(small_scenario(), frames=40, seed=7))


@pytest.fixture(scope="session")
def shipped_export(tmp_path_factory: pytest.TempPathFactory):
    """The shipped model (config/ssp.yaml) exported once per session with ``ssp export``'s code path."""
    from ssp_ros.config import load_config
    from ssp_ros.deploy.export import export_config

    return export_config(load_config().model, tmp_path_factory.mktemp("export") / "ssp_export")


def open_context(monkeypatch):  # noqa: ANN201 - an rclpy Context
    """A private rclpy context on loopback, in this worker's in-process domain, without rclpy's signal handlers
    (pytest owns SIGINT)."""
    rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed: pip install -e '.[ros]' or source ROS 2")
    from rclpy.signals import SignalHandlerOptions

    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("ROS_DOMAIN_ID", str(private_domain(IN_PROCESS)))
    ctx = rclpy.Context()
    rclpy.init(context=ctx, signal_handler_options=SignalHandlerOptions.NO)
    return ctx


def close_context(ctx) -> None:  # noqa: ANN001 - an rclpy Context
    """Shut ``ctx`` down and take its DDS participant, and every node of it, off the graph.

    Shutdown alone leaves the participant alive while the context's handle lives, and a test's nodes hold it
    through reference cycles: an in-process "ssp" node stayed on the graph after its test, where the next test
    in this process saw it. Collected and destroyed, nothing of the test stays behind."""
    import rclpy

    rclpy.try_shutdown(context=ctx)
    gc.collect()
    ctx.destroy()


@pytest.fixture
def context(monkeypatch):
    """A private rclpy context for one in-process ROS test (``open_context``), closed after it."""
    ctx = open_context(monkeypatch)
    yield ctx
    close_context(ctx)

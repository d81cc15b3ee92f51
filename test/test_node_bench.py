"""``ssp bench-node``: the pure numbers (percentiles, warm-up window, RSS drift, the run matrix, the CLI's sizes)
fast, and a few seconds of the real tool over each transport: the node as a process on ONNX Runtime, 128x224
frames, the JSON holding real numbers. Speed targets are not checked here: they live in the benchmark's JSON."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
import yaml
from dds_domains import NODE_BENCH, private_domain

from ssp_ros.cli.main import build_parser
from ssp_ros.config import load_config
from ssp_ros.errors import SspError
from ssp_ros.synthetic.config import load_sim_config
from ssp_ros.tools.node_bench.node_process import environment, with_env, write_node_config
from ssp_ros.tools.node_bench.plan import RunPlan, plan_runs
from ssp_ros.tools.node_bench.report import write_report
from ssp_ros.tools.node_bench.run_numbers import latency_stats, pingpong, read_rss_mb, rss_numbers, window_numbers

ROOT = Path(__file__).resolve().parents[1]
SMALL = (128, 224)


def test_latency_percentiles_interpolate_like_numpy() -> None:
    stats = latency_stats([float(v) for v in range(1, 101)])
    assert stats == {"n": 100, "p50": 50.5, "p90": 90.1, "p99": 99.01, "max": 100.0, "mean": 50.5}
    assert latency_stats([7.0]) == {"n": 1, "p50": 7.0, "p90": 7.0, "p99": 7.0, "max": 7.0, "mean": 7.0}
    assert latency_stats([])["p50"] is None


def test_the_window_leaves_out_the_warm_up_and_the_handshake() -> None:
    s = 1_000_000_000
    start = 100 * s
    sent = [start + i * s // 10 for i in range(50)]  # 5 s at 10 Hz
    masks = [(start - s, start - s + 5_000_000)]  # a handshake frame: before the stream
    masks += [(t, t + 20_000_000 + i * 1_000_000) for i, t in enumerate(sent) if i % 2 == 0]  # every 2nd frame
    numbers = window_numbers(sent, masks, start, start + 5 * s, warmup_s=1.0)
    assert numbers["frames_sent"] == 40 and numbers["masks_received"] == 20
    assert numbers["window_s"] == 4.0 and numbers["throughput_fps"] == 5.0 and numbers["send_rate_hz"] == 10.0
    assert numbers["delivered_share"] == 0.5
    assert numbers["latency_ms"]["p50"] == 49.0  # 20 ms + 1 ms per frame: the frames 10, 12 … 48
    assert window_numbers([], [], start, start + s, 0.5)["delivered_share"] is None


def test_rss_drift_counts_after_the_warm_up_only() -> None:
    samples = [(0.0, 100.0, 50.0), (1.0, 180.0, 90.0), (2.0, 181.0, 91.0), (3.0, 186.5, 93.0), (4.0, 183.0, None)]
    rss = rss_numbers(samples, warmup_s=1.0, limit_mb=25.0)
    assert (rss["first"], rss["last"], rss["min"], rss["max"], rss["drift"], rss["flat"]) == \
        (180.0, 183.0, 180.0, 186.5, 6.5, True)
    assert rss["vm_rss"] == [100.0, 180.0, 181.0, 186.5, 183.0] and rss["rss_anon"][-1] is None
    assert rss["quarter_delta_mb"] == 3.0 and rss["slope_mb_per_min"] == pytest.approx(60 * 1.45)  # least squares
    leak = rss_numbers([(float(t), 200.0 + 0.5 * t, None) for t in range(20)], warmup_s=0.0)
    assert leak["slope_mb_per_min"] == pytest.approx(30.0) and leak["quarter_delta_mb"] == 7.5
    assert rss_numbers(samples, warmup_s=1.0, limit_mb=5.0)["flat"] is False
    assert rss_numbers(samples, warmup_s=10.0)["drift"] is None


def test_rss_of_this_process() -> None:
    vm, anon = read_rss_mb(os.getpid())
    assert vm > 10.0 and anon is not None and 0 < anon <= vm
    assert read_rss_mb(2**22 + 1) is None  # above the kernel's pid_max: no such process


def test_frames_play_forward_then_backward() -> None:
    assert [pingpong(i, 4) for i in range(9)] == [0, 1, 2, 3, 2, 1, 0, 1, 2]
    assert [pingpong(i, 1) for i in range(3)] == [0, 0, 0]


def test_the_matrix_and_its_overload_runs() -> None:
    plans = plan_runs(["rclpy", "dds"], [(368, 640), (736, 1280)], 30, 60, 10, overload_rate_hz=60,
                      overload_duration_s=300)
    assert [(p.kind, p.transport, p.frame_size) for p in plans] == [
        ("latency", "rclpy", (368, 640)), ("latency", "dds", (368, 640)), ("latency", "rclpy", (736, 1280)),
        ("latency", "dds", (736, 1280)), ("overload", "rclpy", (736, 1280)), ("overload", "dds", (736, 1280))]
    assert plans[-1] == RunPlan("overload", "dds", (736, 1280), 60.0, 300.0)
    assert plan_runs(["dds"], [(368, 640)], 30, 60, 10, overload_duration_s=300,
                     overload_size=(128, 224))[-1].frame_size == (128, 224)
    for bad in (dict(transports=["zenoh"]), dict(warmup_s=60), dict(rate_hz=0), dict(sizes=[])):
        args = dict(transports=["dds"], sizes=[(368, 640)], rate_hz=30, duration_s=60, warmup_s=10) | bad
        with pytest.raises(SspError, match="bench-node"):
            plan_runs(**args)


def test_the_command_line_takes_the_whole_matrix() -> None:
    args = build_parser().parse_args(["bench-node", "--size", "368x640", "--size", "736X1280", "--transport", "rclpy",
                                      "--transport", "dds", "--overload-duration", "300", "--out", "m.json"])
    assert args.size == [(368, 640), (736, 1280)] and args.transport == ["rclpy", "dds"]
    assert args.backend == "onnxruntime" and args.overload_duration == 300.0 and args.out == Path("m.json")
    assert args.reliable is False and build_parser().parse_args(["bench-node", "--reliable"]).reliable is True
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench-node", "--size", "368by640"])


def test_the_node_config_is_the_base_with_the_bench_settings(tmp_path) -> None:
    path = write_node_config(load_config(), tmp_path / "ssp.yaml", (384, 640), "onnxruntime", tmp_path / "export", 2)
    cfg = load_config(path)
    assert cfg.model.input_size == (384, 640) and Path(cfg.model.weights).is_absolute()
    assert Path(cfg.model.weights).is_file()
    assert (cfg.runtime.backend, cfg.runtime.export_dir, cfg.runtime.threads) == \
        ("onnxruntime", str((tmp_path / "export").resolve()), 2)
    assert cfg.node.image_topic == "/camera/image_raw" and cfg.node.reliable is False
    reliable = write_node_config(load_config(), tmp_path / "r.yaml", (384, 640), "torch", None, None, reliable=True)
    assert load_config(reliable).node.reliable is True and load_config(reliable).runtime.export_dir is None
    assert yaml.safe_load(path.read_text())["registration"] == dataclasses.asdict(load_config().registration)


def test_the_environment_is_restored(monkeypatch) -> None:
    monkeypatch.setenv("ROS_LOCALHOST_ONLY", "1")
    monkeypatch.delenv("ROS_DOMAIN_ID", raising=False)
    with environment({"ROS_LOCALHOST_ONLY": None, "ROS_DOMAIN_ID": "3"}):
        assert "ROS_LOCALHOST_ONLY" not in os.environ and os.environ["ROS_DOMAIN_ID"] == "3"
    assert os.environ["ROS_LOCALHOST_ONLY"] == "1" and "ROS_DOMAIN_ID" not in os.environ
    assert with_env({"A": "1", "B": "2"}, {"A": None, "C": "3"}) == {"B": "2", "C": "3"}


@pytest.fixture(scope="module")
def small_export(tmp_path_factory) -> Path:
    """The shipped model exported for 128x224 (ONNX graphs have a static input size)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    from ssp_ros.deploy.export import export_config

    model = dataclasses.replace(load_config().model, input_size=SMALL)
    return export_config(model, tmp_path_factory.mktemp("export") / "small")


@pytest.mark.slow
def test_a_few_seconds_over_each_transport_give_real_numbers(tmp_path, small_export) -> None:
    pytest.importorskip("rclpy", reason="rclpy is not installed: pip install -e '.[ros]'")
    pytest.importorskip("cyclonedds", reason="cyclonedds is not installed: pip install -e '.[dds]'")
    from conftest import small_scenario

    from ssp_ros.tools.node_bench.matrix import run_node_bench
    from ssp_ros.tools.node_bench.report import BREAKDOWN, node_breakdown

    plans = plan_runs(["rclpy", "dds"], [SMALL], rate_hz=20, duration_s=3, warmup_s=1)
    report = run_node_bench(load_sim_config(), plans, backend="onnxruntime", export_dirs=[small_export], warmup_s=1,
                            domain=private_domain(NODE_BENCH), scenario=small_scenario(height=SMALL[0], width=SMALL[1]),
                            seed=7)
    out, md = write_report(report, tmp_path / "bench.json")
    report = json.loads(out.read_text())
    assert report["machine"]["cpu_count"] >= 1 and "onnxruntime" in report["machine"]["versions"]
    assert [run["transport"] for run in report["runs"]] == ["rclpy", "dds"]
    for run in report["runs"]:
        assert "error" not in run, run["error"]
        assert run["export_dir"] == str(small_export.resolve()) and run["input_size"] == list(SMALL)
        assert 0 < run["masks_received"] <= run["frames_sent"] and run["throughput_fps"] > 0
        lat = run["latency_ms"]
        assert lat["n"] == run["masks_received"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        rss = run["rss_mb"]
        assert len(rss["vm_rss"]) >= 3 and all(v > 10.0 for v in rss["vm_rss"])
        assert rss["min"] <= rss["first"] <= rss["max"] and rss["drift"] >= 0 and rss["flat"] is not None
        assert run["node"]["exit_code"] == 0 and run["node"]["handshake_frames"] >= 1
        assert run["node"]["diagnostics_final"]["ssp: processing"]["backend"] == "onnxruntime"
        assert int(run["node"]["diagnostics_final"]["ssp: input"]["received"]) >= run["masks_received"]
        assert 0 <= run["not_received_by_node"] < run["frames_sent_total"]
    assert len(report["summary"]) == 2 and "masks/s" in report["summary"][0]
    assert md.read_text().count("| latency |") == 4  # the latency table and the breakdown table
    for run in report["runs"]:
        parts = node_breakdown(run)
        assert set(parts) == set(BREAKDOWN) and parts["total"] > 0 and parts["convert"] >= 0

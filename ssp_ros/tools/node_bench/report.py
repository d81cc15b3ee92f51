"""The report: the machine the numbers came from, a line per run, and the Markdown tables beside the JSON."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ssp_ros.ros.node import NODE_NAME

VERSIONED = ("ssp_ros", "onnxruntime", "rclpy", "ros-jazzy-rclpy", "ros-jazzy-rmw-fastrtps-cpp", "ros-fastrtps",
             "cyclonedds", "numpy", "opencv-python", "opencv-python-headless", "torch")


def machine_info() -> dict[str, Any]:
    """CPU count, platform, Python and the versions of the packages that shape the numbers."""
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "python": platform.python_version(),
            "versions": versions}


def summary_line(run: dict[str, Any]) -> str:
    """One line per run: what was sent, what came back, latency, RSS."""
    head = f"{run['kind']} {run['transport']} {run['frame_size'][0]}x{run['frame_size'][1]} @ {run['rate_hz']:g} Hz"
    if "error" in run:
        return f"{head}: FAILED: {run['error'].splitlines()[0]}"
    lat, rss = run["latency_ms"], run["rss_mb"]
    text = (f"{head}: {run['masks_received']} masks / {run['frames_sent']} frames after warm-up, "
            f"{run['throughput_fps']:.2f} masks/s")
    if run.get("not_received_by_node"):
        text += f", {run['not_received_by_node']} frames lost before the node"
    if lat["n"]:
        text += f", latency p50/p90/p99 {lat['p50']:.0f}/{lat['p90']:.0f}/{lat['p99']:.0f} ms (max {lat['max']:.0f})"
    if rss["drift"] is not None:
        text += (f", RSS {rss['first']:.0f} -> {rss['last']:.0f} MiB, drift {rss['drift']:.1f} "
                 f"{'<=' if rss['flat'] else '>'} {rss['limit_mb']:g} MiB")
    if rss.get("slope_mb_per_min") is not None:
        text += f" (trend {rss['slope_mb_per_min']:+.2f} MiB/min)"
    return text


BREAKDOWN = ("transit", "wait", "convert", "total", "messages", "publish")  # "total": the pipeline's


def node_breakdown(run: dict[str, Any]) -> dict[str, float] | None:
    """The node's own median per stage (ms) from its /diagnostics while the camera ran: camera stamp → callback,
    the wait in the slot, conversion, the pipeline (``total``), building and publishing the outputs; None without
    diagnostics."""
    processing = (run.get("node", {}).get("diagnostics_streaming") or {}).get(f"{NODE_NAME}: processing", {})
    medians = {}
    for stage in BREAKDOWN:
        value = processing.get(f"latency {stage} ms (median / max)")
        if value is not None:
            medians[stage] = float(value.split("/")[0])
    return medians if "total" in medians else None


def markdown(report: dict[str, Any]) -> str:
    """The runs as Markdown tables (latency and memory; where the time goes), with the machine and settings above."""
    m, s = report["machine"], report["settings"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    lines = ["# Node benchmark (camera stamp -> mask)", "",
             f"{m['cpu_count']} CPUs, {m['platform']}, Python {m['python']}; {versions}.",
             f"Backend {s['backend']}; input QoS {s['input_qos']}; warm-up {s['warmup_s']:g} s left out; "
             f"node.max_age_ms {s['max_age_ms']:g}; "
             f"DDS domain {s['domain_id']}; created {report['created']}.", "",
             "| run | transport | frame | input | rate Hz | frames | not received by node | masks | masks/s | p50 ms | "
             "p90 ms | p99 ms | max ms | node CPU % | RSS first / last MiB | drift MiB | trend MiB/min |",
             "|---" * 17 + "|"]
    for r in report["runs"]:
        head = (f"| {r['kind']} | {r['transport']} | {r['frame_size'][0]}x{r['frame_size'][1]} | "
                f"{r['input_size'][0]}x{r['input_size'][1]} | {r['rate_hz']:g} |")
        if "error" in r:
            lines.append(head + f" failed: {r['error'].splitlines()[0]} |" + " |" * 11)
            continue
        lat, rss = r["latency_ms"], r["rss_mb"]
        flat = "" if rss["flat"] is None else (" ok" if rss["flat"] else " **over**")
        lines.append(head + f" {r['frames_sent']} | {r.get('not_received_by_node')} | {r['masks_received']} | "
                     f"{r['throughput_fps']} | {lat['p50']} | "
                     f"{lat['p90']} | {lat['p99']} | {lat['max']} | {r['cpu_percent']['node']} | {rss['first']} / "
                     f"{rss['last']} | {rss['drift']}{flat} | {rss.get('slope_mb_per_min')} |")
    lines += ["", "Frames and masks: stamped after the warm-up. Not received by node: frames of the whole run that the "
              "middleware lost (sent minus the node's own count). Latency: mask arrival here minus the frame's header "
              f"stamp. Drift: max - min VmRSS after the warm-up (limit {s['rss_limit_mb']:g} MiB).", "",
              "Where the time goes: the node's medians over its last /diagnostics window while the camera ran, ms "
              "(transit: camera stamp -> the node's callback; wait: in the newest-frame slot; pipeline: "
              "Pipeline.process; messages: building the outputs someone subscribes to); the camera -> mask p99 over "
              "the pipeline median (the issue's target is 1.5).", "",
              "| run | transport | frame | transit | wait | convert | pipeline | messages | publish | "
              "p99 / pipeline median |", "|---" * 10 + "|"]
    for r in report["runs"]:
        parts = node_breakdown(r) if "error" not in r else None
        if parts is None:
            continue
        cells = " | ".join(f"{parts[k]:.1f}" if k in parts else "" for k in BREAKDOWN)
        p99 = r["latency_ms"]["p99"]
        ratio = "" if p99 is None else f"{p99 / parts['total']:.2f}"
        lines.append(f"| {r['kind']} | {r['transport']} | {r['frame_size'][0]}x{r['frame_size'][1]} | {cells} | "
                     f"{ratio} |")
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out: Path,
                 render: Callable[[dict[str, Any]], str] = markdown) -> tuple[Path, Path]:
    """Write the JSON to ``out`` and its Markdown (``render``) beside it (same name, ``.md``)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    md = out.with_suffix(".md")
    out.write_text(json.dumps(report, indent=2) + "\n")
    md.write_text(render(report))
    return out, md

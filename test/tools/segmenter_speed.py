"""Segmenter latency of exported folders (e.g. FP32 vs `ssp export --int8`), one process, same image.

Each folder's segmenter runs through ``OnnxRuntimeBackend.segment`` (the backend's own session options, all
cores): median, p10 and p90 of ``--runs`` calls after ``--warmup``. The model card's INT8 speed table comes from

    flock /tmp/ssp-cpu.lock python test/tools/segmenter_speed.py FP32_736 INT8_736 FP32_384 INT8_384

with folders written by ``ssp export --out DIR [--size 736x1280] [--int8]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ssp_ros.backends.export_info import load_export_info
from ssp_ros.backends.onnx_backend import OnnxRuntimeBackend


def time_segmenter(folder: Path, runs: int, warmup: int) -> dict[str, float]:
    """Median / p10 / p90 milliseconds of ``segment`` on one random frame of the export's input size."""
    backend = OnnxRuntimeBackend(load_export_info(folder))
    h, w = backend.input_size
    image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    for _ in range(warmup):
        backend.segment(image)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        backend.segment(image)
        times.append(1000.0 * (time.perf_counter() - start))
    precision = backend.info.raw.get("precision", {}).get("segmenter", "fp32")
    return {"input": f"{h}x{w}", "precision": precision, "median_ms": round(float(np.median(times)), 2),
            "p10_ms": round(float(np.percentile(times, 10)), 2), "p90_ms": round(float(np.percentile(times, 90)), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+", help="folders written by `ssp export`")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    results = {str(folder): time_segmenter(folder, args.runs, args.warmup) for folder in args.folders}
    for folder, r in results.items():
        print(f"{folder}: {r['input']} {r['precision']} median {r['median_ms']} ms "
              f"(p10 {r['p10_ms']}, p90 {r['p90_ms']})")
    print(json.dumps(results))


if __name__ == "__main__":
    main()

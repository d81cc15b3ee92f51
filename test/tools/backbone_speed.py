"""ONNX Runtime speed of candidate backbones for the next model, FP32 against INT8 (issue #25), before any training.

Speed does not depend on the weights, so each backbone is exported untrained (``ssp export``'s code path, UPerNet
decoder ``--decoder`` wide) at each input size and quantized with ``quantize_export`` (``--calib`` synthetic
frames: enough for the graph's shape, not for its accuracy). The FP32 and INT8 segmenters then run in turn, frame by
frame on one image, the order turning around each frame (as ``ssp bench`` times image model and SSP), so that both
see the same load; the INT8 speed-up is the median of the per-frame ratios. Accuracy needs trained weights: this
only narrows the candidates.

    flock /tmp/ssp-cpu.lock python test/tools/backbone_speed.py mobilenetv3_large_100 mobilenetv4_conv_small
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ssp_ros.backends.export_info import load_export_info
from ssp_ros.backends.onnx_backend import OnnxRuntimeBackend
from ssp_ros.classes import load_class_set
from ssp_ros.config import ModelConfig
from ssp_ros.deploy.export import export_config
from ssp_ros.deploy.quantize import quantize_export
from ssp_ros.eval.interleave import ratio_spread, turn_order
from ssp_ros.models import build_segmenter
from ssp_ros.synthetic.config import load_sim_config

SIZES = ((384, 640), (736, 1280))


def time_in_turn(backends: dict[str, OnnxRuntimeBackend], image: np.ndarray, frames: int,
                 warmup: int) -> dict[str, list[float]]:
    """Seconds per ``segment`` call of each backend, called in turn on ``image`` (``turn_order``: as ``ssp bench``)."""
    names, times = list(backends), {name: [] for name in backends}
    for index in range(warmup + frames):
        for name in turn_order(names, index):
            start = time.perf_counter()
            backends[name].segment(image)
            if index >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def measure(backbone: str, size: tuple[int, int], args: argparse.Namespace, scratch: Path) -> dict:
    """One backbone at one input size: FP32 and INT8 latency, the INT8 speed-up, parameters and graph size."""
    torch.manual_seed(0)
    model_cfg = ModelConfig(backbone=backbone, decoder_channels=args.decoder, input_size=size)
    fp32 = export_config(model_cfg, scratch / f"{backbone}_{size[0]}")
    int8 = scratch / f"{backbone}_{size[0]}_int8"
    shutil.copytree(fp32, int8)
    quantize_export(int8, calib_frames=args.calib, scenario=load_sim_config().synthetic)
    backends = {p: OnnxRuntimeBackend(load_export_info(f), "cpu", args.threads) for p, f in (("fp32", fp32),
                                                                                              ("int8", int8))}
    image = np.random.default_rng(0).uniform(0, 255, (*size, 3)).astype(np.float32)
    times = time_in_turn(backends, image, args.frames, args.warmup)
    segmenter = build_segmenter(model_cfg, load_class_set(model_cfg.dataset).num_classes)
    params = sum(p.numel() for p in segmenter.parameters())
    return {"backbone": backbone, "input": f"{size[0]}x{size[1]}", "decoder": args.decoder,
            "params_m": round(params / 1e6, 2),
            "fp32_ms": round(1000 * float(np.median(times["fp32"])), 1),
            "int8_ms": round(1000 * float(np.median(times["int8"])), 1),
            "int8_speedup": round(ratio_spread(times["fp32"], times["int8"])["p50"], 2),
            "fp32_segmenter_mb": round((fp32 / "segmenter.onnx").stat().st_size / 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("backbones", nargs="+", help="timm model names")
    parser.add_argument("--decoder", type=int, default=64, help="UPerNet channels (default 64, the shipped model's)")
    parser.add_argument("--frames", type=int, default=12, help="timed frames per size (default 12)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed frames first (default 3)")
    parser.add_argument("--calib", type=int, default=8, help="INT8 calibration frames (default 8)")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads (default 2)")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    rows = []
    for backbone in args.backbones:
        with tempfile.TemporaryDirectory(prefix="backbone-speed-") as scratch:
            for size in SIZES:
                rows.append(measure(backbone, size, args, Path(scratch)))
                print(json.dumps(rows[-1]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

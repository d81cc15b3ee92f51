"""A few minutes' check of a CUDA machine (torch preinstalled, no network): run by ``test/gpu/check.sh``.

Prints, section by section:

1. the torch backend on the device against the CPU: max |Δlogit| of the fused state and the mask agreement
   frame by frame over a short synthetic flight (shipped model, registration on);
2. one AMP training step (``ssp_train``'s image objective under ``torch.autocast`` fp16 with a GradScaler; bf16
   on a CPU): finite loss, weights moved;
3. ``ssp bench`` on the device (the shipped model; the pipeline calls ``backend.synchronize()`` before each
   stage's clock stops, so GPU time is not hidden in a later stage);
4. the paper's model (Hiera-S + UPerNet-256, random weights) image model vs SSP at 736×1280 in FPS, next to the
   paper's A100 figures (104 → 95 FPS);
5. TensorRT: its version against the supported range, or that it is not importable (nothing is faked).

Exits 1 when a section fails (a mismatch beyond its bound, an exception), 0 otherwise; TensorRT missing is
not a failure. ``--device cpu`` with small ``--size``/``--paper-size`` runs the same code on a CPU (the test).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from ssp_ros.synthetic.config import SyntheticConfig

# bounds of section 1: CUDA convolutions may use TF32 (cuDNN's default), and the CPU warps with OpenCV where
# the device uses grid_sample (≤ 1e-3 apart, test_cpu_warp.py)
MAX_DELTA = 0.1
MIN_AGREEMENT = 0.995


def _size(text: str) -> tuple[int, int]:
    h, w = (int(v) for v in text.lower().split("x"))
    return h, w


def check_scenario(synthetic: SyntheticConfig, size: tuple[int, int]) -> SyntheticConfig:
    """``synthetic`` at ``size`` over ``snug_world``'s world: the check's flights last a second or two, and the
    default 360 m world takes 13 s of one core to build, once per section."""
    from ssp_ros.synthetic.video import snug_world

    return snug_world(dataclasses.replace(synthetic, height=size[0], width=size[1]))


def _world(size: tuple[int, int]) -> dict:
    """The ``synthetic:`` section of a bench config: the default scenario over ``check_scenario``'s world."""
    from ssp_ros.synthetic.config import SyntheticConfig

    return {"world": {"size_m": check_scenario(SyntheticConfig(), size).world.size_m}}


def parity(device: str, size: tuple[int, int], frames: int, seed: int = 2003) -> list[str]:
    """Section 1: the same weights on ``device`` and on the CPU, each recursive on its own state."""
    from ssp_ros.backends.torch_backend import TorchBackend
    from ssp_ros.classes import load_class_set
    from ssp_ros.models import build_ssp
    from ssp_ros.pipeline import Pipeline
    from ssp_ros.synthetic import SyntheticVideo
    from ssp_ros.synthetic.config import load_sim_config

    cfg = load_sim_config()
    cfg = dataclasses.replace(cfg, synthetic=check_scenario(cfg.synthetic, size))
    classes = load_class_set(cfg.model.dataset)
    model = build_ssp(cfg.model, classes.num_classes).eval()
    cpu = Pipeline(cfg, TorchBackend(model, cfg.model.input_size, "cpu"))
    dev = Pipeline(cfg, TorchBackend(copy.deepcopy(model), cfg.model.input_size, device))  # .to() moves in place
    deltas, agreements, fused = [], [], 0
    for frame in SyntheticVideo(cfg.synthetic, frames=frames, seed=seed):
        a, b = cpu.process(frame.image, frame.stamp), dev.process(frame.image, frame.stamp)
        fused += b.fused
        state = dev.propagator.state.logits.detach().float().cpu()
        deltas.append(float((cpu.propagator.state.logits.float() - state).abs().max()))
        agreements.append(float((a.mask == b.mask).mean()))
    print(f"  {frames} frames ({fused} fused) at {size[0]}x{size[1]}: max |dlogit| {max(deltas):.2e} "
          f"(last {deltas[-1]:.2e}), mask agreement min {100 * min(agreements):.3f} %, mean "
          f"{100 * float(np.mean(agreements)):.3f} %")
    problems = []
    if max(deltas) > MAX_DELTA:
        problems.append(f"max |dlogit| {max(deltas):.3g} > {MAX_DELTA}")
    if min(agreements) < MIN_AGREEMENT:
        problems.append(f"mask agreement {min(agreements):.4f} < {MIN_AGREEMENT}")
    return problems


def amp_step(device: str, size: tuple[int, int]) -> list[str]:
    """Section 2: two optimiser steps of the image objective under autocast (fp16 + GradScaler on CUDA)."""
    from ssp_ros.config import load_config
    from ssp_ros.models import build_ssp
    from ssp_train.engine import DTYPES
    from ssp_train.objectives import ImageObjective

    cfg = load_config()
    torch.manual_seed(0)
    model = build_ssp(dataclasses.replace(cfg.model, weights=None, input_size=size), 8, with_weights=False)
    objective = ImageObjective(model.segmenter).to(device).train()
    precision = "fp16" if device.startswith("cuda") else "bf16"
    optimizer = torch.optim.AdamW(objective.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")
    images = torch.rand(2, 3, *size, device=device) * 255.0
    labels = torch.randint(0, 8, (2, *size), device=device)
    before = [p.detach().clone() for p in objective.parameters()]
    losses = []
    for _ in range(2):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(torch.device(device).type, dtype=DTYPES[precision]):
            loss = objective((images, labels))["loss"]
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(float(loss.detach()))
    moved = sum(not torch.equal(a, b) for a, b in zip(before, objective.parameters()))
    print(f"  {precision} autocast on {device}: losses {losses[0]:.4f}, {losses[1]:.4f}; {moved} of {len(before)} "
          f"tensors moved; scale {scaler.get_scale() if scaler.is_enabled() else 'off'}")
    problems = []
    if not all(np.isfinite(losses)):
        problems.append(f"non-finite loss {losses}")
    if moved == 0:
        problems.append("no weight moved")
    return problems


def _bench(config: dict, size: tuple[int, int], frames: int, warmup: int, out: Path) -> dict:
    """``ssp bench --config <config> --backend torch --size HxW`` in this process; its bench.json."""
    import yaml

    from ssp_ros.cli.main import main as ssp

    out.mkdir(parents=True, exist_ok=True)
    path = out / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    argv = ["bench", "--config", str(path), "--backend", "torch", "--size", f"{size[0]}x{size[1]}",
            "--frames", str(frames), "--warmup", str(warmup), "--out", str(out)]
    code = ssp(argv)
    if code != 0:
        raise RuntimeError(f"ssp {' '.join(argv)} exited with {code}")
    return json.loads((out / "bench.json").read_text())


def _fps(report: dict) -> dict[str, float]:
    return {run["model"]: run["fps"] for run in report["runs"] if run["backend"] == "torch"}


def bench(device: str, size: tuple[int, int], frames: int, out: Path) -> list[str]:
    """Section 3: ``ssp bench`` of the shipped model on ``device``."""
    report = _bench({"runtime": {"device": device}, "synthetic": _world(size)}, size, frames, max(2, frames // 4),
                    out / "shipped")
    for run in report["runs"]:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in run["latency_ms"].items())
        print(f"  {run['model']:5s} {run['size'][0]}x{run['size'][1]}: {run['fps']:.1f} FPS (median ms: {stages})")
    fps = _fps(report)
    return [] if set(fps) == {"image", "ssp"} else [f"expected image and ssp runs, got {sorted(fps)}"]


def paper_fps(device: str, size: tuple[int, int], frames: int, out: Path) -> list[str]:
    """Section 4: the paper's model (random weights) at ``size``, image model vs SSP, beside the A100 figures."""
    from ssp_ros.eval.bench import PAPER_FPS_A100, PAPER_MODEL

    model = {"backbone": PAPER_MODEL.backbone, "decoder_channels": PAPER_MODEL.decoder_channels,
             "dataset": PAPER_MODEL.dataset, "input_size": list(size), "weights": None}
    report = _bench({"model": model, "runtime": {"device": device}, "synthetic": _world(size)}, size, frames,
                    max(2, frames // 4), out / "paper")
    fps = _fps(report)
    ours = f"{fps.get('image', float('nan')):.1f} → {fps.get('ssp', float('nan')):.1f} FPS"
    paper = f"{PAPER_FPS_A100['image']:.0f} → {PAPER_FPS_A100['ssp']:.0f} FPS"
    ratio = fps["ssp"] / fps["image"] if fps.get("image") else float("nan")
    print(f"  image model → SSP at {size[0]}x{size[1]}: here {ours} (SSP/image {ratio:.2f}, registration included); "
          f"paper, A100: {paper} (SSP/image {PAPER_FPS_A100['ssp'] / PAPER_FPS_A100['image']:.2f})")
    return [] if set(fps) == {"image", "ssp"} else [f"expected image and ssp runs, got {sorted(fps)}"]


def tensorrt_probe() -> list[str]:
    """Section 5: TensorRT's version against the supported range; a missing TensorRT is said, not faked."""
    from ssp_ros.backends.tensorrt_common import SUPPORTED_TEXT, TENSORRT_PIN, unsupported_reason

    try:
        import tensorrt as trt
    except ImportError as err:
        print(f"  TensorRT is not importable here ({err}): no engine was built or run. Supported: {SUPPORTED_TEXT}; "
              f"`pip install '{TENSORRT_PIN}'` and pycuda, then `ssp build-engine`.")
        return []
    reason = unsupported_reason(trt.__version__)
    print(f"  TensorRT {trt.__version__}: {'supported' if reason is None else reason}")
    try:
        import pycuda.driver  # noqa: F401 - only whether it imports
    except ImportError as err:
        print(f"  pycuda is not importable ({err}): engines cannot run here")
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="check ssp_ros on a CUDA machine (see the module docstring)")
    parser.add_argument("--device", default="cuda", help="torch device to check (default cuda)")
    parser.add_argument("--size", type=_size, default=(368, 640), help="frame size of sections 1-3 (368x640)")
    parser.add_argument("--paper-size", type=_size, default=(736, 1280), help="section 4's size (736x1280)")
    parser.add_argument("--frames", type=int, default=30, help="frames per flight / timed frames (default 30)")
    parser.add_argument("--out", type=Path, help="keep the bench reports here (default: a temporary folder)")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}"
          + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""))
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"FAIL: --device {args.device} but torch sees no CUDA device")
        return 1
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ssp-gpu-check-") as scratch:
        out = args.out or Path(scratch)
        sections: list[tuple[str, Callable[[], list[str]]]] = [
            (f"1. torch on {args.device} vs CPU", lambda: parity(args.device, args.size, args.frames)),
            ("2. AMP training step", lambda: amp_step(args.device, (args.size[0] // 32 * 32, 256))),
            (f"3. ssp bench on {args.device}", lambda: bench(args.device, args.size, args.frames, out)),
            ("4. paper model, image vs SSP", lambda: paper_fps(args.device, args.paper_size, args.frames, out)),
            ("5. TensorRT", tensorrt_probe),
        ]
        for title, section in sections:
            print(f"== {title}", flush=True)
            start = time.perf_counter()
            try:
                problems = section()
            except Exception as err:  # noqa: BLE001 - every section reports, then the exit status says it failed
                traceback.print_exc()
                problems = [f"{type(err).__name__}: {err}"]
            for problem in problems:
                print(f"  FAIL: {problem}")
            failures += [f"{title}: {p}" for p in problems]
            print(f"  ({time.perf_counter() - start:.0f} s)", flush=True)
    print("FAILED:\n  " + "\n  ".join(failures) if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""What FP16 would do to the recursive state: the fusion graph (warp + similarity head + blend) emulated in float16
with torch on the CPU, frame after frame through the real pipeline (registration included), against FP32.

TensorRT builds the fusion graph in FP32 at every engine precision (``tensorrt_build.FP32_GRAPHS``); these are the
figures that decision rests on (models/README.md, "TensorRT FP16 and the warp"). Variants of the fusion step:

- ``fp16``: the whole step in float16, homography included (what ``--fp16`` without FP32_GRAPHS would allow
  TensorRT to do; TensorRT keeps some layers in FP32 where it finds them faster, so this is the worst case);
- ``fp16-head``: the warp (homography → sampling grid → GridSample, validity) in FP32, the similarity head and
  the blend in float16 (per-layer precision constraints on the warp's layers only);
- the reference: the same step in FP32 (``TorchBackend`` with the GridSample warp, as in the graph).

Each variant runs its own pipeline on its own state; the fused state is compared with the reference's after
every frame. Usage (about a minute on 2 cores; under the benchmark lock):

    flock /tmp/ssp-cpu.lock python test/tools/fp16_warp_drift.py --frames 100 --seed 2003
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
from dataclasses import dataclass, field

import numpy as np
import torch

from ssp_ros.backends.torch_backend import TorchBackend
from ssp_ros.classes import load_class_set
from ssp_ros.models import SSP, build_ssp
from ssp_ros.models.warp import homography_grid, warp
from ssp_ros.pipeline import Pipeline
from ssp_ros.synthetic import SyntheticVideo
from ssp_ros.synthetic.config import SimConfig, load_sim_config

VARIANTS = ("fp16", "fp16-head")


class HalfFusionBackend(TorchBackend):
    """The torch backend (GridSample warp, as in the exported fusion graph) with its fusion step in float16
    (``variant`` ``fp16``) or with only the similarity head and the blend in float16 (``fp16-head``). The state
    kept between frames is float32, as a TensorRT engine's FP32 output tensors are."""

    def __init__(self, model: SSP, input_size: tuple[int, int], variant: str) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"variant '{variant}': expected one of {VARIANTS}")
        super().__init__(model, input_size, "cpu", cpu_warp=False)
        self.variant = variant
        self.name = f"torch-{variant}"
        self.half_fusion = copy.deepcopy(self.fusion).half()
        self.half_blend = copy.deepcopy(model.fusion_step()).half()

    @torch.inference_mode()
    def fuse(self, cur_logits: torch.Tensor, cur_feats: torch.Tensor, prev_logits: torch.Tensor,
             prev_feats: torch.Tensor, to_previous: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.as_tensor(to_previous, dtype=torch.float32)[None]
        if self.variant == "fp16":
            fused, s, _ = self.half_fusion(cur_logits.half(), cur_feats.half(), prev_logits.half(), prev_feats.half(),
                                           h.half())
        else:
            warped_logits, valid = warp(prev_logits, h)
            warped_feats, _ = warp(prev_feats, h)
            fused, s = self.half_blend(cur_logits.half(), cur_feats.half(), warped_logits.half(),
                                       warped_feats.half(), valid.half())
        return fused.float(), s.float()


@dataclass
class Drift:
    """Per fused frame: the fused state's |Δlogit| (max, mean) and the mask agreement against FP32."""

    max_abs: list[float] = field(default_factory=list)
    mean_abs: list[float] = field(default_factory=list)
    agreement: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        n = len(self.mean_abs)
        tenth = max(1, n // 10)
        first, last = float(np.mean(self.mean_abs[:tenth])), float(np.mean(self.mean_abs[-tenth:]))
        slope = float(np.polyfit(np.arange(n), self.mean_abs, 1)[0]) if n > 1 else 0.0
        return {"frames": n, "max_abs": float(max(self.max_abs)), "mean_abs": float(np.mean(self.mean_abs)),
                "mean_abs_first_tenth": first, "mean_abs_last_tenth": last, "mean_abs_slope_per_frame": slope,
                "agreement_min": float(min(self.agreement)), "agreement_mean": float(np.mean(self.agreement))}


def measure(cfg: SimConfig, frames: int = 100, seed: int = 2003,
            variants: tuple[str, ...] = VARIANTS) -> dict[str, object]:
    """Run ``frames`` + 1 frames of a synthetic flight through an FP32 pipeline and one per variant; return the
    per-frame drift, a summary per variant and the float16 grid's largest error in cells."""
    classes = load_class_set(cfg.model.dataset)
    model = build_ssp(cfg.model, classes.num_classes).eval()
    reference_backend = TorchBackend(model, cfg.model.input_size, "cpu", cpu_warp=False)
    reference = Pipeline(cfg, reference_backend)
    _record_homographies(reference_backend, reference)
    pipes = {v: Pipeline(cfg, HalfFusionBackend(model, cfg.model.input_size, v)) for v in variants}
    drift = {v: Drift() for v in variants}
    grid_error, fused = 0.0, 0
    stride_size = None
    for frame in SyntheticVideo(dataclasses.replace(cfg.synthetic), frames=frames + 1, seed=seed):
        ref = reference.process(frame.image, frame.stamp)
        state = reference.propagator.state.logits
        stride_size = tuple(state.shape[-2:])
        for variant, pipe in pipes.items():
            result = pipe.process(frame.image, frame.stamp)
            if result.fused != ref.fused:
                raise AssertionError(f"{variant}: frame {frame.index} fused={result.fused}, FP32 {ref.fused}")
            if not ref.fused:
                continue
            delta = (pipe.propagator.state.logits - state).abs()
            drift[variant].max_abs.append(float(delta.max()))
            drift[variant].mean_abs.append(float(delta.mean()))
            drift[variant].agreement.append(float((result.mask == ref.mask).mean()))
        if ref.fused:
            fused += 1
            grid_error = max(grid_error, _grid_error(reference, stride_size))
    return {"frames": frames, "fused": fused, "seed": seed, "input_size": list(cfg.model.input_size),
            "stride_size": list(stride_size or ()), "grid_error_cells": grid_error,
            "summary": {v: d.summary() for v, d in drift.items() if d.mean_abs},
            "per_frame": {v: dataclasses.asdict(d) for v, d in drift.items()}}


def _grid_error(pipeline: Pipeline, stride_size: tuple[int, int]) -> float:
    """|float16 grid − float32 grid| at the last fused frame, in cells of the stride-4 map."""
    h_mat = getattr(pipeline, "_last_to_previous", None)
    if h_mat is None:
        return 0.0
    h, w = stride_size
    exact = homography_grid(torch.as_tensor(h_mat, dtype=torch.float64)[None], h, w)
    half = homography_grid(torch.as_tensor(h_mat, dtype=torch.float16)[None], h, w).double()
    scale = torch.tensor([w / 2.0, h / 2.0], dtype=torch.float64)  # normalised units → cells
    return float(((half - exact).abs() * scale).max())


def _record_homographies(backend: TorchBackend, pipeline: Pipeline) -> None:
    """Make ``pipeline`` remember the last homography its backend fused with (for ``_grid_error``)."""
    fuse = backend.fuse

    def recording(*args: object) -> object:
        pipeline._last_to_previous = np.asarray(args[4], dtype=np.float64)  # noqa: SLF001 - the tool's own note
        return fuse(*args)

    backend.fuse = recording  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100, help="fused frames (default 100)")
    parser.add_argument("--seed", type=int, default=2003, help="synthetic flight (default 2003, held aside)")
    parser.add_argument("--json", help="also write the per-frame figures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    report = measure(load_sim_config(), args.frames, args.seed)
    print(f"{report['fused']} fused frames, model input {report['input_size']}, stride-4 map "
          f"{report['stride_size']}; float16 sampling grid off by up to {report['grid_error_cells']:.3f} cells")
    print("| variant | max abs dlogit | mean abs dlogit | mean, first tenth | mean, last tenth | slope / frame | "
          "mask agreement min | mean |")
    print("|---|---|---|---|---|---|---|---|")
    for variant, s in report["summary"].items():
        print(f"| {variant} | {s['max_abs']:.4f} | {s['mean_abs']:.5f} | {s['mean_abs_first_tenth']:.5f} | "
              f"{s['mean_abs_last_tenth']:.5f} | {s['mean_abs_slope_per_frame']:+.2e} | "
              f"{100 * s['agreement_min']:.2f} % | {100 * s['agreement_mean']:.3f} % |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

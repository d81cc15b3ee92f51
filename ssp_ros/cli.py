"""The ``ssp`` command: one sub-command per job, each a small function over the library."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from ssp_ros.config import SyntheticConfig
from ssp_ros.errors import SspError


def _size(text: str) -> tuple[int, int]:
    """Parse ``HxW`` (e.g. 736x1280)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW like 368x640, got {text!r}") from None
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"height and width must be positive, got {text!r}")
    return h, w


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _scenario(path: Path | None, size: tuple[int, int] | None, default: SyntheticConfig) -> SyntheticConfig:
    """The synthetic scenario from ``--scenario`` (else ``default``), with ``--size`` applied and validated."""
    from ssp_ros.config import SyntheticConfig, config_from_dict, load_section, to_dict

    cfg = load_section(SyntheticConfig, path) if path else default
    if size:
        cfg = config_from_dict(SyntheticConfig, {**to_dict(cfg), "height": size[0], "width": size[1]}, "--size")
    return cfg


def cmd_synth(args: argparse.Namespace) -> int:
    """Generate a synthetic drone sequence (frames, labels, exact flow) into a folder."""
    from tqdm import tqdm

    from ssp_ros.config import SyntheticConfig, to_dict
    from ssp_ros.io import write_sequence
    from ssp_ros.metrics import SequenceMetrics
    from ssp_ros.synthetic import SyntheticVideo
    from ssp_ros.synthetic import labels as L

    cfg = _scenario(args.scenario, args.size, SyntheticConfig())
    start = time.perf_counter()
    video = SyntheticVideo(cfg, frames=args.frames, seed=args.seed)
    world_s = time.perf_counter() - start
    gt = SequenceMetrics(len(L.NAMES), vc_lengths=())

    def frames() -> Iterator:
        for frame in tqdm(video, total=len(video), desc="synth", unit="frame", disable=args.quiet):
            gt.add(frame.labels, frame.labels, frame.flow, frame.valid)
            yield frame

    def metadata() -> dict:
        return {"generator": "ssp_ros.synthetic", "seed": args.seed, "fps": cfg.fps, "dataset": L.DATASET,
                "classes": list(L.NAMES), "scenario": to_dict(cfg),
                "summary": {"gt_label_tc": gt.report()["tc"], "dropped_steps": int(video.steps[-1]) + 1 - len(video),
                            "world_build_s": round(world_s, 2), "total_s": round(time.perf_counter() - start, 2)}}

    out = write_sequence(frames(), args.out, metadata, overwrite=args.overwrite)
    total = time.perf_counter() - start
    report = gt.report()
    print(f"wrote {len(video)} frames of {cfg.height}x{cfg.width} to {out} in {total:.1f} s "
          f"(world {world_s:.1f} s, {len(video) / max(total - world_s, 1e-9):.1f} frames/s)")
    print(f"ground-truth labels through exact flow: TC {report['tc']:.2f}  (sanity check: 100 = perfect)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Image model vs SSP on a synthetic drone sequence (default) or a video: report, overlay, plot."""
    from ssp_ros.config import load_config
    from ssp_ros.demo import file_clip, run_demo, synthetic_clip

    cfg = load_config(args.config)
    if cfg.model.weights is None:
        raise SspError(f"{args.config or 'config/ssp.yaml'}: model.weights is not set: the demo needs trained "
                       "weights (ssp train --config config/train/default.yaml)")
    if args.input is not None:
        report = run_demo(cfg, args.out, lambda: file_clip(args.input, args.frames))
    else:
        scenario = _scenario(args.scenario, args.size, cfg.synthetic)
        report = run_demo(cfg, args.out, lambda: synthetic_clip(scenario, args.frames or 200, args.seed))
    image, ssp = report["models"]["image"], report["models"]["ssp"]

    def show(x: float | None) -> str:
        return "  n/a" if x is None else f"{x:6.2f}"

    print(f"{report['frames']} frames of {report['size'][0]}x{report['size'][1]} from {report['source']}")
    print("model         mIoU     TC  flicker    FPS")
    for label, m in (("image model", image), ("SSP", ssp)):
        print(f"{label:<11} {show(m['miou'])} {show(m['tc'])} {show(m['flicker'])} {show(m['fps'])}")
    print(f"SSP - image model: TC {ssp['tc'] - image['tc']:+.2f} points"
          + (f", mIoU {ssp['miou'] - image['miou']:+.2f} points" if ssp["miou"] is not None else "")
          + f"; fusion adds {100 * ssp['latency_ms'].get('fusion', 0) / image['latency_ms']['total']:.1f} % "
            f"and registration {ssp['latency_ms'].get('registration', 0):.1f} ms per frame")
    print(f"wrote {args.out}/report.md, report.json, overlay.mp4, tc_over_time.png, masks/")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train the image model, then the SSP similarity head, from a recipe (config/train/*.yaml)."""
    from ssp_train.train import main as train_main

    return train_main(args.config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssp", description="Temporally consistent drone segmentation (SSP).")
    sub = parser.add_subparsers(dest="command", required=True)

    synth = sub.add_parser("synth", help="generate a synthetic drone video with labels and exact flow")
    synth.add_argument("--out", type=Path, required=True, help="output folder (must be new or empty)")
    synth.add_argument("--frames", type=_positive, default=300, help="number of frames (default 300)")
    synth.add_argument("--seed", type=int, default=0, help="random seed: same seed, same video (default 0)")
    synth.add_argument("--scenario", type=Path, help="scenario YAML (keys of SyntheticConfig); default built in")
    synth.add_argument("--size", type=_size, help="frame size HxW, overriding the scenario (e.g. 736x1280)")
    synth.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    synth.add_argument("--quiet", action="store_true", help="no progress bar")
    synth.set_defaults(func=cmd_synth)

    demo = sub.add_parser("demo", help="image model vs SSP on a synthetic drone video (default) or your video")
    demo.add_argument("--input", type=Path, help="video file, image folder or `ssp synth` folder (default: "
                      "a held-aside synthetic sequence)")
    demo.add_argument("--out", type=Path, default=Path("out"), help="output folder (default ./out)")
    demo.add_argument("--frames", type=_positive, help="frames to use (default 200 synthetic / all of --input)")
    demo.add_argument("--seed", type=int, default=2000, help="synthetic seed (default 2000: the shipped model was "
                      "trained on seeds 1000-1011 and validated on 999)")
    demo.add_argument("--scenario", type=Path, help="synthetic scenario YAML (default: the config's synthetic)")
    demo.add_argument("--size", type=_size, help="synthetic frame size HxW (e.g. 736x1280)")
    demo.add_argument("--config", type=Path, help="ssp_ros config YAML (default: the shipped config/ssp.yaml)")
    demo.set_defaults(func=cmd_demo)

    train = sub.add_parser("train", help="train the image model and the SSP head on synthetic drone video")
    train.add_argument("--config", type=Path, required=True, help="training recipe, e.g. config/train/default.yaml")
    train.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ssp`` command; errors we can explain exit with status 2 and one line."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SspError as err:
        print(f"ssp {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ssp {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

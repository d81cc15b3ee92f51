"""The ``ssp`` command: one sub-command per job, each a small function over the library."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from ssp_ros.config import SyntheticConfig
from ssp_ros.errors import SspError
from ssp_ros.tensorrt_build import add_build_engine_parser
from ssp_train.ablation import add_ablate_parser
from ssp_train.evaluate import add_eval_parser
from ssp_train.flow_cache import add_flow_cache_parser


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

    if args.bag is not None:
        from ssp_ros.bag import SYNTH_IMAGE_TOPIC, SYNTH_LABELS_TOPIC, write_synthetic_bag

        write_synthetic_bag(frames(), args.bag, overwrite=args.overwrite)
        out = f"{args.bag} ({SYNTH_IMAGE_TOPIC} rgb8, {SYNTH_LABELS_TOPIC} mono8)"
    else:
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


def cmd_replay(args: argparse.Namespace) -> int:
    """Run SSP over an image topic of a ROS 2 bag: results into a new bag, plus a report."""
    from ssp_ros.config import load_config
    from ssp_ros.replay import run_replay

    cfg = load_config(args.config)
    report = run_replay(cfg, args.bag, args.out, topic=args.topic, mode=args.mode, labels=args.labels,
                        report_dir=args.report, overwrite=args.overwrite, progress=not args.quiet)

    def show(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.2f}"

    skipped = ", ".join(f"{reason}: {n}" for reason, n in report["skipped"].items()) or "none"
    resets = ", ".join(f"{reason}: {n}" for reason, n in report["resets"].items()) or "none"
    print(f"{report['messages']} messages on {report['topic']} ({report['mode']}): {report['frames_out']} frames "
          f"out, skipped {skipped}")
    print(f"mIoU {show(report['miou'])}  TC {show(report['tc'])}  flicker {show(report['flicker'])}  "
          f"FPS {show(report['fps']['pipeline'])} pipeline / {show(report['fps']['processing'])} processing; "
          f"resets {resets}")
    print(f"wrote {report['output']} and {report['report_dir']}/report.md, report.json, tc_over_time.png")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export the configured (or --weights) model to the ONNX graphs of the deployment runtimes."""
    import dataclasses

    from ssp_ros.config import load_config
    from ssp_ros.export_info import load_export_info
    from ssp_train.export import export_config

    model_cfg = load_config(args.config).model
    if args.weights is not None:
        model_cfg = dataclasses.replace(model_cfg, weights=str(args.weights))
    if args.size is not None:
        model_cfg = dataclasses.replace(model_cfg, input_size=args.size)
    info = load_export_info(export_config(model_cfg, args.out, dynamic_batch=args.dynamic_batch))
    for graph in info.graphs.values():
        print(f"{graph.file}: {', '.join(f'{k} {v}' for k, v in graph.inputs.items())} -> "
              f"{', '.join(f'{k} {v}' for k, v in graph.outputs.items())}")
    print(f"wrote {args.out}/export.json (opset {info.opset}, {info.num_classes} classes, input "
          f"{info.input_size[0]}x{info.input_size[1]}); use it with runtime.backend: onnxruntime and "
          f"runtime.export_dir: {args.out}, or `ssp build-engine --onnx {args.out} --fp16` on the drone")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Latency per stage, params, GFLOPs and memory of the image model vs SSP, per backend and size."""
    from ssp_ros.bench import BACKENDS, run_bench, write_report
    from ssp_ros.config import load_config

    cfg = load_config(args.config)
    report = run_bench(cfg, args.size or [(368, 640), (736, 1280)], args.backend or list(BACKENDS), args.frames,
                       args.warmup, paper=args.paper)
    json_path, md_path = write_report(report, args.out)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")
    return 0


def cmd_node(args: argparse.Namespace) -> int:
    """Run the segmentation node: on ROS 2 (rclpy, like ``ros2 run ssp_ros ssp_node``) or on plain Cyclone DDS."""
    if args.transport == "rclpy":
        from ssp_ros.node import main as ros_main

        if args.config is not None or args.domain_id is not None:
            raise SspError("--config and --domain-id are for --transport dds; with rclpy use ROS arguments "
                           "(--ros-args -p config_file:=...) and ROS_DOMAIN_ID")
        return ros_main(["ssp_node", *args.ros_args])
    import importlib.util
    import os

    from ssp_ros.transport_dds import run_node

    if importlib.util.find_spec("cyclonedds") is None:
        raise SspError("--transport dds needs the cyclonedds package: pip install 'ssp_ros[dds]'")
    domain = args.domain_id if args.domain_id is not None else int(os.environ.get("ROS_DOMAIN_ID", "0"))
    return run_node(args.config, domain)


def cmd_train(args: argparse.Namespace) -> int:
    """Train the image model, then the SSP similarity head, from a recipe (config/train/*.yaml)."""
    from ssp_train.train import main as train_main

    return train_main(args.config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssp", description="Temporally consistent drone segmentation (SSP).")
    sub = parser.add_subparsers(dest="command", required=True)

    synth = sub.add_parser("synth", help="generate a synthetic drone video with labels and exact flow")
    where = synth.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="output folder (must be new or empty)")
    where.add_argument("--bag", type=Path, help="write a ROS 2 bag instead (mcap; a .db3 name gives sqlite3): "
                       "/camera/image_raw rgb8 and /camera/labels mono8")
    synth.add_argument("--frames", type=_positive, default=300, help="number of frames (default 300)")
    synth.add_argument("--seed", type=int, default=0, help="random seed: same seed, same video (default 0)")
    synth.add_argument("--scenario", type=Path, help="scenario YAML (keys of SyntheticConfig); default built in")
    synth.add_argument("--size", type=_size, help="frame size HxW, overriding the scenario (e.g. 736x1280)")
    synth.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder or bag")
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

    replay = sub.add_parser("replay", help="run SSP over a ROS 2 bag: masks/overlays into a new bag, plus a report")
    replay.add_argument("bag", type=Path, help="input bag: a rosbag2 folder, or a .db3 / .mcap file")
    replay.add_argument("--out", type=Path, required=True, help="output bag (mcap; a .db3 name gives sqlite3)")
    replay.add_argument("--topic", default="/camera/image_raw", help="Image or CompressedImage topic "
                        "(default /camera/image_raw)")
    replay.add_argument("--mode", choices=("deterministic", "realtime"), default="deterministic",
                        help="deterministic: every frame (default); realtime: drop frames the node would drop")
    replay.add_argument("--labels", help="mono8 class-id topic, or a folder of <stamp_ns>.png, for mIoU (default: "
                        "the labels topic beside --topic, e.g. /camera/labels, when the bag has it)")
    replay.add_argument("--report", type=Path, help="report folder (default: <out>_report beside the output bag)")
    replay.add_argument("--config", type=Path, help="ssp_ros config YAML (default: the shipped config/ssp.yaml)")
    replay.add_argument("--overwrite", action="store_true", help="replace an existing output bag")
    replay.add_argument("--quiet", action="store_true", help="no progress bar")
    replay.set_defaults(func=cmd_replay)

    export = sub.add_parser("export", help="export the model to two ONNX graphs (segmenter, fusion) + export.json")
    export.add_argument("--out", type=Path, required=True, help="output folder, e.g. models/ssp_export")
    export.add_argument("--config", type=Path, help="ssp_ros config YAML (default: the shipped config/ssp.yaml)")
    export.add_argument("--weights", type=Path, help="model weights, overriding the config's model.weights")
    export.add_argument("--size", type=_size, help="model input HxW, multiples of 32 (default: model.input_size)")
    export.add_argument("--dynamic-batch", action="store_true", help="dynamic batch dimension (default static 1)")
    export.set_defaults(func=cmd_export)

    bench = sub.add_parser("bench", help="benchmark image model vs SSP per backend and frame size (JSON + MD)")
    bench.add_argument("--out", type=Path, default=Path("bench"), help="output folder (default ./bench)")
    bench.add_argument("--config", type=Path, help="ssp_ros config YAML (default: the shipped config/ssp.yaml)")
    bench.add_argument("--size", type=_size, action="append", help="frame size HxW; repeat for several "
                       "(default 368x640 and 736x1280)")
    bench.add_argument("--backend", choices=("torch", "onnxruntime", "tensorrt"), action="append",
                       help="backend to measure; repeat for several (default: every one installed)")
    bench.add_argument("--frames", type=_positive, default=30, help="timed frames per run (default 30)")
    bench.add_argument("--warmup", type=_positive, default=5, help="untimed frames first (default 5)")
    bench.add_argument("--paper", action="store_true", help="also count params/GFLOPs of the paper's model "
                       "(sam2_hiera_small + UPerNet 256 at 736x1280)")
    bench.set_defaults(func=cmd_bench)

    node = sub.add_parser("node", help="run the segmentation node (ROS 2 via rclpy, or Cyclone DDS without ROS)")
    node.add_argument("--transport", choices=("rclpy", "dds"), default="rclpy", help="rclpy: a ROS 2 node (needs "
                      "a sourced ROS 2); dds: the same topics on Cyclone DDS, no ROS needed (default rclpy)")
    node.add_argument("--config", type=Path, help="dds: ssp_ros config YAML, the node's parameters (default: the "
                      "shipped config/ssp.yaml)")
    node.add_argument("--domain-id", type=int, help="dds: DDS domain = ROS_DOMAIN_ID of the ROS 2 machines "
                      "(default: $ROS_DOMAIN_ID, else 0)")
    node.add_argument("ros_args", nargs=argparse.REMAINDER, help="rclpy: arguments for rclpy.init (--ros-args ...)")
    node.set_defaults(func=cmd_node)

    add_build_engine_parser(sub)
    add_flow_cache_parser(sub)
    add_eval_parser(sub)
    add_ablate_parser(sub)

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

"""``ssp synth``: the synthetic drone video (core: ``ssp_ros.synthetic``) as a folder or a ROS 2 bag."""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from pathlib import Path

from ssp_ros.cli.args import positive, size
from ssp_ros.cli.args import scenario as args_scenario
from ssp_ros.errors import require_package


def cmd_synth(args: argparse.Namespace) -> int:
    """Generate a synthetic drone sequence (frames, labels, exact flow) into a folder."""
    from tqdm import tqdm

    from ssp_ros.eval.metrics import SequenceMetrics
    from ssp_ros.io import write_sequence
    from ssp_ros.schema import to_dict
    from ssp_ros.synthetic import SyntheticVideo
    from ssp_ros.synthetic import labels as L
    from ssp_ros.synthetic.config import SyntheticConfig

    cfg = args_scenario(args.scenario, args.size, SyntheticConfig())
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
        require_package("rosbags", "bag", "ssp synth --bag")
        from ssp_ros.tools.bag import SYNTH_IMAGE_TOPIC, SYNTH_LABELS_TOPIC, write_synthetic_bag

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


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``ssp synth``."""
    synth = sub.add_parser("synth", help="generate a synthetic drone video with labels and exact flow")
    where = synth.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="output folder (must be new or empty)")
    where.add_argument("--bag", type=Path, help="write a ROS 2 bag instead (mcap; a .db3 name gives sqlite3): "
                       "/camera/image_raw rgb8 and /camera/labels mono8")
    synth.add_argument("--frames", type=positive, default=300, help="number of frames (default 300)")
    synth.add_argument("--seed", type=int, default=0, help="random seed: same seed, same video (default 0)")
    synth.add_argument("--scenario", type=Path, help="scenario YAML (keys of SyntheticConfig); default built in")
    synth.add_argument("--size", type=size, help="frame size HxW, overriding the scenario (e.g. 736x1280)")
    synth.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder or bag")
    synth.add_argument("--quiet", action="store_true", help="no progress bar")
    synth.set_defaults(func=cmd_synth)

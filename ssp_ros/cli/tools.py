"""The tools wing on the command line: ``ssp replay`` and ``ssp bench-node``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ssp_ros.cli.args import scenario as args_scenario
from ssp_ros.cli.args import size
from ssp_ros.config import RUNTIMES
from ssp_ros.errors import require_package


def cmd_replay(args: argparse.Namespace) -> int:
    """Run SSP (or the user's segmenter, stabilised) over an image topic of a ROS 2 bag: results into a new bag,
    plus a report."""
    require_package("rosbags", "bag", "ssp replay")
    require_package("matplotlib", "demo", "ssp replay's report")
    from ssp_ros.config import load_config
    from ssp_ros.tools.replay import run_replay

    cfg = load_config(args.config)
    report = run_replay(cfg, args.bag, args.out, topic=args.topic, mode=args.mode, labels=args.labels,
                        report_dir=args.report, overwrite=args.overwrite, progress=not args.quiet,
                        segmenter=args.segmenter)

    def show(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.2f}"

    skipped = ", ".join(f"{reason}: {n}" for reason, n in report["skipped"].items()) or "none"
    resets = ", ".join(f"{reason}: {n}" for reason, n in report["resets"].items()) or "none"
    print(f"{report['messages']} messages on {report['topic']} ({report['mode']}): {report['frames_out']} frames "
          f"out, skipped {skipped}")
    if "trained_on_line" in report:
        print(report["trained_on_line"])
    before, label = ((report["input_segmenter"], "input segmenter") if report["input_segmenter"] is not None
                     else (report["image_model"], "image model"))
    print(f"{label}: mIoU {show(before['miou'])}  TC {show(before['tc'])}  change rate "
          f"{show(before['change_rate'])}; {'stabilised' if label == 'input segmenter' else 'SSP'}:")
    print(f"mIoU {show(report['miou'])}  TC {show(report['tc'])}  flicker {show(report['flicker'])}  change rate "
          f"{show(report['change_rate'])}  FPS {show(report['fps']['pipeline'])} pipeline / "
          f"{show(report['fps']['processing'])} processing; resets after the start {resets}")
    if not report["labelled_frames"]:
        print("no labels: TC and change rate say how steady the masks are, not whether they are right; see the "
              "class shares in report.md")
    print(f"wrote {report['output']} and {report['report_dir']}/report.md, report.json, tc_over_time.png")
    return 0


def cmd_bench_node(args: argparse.Namespace) -> int:
    """Measure the node process from outside: camera-stamp -> mask latency, throughput and RSS, per transport and
    frame size (plus optional overload runs); JSON + Markdown. Exit status 1 when a run failed."""
    if args.delivery:
        return bench_delivery(args)
    from ssp_ros.synthetic.config import load_sim_config
    from ssp_ros.tools.node_bench.matrix import run_node_bench
    from ssp_ros.tools.node_bench.plan import DEFAULT_SIZES, TRANSPORTS, plan_runs
    from ssp_ros.tools.node_bench.report import write_report

    cfg = load_sim_config(args.config)
    plans = plan_runs(args.transport or TRANSPORTS, args.size or DEFAULT_SIZES, args.rate, args.duration,
                      args.warmup, args.overload_rate, args.overload_duration, args.overload_size)
    report = run_node_bench(cfg, plans, backend=args.backend, export_dirs=args.export_dir or (),
                            warmup_s=args.warmup, input_size=args.input_size, threads=args.threads,
                            domain=args.domain_id, scenario=args_scenario(args.scenario, None, cfg.synthetic),
                            seed=args.seed, rss_limit_mb=args.rss_limit_mb, reliable=args.reliable or None,
                            progress=print)
    json_path, md_path = write_report(report, args.out)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")
    return 1 if any("error" in run for run in report["runs"]) else 0


def bench_delivery(args: argparse.Namespace) -> int:
    """``ssp bench-node --delivery``: best-effort frames from an rclpy publisher process to an rclpy subscriber
    process on Fast DDS, without and with the Fast DDS profile; JSON + Markdown."""
    import tempfile

    from ssp_ros.resources import share_dir
    from ssp_ros.tools.node_bench.delivery import markdown, run_delivery_bench
    from ssp_ros.tools.node_bench.node_process import default_domain
    from ssp_ros.tools.node_bench.report import write_report

    profile = args.fastdds_profile or share_dir() / "config" / "fastdds.xml"
    with tempfile.TemporaryDirectory(prefix="ssp-delivery-") as logs:
        report = run_delivery_bench(profile.resolve(), args.size or [(720, 1280)], args.rate, args.duration,
                                    default_domain() if args.domain_id is None else args.domain_id, Path(logs),
                                    progress=print)
    json_path, md_path = write_report(report, args.out, markdown)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``ssp replay`` and ``ssp bench-node``."""
    replay = sub.add_parser("replay", help="run SSP over a ROS 2 bag: masks/overlays into a new bag, plus a report")
    replay.add_argument("bag", type=Path, help="input bag: a rosbag2 folder, or a .db3 / .mcap file")
    replay.add_argument("--out", type=Path, required=True, help="output bag (mcap; a .db3 name gives sqlite3)")
    replay.add_argument("--topic", default="/camera/image_raw", help="Image or CompressedImage topic "
                        "(default /camera/image_raw)")
    replay.add_argument("--mode", choices=("deterministic", "realtime"), default="deterministic",
                        help="deterministic: every frame (default); realtime: drop frames the node would drop")
    replay.add_argument("--labels", help="mono8 class-id topic, or a folder of <stamp_ns>.png, for mIoU (default: "
                        "the labels topic beside --topic, e.g. /camera/labels, when the bag has it)")
    replay.add_argument("--segmenter", type=Path, help="YAML of your ONNX segmenter (as for `ssp stabilise "
                        "--segmenter`): run it and stabilise its output instead of our model (/ssp/mask and "
                        "/ssp/overlay only)")
    replay.add_argument("--report", type=Path, help="report folder (default: <out>_report beside the output bag)")
    replay.add_argument("--config", type=Path, help="ssp_ros config YAML (default: the shipped config/ssp.yaml)")
    replay.add_argument("--overwrite", action="store_true", help="replace an existing output bag")
    replay.add_argument("--quiet", action="store_true", help="no progress bar")
    replay.set_defaults(func=cmd_replay)


    bench = sub.add_parser("bench-node", help="benchmark the running node: camera-stamp -> mask latency, throughput "
                           "and RSS per transport and frame size, as JSON (+ Markdown)")
    bench.add_argument("--out", type=Path, default=Path("node_bench.json"), help="JSON report; a .md table is "
                       "written beside it (default ./node_bench.json)")
    bench.add_argument("--transport", choices=("rclpy", "dds"), action="append", help="rclpy: ssp_node on Fast "
                       "DDS; dds: ssp node --transport dds on Cyclone DDS; repeat for both (default both)")
    bench.add_argument("--size", type=size, action="append", help="camera frame size HxW; repeat for several "
                       "(default 368x640 and 736x1280)")
    bench.add_argument("--backend", choices=RUNTIMES, default="onnxruntime", help="the node's runtime.backend "
                       "(default onnxruntime)")
    bench.add_argument("--export-dir", type=Path, action="append", help="an `ssp export` folder; repeat, one per "
                       "model input size (default: export the configured model once per size into a temp folder)")
    bench.add_argument("--input-size", type=size, help="model input HxW for every frame size (default: the frame "
                       "size rounded up to a multiple of 32)")
    bench.add_argument("--rate", type=float, default=30.0, help="camera frames per second (default 30)")
    bench.add_argument("--duration", type=float, default=60.0, help="seconds of streaming per run, warm-up "
                       "included (default 60)")
    bench.add_argument("--warmup", type=float, default=10.0, help="first seconds of each run left out of latency, "
                       "throughput and RSS drift (default 10)")
    bench.add_argument("--overload-duration", type=float, default=0.0, help="also an overload run per transport of "
                       "this many seconds (e.g. 300); 0: none (default)")
    bench.add_argument("--overload-rate", type=float, default=60.0, help="camera rate of the overload runs; above "
                       "what the node keeps up with (default 60)")
    bench.add_argument("--overload-size", type=size, help="frame size of the overload runs (default: the largest "
                       "--size)")
    bench.add_argument("--rss-limit-mb", type=float, default=25.0, help="RSS drift after the warm-up that still "
                       "counts as flat, MiB (default 25)")
    bench.add_argument("--reliable", action="store_true", help="node.reliable: true and a reliable camera (default: "
                       "the config's node.reliable; best effort loses large frames on loopback, see the report's "
                       "not_received_by_node)")
    bench.add_argument("--threads", type=int, help="the node's runtime.threads (onnxruntime; default: the config's)")
    bench.add_argument("--domain-id", type=int, help="private DDS domain for the node and the camera (default: "
                       "1-9 from the process id)")
    bench.add_argument("--scenario", type=Path, help="synthetic scenario YAML (default: the config's synthetic)")
    bench.add_argument("--seed", type=int, default=2000, help="synthetic seed (default 2000)")
    bench.add_argument("--delivery", action="store_true", help="instead of the node: the share of best-effort "
                       "rgb8 frames (--size, default 720x1280; --rate; --duration) an rclpy publisher process "
                       "delivers to an rclpy subscriber process on Fast DDS, without and with --fastdds-profile")
    bench.add_argument("--fastdds-profile", type=Path, help="--delivery: the Fast DDS XML profile (default: the "
                       "shipped config/fastdds.xml)")
    bench.add_argument("--config", type=Path, help="base config YAML for the node (default: the shipped "
                       "config/ssp.yaml); model input, backend, export folder and input topic are set by the bench")
    bench.set_defaults(func=cmd_bench_node)

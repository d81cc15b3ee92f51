"""The ROS wing on the command line: ``ssp node``, ``ssp replay`` and ``ssp params``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ssp_ros.errors import SspError


def cmd_replay(args: argparse.Namespace) -> int:
    """Run SSP over an image topic of a ROS 2 bag: results into a new bag, plus a report."""
    from ssp_ros.config import load_config
    from ssp_ros.ros.replay import run_replay

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


def cmd_node(args: argparse.Namespace) -> int:
    """Run the segmentation node: on ROS 2 (rclpy, like ``ros2 run ssp_ros ssp_node``) or on plain Cyclone DDS."""
    if args.transport == "rclpy":
        from ssp_ros.ros.main import main as ros_main

        if args.config is not None or args.domain_id is not None:
            raise SspError("--config and --domain-id are for --transport dds; with rclpy use ROS arguments "
                           "(--ros-args -p config_file:=...) and ROS_DOMAIN_ID")
        return ros_main(["ssp_node", *args.ros_args])
    import importlib.util
    import os

    from ssp_ros.ros.main import run_dds_node

    if importlib.util.find_spec("cyclonedds") is None:
        raise SspError("--transport dds needs the cyclonedds package: pip install 'ssp_ros[dds]'")
    domain = args.domain_id if args.domain_id is not None else int(os.environ.get("ROS_DOMAIN_ID", "0"))
    return run_dds_node(args.config, domain)


def cmd_params(args: argparse.Namespace) -> int:
    """Print the node's ROS parameters (defaults from ``--config``) as a Markdown table."""
    from ssp_ros.config import load_config
    from ssp_ros.ros.params import markdown_table

    print(markdown_table(load_config(args.config) if args.config else None))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``ssp node``, ``ssp replay`` and ``ssp params``."""
    node = sub.add_parser("node", help="run the segmentation node (ROS 2 via rclpy, or Cyclone DDS without ROS)")
    node.add_argument("--transport", choices=("rclpy", "dds"), default="rclpy", help="rclpy: a ROS 2 node (needs "
                      "a sourced ROS 2); dds: the same topics on Cyclone DDS, no ROS needed (default rclpy)")
    node.add_argument("--config", type=Path, help="dds: ssp_ros config YAML, the node's parameters (default: the "
                      "shipped config/ssp.yaml)")
    node.add_argument("--domain-id", type=int, help="dds: DDS domain = ROS_DOMAIN_ID of the ROS 2 machines "
                      "(default: $ROS_DOMAIN_ID, else 0)")
    node.add_argument("ros_args", nargs=argparse.REMAINDER, help="rclpy: arguments for rclpy.init (--ros-args ...)")
    node.set_defaults(func=cmd_node)

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

    params = sub.add_parser("params", help="list the node's ROS parameters: default, allowed values, whether they "
                            "change in flight, description")
    params.add_argument("--config", type=Path, help="take the defaults from this config YAML (default: the schema's)")
    params.set_defaults(func=cmd_params)

"""The ROS wing on the command line: ``ssp node`` and ``ssp params``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ssp_ros.errors import SspError, require_package


def cmd_node(args: argparse.Namespace) -> int:
    """Run the segmentation node: on ROS 2 (rclpy, like ``ros2 run ssp_ros ssp_node``) or on plain Cyclone DDS."""
    if args.transport == "rclpy":
        from ssp_ros.ros.main import main as ros_main

        if args.config is not None or args.domain_id is not None:
            raise SspError("--config and --domain-id are for --transport dds; with rclpy use ROS arguments "
                           "(--ros-args -p config_file:=...) and ROS_DOMAIN_ID")
        return ros_main(["ssp_node", *args.ros_args])
    import os

    from ssp_ros.ros.main import exit_now, run_dds_node
    from ssp_ros.ros.security import check_dds

    for module in ("cyclonedds", "rosbags"):  # rosbags: the messages' CDR
        require_package(module, "dds", "ssp node --transport dds")
    refused = check_dds()  # SROS2's variables: the cyclonedds wheel cannot secure the node
    if refused is not None:
        raise SspError(refused)
    domain = args.domain_id if args.domain_id is not None else int(os.environ.get("ROS_DOMAIN_ID", "0"))
    exit_now(run_dds_node(args.config, domain))  # the node has closed everything: skip the interpreter's teardown


def cmd_params(args: argparse.Namespace) -> int:
    """Print the node's ROS parameters (defaults from ``--config``) as a Markdown table, then the detectors this
    machine's OpenCV has (the table's choices are the schema's, the same everywhere)."""
    import cv2

    from ssp_ros.config import available_detectors, load_config
    from ssp_ros.ros.params import markdown_table

    print(markdown_table(load_config(args.config) if args.config else None))
    print(f"\nregistration.detector: this OpenCV ({cv2.__version__}) has {', '.join(available_detectors())}.")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``ssp node`` and ``ssp params``."""
    node = sub.add_parser("node", help="run the segmentation node (ROS 2 via rclpy, or Cyclone DDS without ROS)")
    node.add_argument("--transport", choices=("rclpy", "dds"), default="rclpy", help="rclpy: a ROS 2 node (needs "
                      "rclpy: a sourced ROS 2, or the ros extra's PyPI wheels); dds: the same topics on Cyclone DDS "
                      "without ROS (needs the dds extra); default rclpy")
    node.add_argument("--config", type=Path, help="dds: ssp_ros config YAML, the node's parameters (default: the "
                      "shipped config/ssp.yaml)")
    node.add_argument("--domain-id", type=int, help="dds: DDS domain = ROS_DOMAIN_ID of the ROS 2 machines "
                      "(default: $ROS_DOMAIN_ID, else 0)")
    node.add_argument("ros_args", nargs=argparse.REMAINDER, help="rclpy: arguments for rclpy.init (--ros-args ...)")
    node.set_defaults(func=cmd_node)

    params = sub.add_parser("params", help="list the node's ROS parameters: default, allowed values, whether they "
                            "change in flight, description")
    params.add_argument("--config", type=Path, help="take the defaults from this config YAML (default: the schema's)")
    params.set_defaults(func=cmd_params)

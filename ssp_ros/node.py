"""`ssp_node`: the ROS 2 node entry point, a thin rclpy adapter over the ROS-free pipeline.

rclpy is imported inside ``main`` so that the package (and its tests) import on machines without ROS.
"""

from __future__ import annotations

import sys


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run ssp_ros ssp_node``."""
    try:
        import rclpy  # noqa: F401 - availability check; the node body uses it
    except ImportError:
        print("ssp_node: rclpy is not importable: source a ROS 2 installation (e.g. /opt/ros/humble/setup.bash) "
              "before running the node; `ssp demo` runs without ROS.", file=sys.stderr)
        return 1
    print("ssp_node: the segmentation node is not part of this release yet (see the ROS 2 node issue); "
          "use `ssp synth` for now.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

"""Entry points of the segmentation node: ``ssp_node`` (``ros2 run ssp_ros ssp_node``, rclpy; ``--lifecycle``
for the managed node of ``lifecycle``) and ``ssp node --transport dds`` (Cyclone DDS, no ROS). Each builds a
transport, the ``SegmentationNode`` on it, and runs until Ctrl-C or an external shutdown (SIGTERM on DDS).

rclpy and cyclonedds are imported inside the functions (and the transport modules), so this module imports
without them.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from ssp_ros.config import load_config
from ssp_ros.errors import SspError
from ssp_ros.ros import security
from ssp_ros.ros.node import NODE_NAME, SegmentationNode
from ssp_ros.ros.rclpy_transport import RclpyTransport, add_ros_interfaces, cv_bridge_fallback, declare_parameters

LOG = logging.getLogger("ssp.node")
WORKER_CHECK_S = 0.5  # how often the main thread checks that the worker is still running


def _exit_status(failure: BaseException | None) -> int:
    """0 after a clean stop; 1 when the worker died (``failure``), so that ``respawn`` in a launch file restarts
    the node."""
    if failure is not None:
        print(f"ssp_node: error: the worker stopped ({failure!r}); exiting", file=sys.stderr)
        return 1
    return 0


def _node_arguments(args: list[str]) -> argparse.Namespace:
    """``ssp_node``'s own arguments (those outside ``--ros-args ... --``)."""
    from rclpy.utilities import remove_ros_args

    parser = argparse.ArgumentParser(prog="ssp_node", description="the SSP segmentation node")
    parser.add_argument("--lifecycle", action="store_true", help="a managed node: starts unconfigured; configure "
                        "loads the model, activate subscribes (ros2 lifecycle set /ssp configure)")
    return parser.parse_args(remove_ros_args(args)[1:])


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run ssp_ros ssp_node``: spins until Ctrl-C or an external shutdown."""
    try:
        import rclpy
        from rclpy.executors import ExternalShutdownException
    except ImportError as err:
        print(f"ssp_node: rclpy is not importable: source a ROS 2 installation (e.g. /opt/ros/humble/setup.bash; a "
              "venv needs --system-site-packages), or install ROS 2 Jazzy's rclpy as PyPI wheels with the ros extra "
              "(`pip install -e '.[ros]'` in this repository); without ROS, the dds extra (`pip install -e "
              f"'.[dds]'`) runs the same node with `ssp node --transport dds` ({err})", file=sys.stderr)
        return 1
    args = sys.argv if args is None else args
    options = _node_arguments(args)
    refused = security.check(args)  # SROS2: what rcl would refuse, or a warning where it would run unsecured
    if refused is not None:
        print(f"ssp_node: error: {refused}", file=sys.stderr)
        return 2
    rclpy.init(args=args)
    ros_node = segmenter = None
    try:
        if options.lifecycle:
            from ssp_ros.ros.lifecycle import LifecycleSegmentationNode

            ros_node = segmenter = LifecycleSegmentationNode()  # ``failure`` tells whether its worker died
        else:
            ros_node = rclpy.create_node(NODE_NAME)
            segmenter = SegmentationNode(RclpyTransport(ros_node), declare_parameters(ros_node),
                                         fallback=cv_bridge_fallback())
            add_ros_interfaces(ros_node, segmenter.processor, segmenter.classes)
        while rclpy.ok() and segmenter.failure is None:  # SIGINT and SIGTERM shut the context down
            rclpy.spin_once(ros_node, timeout_sec=WORKER_CHECK_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except SspError as err:
        print(f"ssp_node: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - re-raised unless the context was shut down under us
        refused = security.refusal(err, args) if rclpy.ok() else None
        if refused is not None:  # the rmw cannot make the secured participant SROS2 asks for
            print(f"ssp_node: error: {refused}", file=sys.stderr)
            return 2
        if rclpy.ok():
            raise
        # SIGINT or SIGTERM during start-up (loading the model): creating interfaces on the shut-down context
        # fails; that is a requested stop, not an error
    finally:
        failure = None if segmenter is None else segmenter.failure
        if segmenter is not None:
            segmenter.close()
        if ros_node is not None:
            ros_node.destroy_node()
        rclpy.try_shutdown()
    return _exit_status(failure)


def run_dds_node(config: Path | None, domain_id: int) -> int:
    """``ssp node --transport dds``: run the node on Cyclone DDS until SIGINT or SIGTERM; 0 on a clean stop."""
    from ssp_ros.ros.dds_transport import DdsTransport

    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] [%(asctime)s] [ssp]: %(message)s")
    cfg = load_config(config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # Ctrl-C and `ros2 launch` stop the node with SIGINT, as they stop rclpy's, even where the node was started
    # with SIGINT ignored (a background job of a non-interactive shell inherits that, and Python then keeps it)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    transport = DdsTransport(domain_id, NODE_NAME)
    segmenter = None
    try:
        segmenter = SegmentationNode(transport, cfg)
        LOG.info("DDS domain %d; outputs on %s", domain_id,
                 ", ".join(f"rt{transport.resolve(f'~/{name}')}" for name in segmenter.publishers))
        while segmenter.alive and not stop.wait(WORKER_CHECK_S):  # timed, so SIGINT's KeyboardInterrupt lands
            pass
    except KeyboardInterrupt:
        pass
    finally:
        if segmenter is not None:
            segmenter.close()
        transport.close()
    LOG.info("stopped")
    return _exit_status(None if segmenter is None else segmenter.failure)


if __name__ == "__main__":
    sys.exit(main())

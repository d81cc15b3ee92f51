"""Entry points of the segmentation node: ``ssp_node`` (``ros2 run ssp_ros ssp_node``, rclpy; ``--lifecycle``
for the managed node of ``lifecycle``) and ``ssp node --transport dds`` (Cyclone DDS, no ROS). Each builds a
transport, the node of ``node.mode`` on it (``stabilise_node.make_node``), and runs until Ctrl-C or an external
shutdown (SIGTERM on DDS).

rclpy and cyclonedds are imported inside the functions (and the transport modules), so this module imports
without them.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from ssp_ros.config import load_config
from ssp_ros.errors import SspError
from ssp_ros.ros import security
from ssp_ros.ros.node import NODE_NAME
from ssp_ros.ros.rclpy_transport import RclpyTransport, add_ros_interfaces, cv_bridge_fallback, declare_parameters
from ssp_ros.ros.stabilise_node import make_node

LOG = logging.getLogger("ssp.node")
WORKER_CHECK_S = 0.5  # how often the main thread checks that the worker is still running
STOP_GRACE_S = 2.0  # after SIGINT/SIGTERM, how long the node's own stop may take before the process exits anyway
SIGNAL_CHECK_S = 0.1  # how often the main thread looks for a shutdown (rclpy's SIGTERM handler only flags it)


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


def ros_arguments_problem(args: list[str], err: Exception) -> str:
    """One line saying why rcl refused the command line: a ``--params-file`` that does not exist is named; else
    rcl's own message, without the C source locations it appends."""
    for flag, value in zip(args, args[1:]):
        if flag == "--params-file" and not Path(value).is_file():
            return f"--params-file {value}: no such file"
    text = str(err).replace("Failed to parse ROS arguments: ", "")
    return re.sub(r", at /\S+:\d+", "", text).strip()


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run ssp_ros ssp_node``: runs until Ctrl-C (SIGINT), SIGTERM or an external shutdown.

    The node (model loading included) runs in its own thread and this one only waits, so that a signal is acted
    on at any moment: SIGINT and SIGTERM shut rclpy's context down and the node's thread stops and closes
    everything. A node still starting up (loading the model) is not waited for, and one that has not closed
    within ``STOP_GRACE_S`` (a frame in a long GPU call) is abandoned: the process is exiting anyway."""
    try:
        import rclpy
    except ImportError as err:
        print(f"ssp_node: rclpy is not importable: source a ROS 2 installation (e.g. /opt/ros/humble/setup.bash; a "
              "venv needs --system-site-packages), or install ROS 2 Jazzy's rclpy as PyPI wheels with the ros extra "
              "(`pip install -e '.[ros]'` in this repository); without ROS, the dds extra (`pip install -e "
              f"'.[dds]'`) runs the same node with `ssp node --transport dds` ({err})", file=sys.stderr)
        return 1
    args = sys.argv if args is None else args
    try:
        options = _node_arguments(args)
        refused = security.check(args)  # SROS2: what rcl would refuse, or a warning where it would run unsecured
        if refused is None:
            rclpy.init(args=args)
    except Exception as err:  # noqa: BLE001 - rcl's RCLInvalidROSArgsError and kin: a bad command line, one line
        print(f"ssp_node: error: {ros_arguments_problem(args, err)}", file=sys.stderr)
        return 2
    if refused is not None:
        print(f"ssp_node: error: {refused}", file=sys.stderr)
        return 2
    node = _NodeThread(options.lifecycle, args)
    signalled = False
    try:
        node.start()  # inside the try: a Ctrl-C as soon as the node is in the graph may land before the loop
        while not node.done.is_set() and rclpy.ok():  # Event.wait, not Thread.join: a Ctrl-C inside join()
            node.done.wait(SIGNAL_CHECK_S)             # leaves Python 3.11's thread state wrong
    except KeyboardInterrupt:
        signalled = True
    stop_requested = signalled or not rclpy.ok()
    if stop_requested:
        # SIGINT or SIGTERM: rclpy's handler shuts the context down from its own thread, which wakes the node
        # thread's spin. A shutdown from here at the same time races it inside rcl, so it is only the fallback.
        if not _wait_until(lambda: not rclpy.ok(), STOP_GRACE_S):
            _shutdown(rclpy)
    failed_alone = node.done.is_set() and node.status != 0  # its own error, whatever signal came after it
    if stop_requested and not node.built.is_set() and not failed_alone:
        # still loading the model (not waited for), or its build already failed on the shut-down context
        print("ssp_node: stopped during start-up", file=sys.stderr)
        return 0
    if not _wait_until(node.done.is_set, STOP_GRACE_S):
        print(f"ssp_node: the node did not stop within {STOP_GRACE_S:g} s (a frame in flight?); exiting without it",
              file=sys.stderr)
        return 0
    _shutdown(rclpy)  # the node closed itself (its worker died, or an error): the context goes too
    return node.status


def _wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    """Poll ``condition`` until it holds or ``timeout_s`` passes (its value then); a second Ctrl-C ends the wait."""
    deadline = time.monotonic() + timeout_s
    try:
        while not condition() and time.monotonic() < deadline:
            time.sleep(SIGNAL_CHECK_S / 10)
    except KeyboardInterrupt:
        pass
    return condition()


def _shutdown(rclpy: Any) -> None:
    """Shut rclpy's default context down unless that is done already. rclpy's signal handler shuts it down from
    its own thread, so the ``ok()`` check inside ``try_shutdown`` can pass just before the context goes, and rcl
    then raises that shutdown was already called: not an error."""
    try:
        rclpy.try_shutdown()
    except Exception:  # noqa: BLE001 - RCLError lives in rclpy's private binding module; re-raised if not that race
        if rclpy.ok():
            raise


class _NodeThread(threading.Thread):
    """The node's thread: builds the node (``lifecycle``: the managed one), spins it until the context is shut
    down or its worker dies, and closes it. ``built`` is set once the node is built (never, when a signal or an
    error ended its start-up), ``done`` once it is closed, with the exit status in ``status`` (1 after an
    unexpected error, whose traceback it prints)."""

    def __init__(self, lifecycle: bool, args: list[str]) -> None:
        super().__init__(name="ssp_node", daemon=True)  # daemon: abandoned if it cannot stop in time
        self.lifecycle, self.args = lifecycle, args
        self.built, self.done = threading.Event(), threading.Event()
        self.status = 1

    def run(self) -> None:
        import rclpy
        from rclpy.executors import ExternalShutdownException

        ros_node = segmenter = None
        code: int | None = None  # set where the outcome is not the worker's
        try:
            if self.lifecycle:
                from ssp_ros.ros.lifecycle import LifecycleSegmentationNode

                ros_node = segmenter = LifecycleSegmentationNode()  # ``failure`` tells whether its worker died
            else:
                ros_node = rclpy.create_node(NODE_NAME)
                segmenter = make_node(RclpyTransport(ros_node), declare_parameters(ros_node),
                                      fallback=cv_bridge_fallback())
                add_ros_interfaces(ros_node, segmenter.processor, segmenter.classes)
            self.built.set()
            while rclpy.ok() and segmenter.failure is None:
                rclpy.spin_once(ros_node, timeout_sec=WORKER_CHECK_S)
        except ExternalShutdownException:
            pass
        except SspError as err:
            print(f"ssp_node: error: {err}", file=sys.stderr)
            code = 2
        except Exception as err:  # noqa: BLE001 - printed unless the context was shut down under us
            refused = security.refusal(err, self.args) if rclpy.ok() else None
            if refused is not None:  # the rmw cannot make the secured participant SROS2 asks for
                print(f"ssp_node: error: {refused}", file=sys.stderr)
                code = 2
            elif rclpy.ok():
                # printed here, not re-raised for threading's hook: main exits as soon as ``done`` is set, which
                # could be before the hook had written the traceback
                print("ssp_node: error: the node stopped on an unexpected error", file=sys.stderr)
                traceback.print_exc()
                code = 1
            # SIGINT or SIGTERM during start-up (loading the model): creating interfaces on the shut-down context
            # fails; that is a requested stop, not an error
        finally:
            failure = None if segmenter is None else segmenter.failure
            if segmenter is not None:
                segmenter.close()
            if ros_node is not None:
                ros_node.destroy_node()
            self.status = _exit_status(failure) if code is None else code
            self.done.set()


def entry() -> None:
    """The ``ssp_node`` console script: ``main``, then the process exits at once. The node has released what it
    holds (publishers, threads, the backend's memory) before ``main`` returns; the interpreter's own teardown
    afterwards (unloading torch's modules) takes 1–4 s of CPU on a loaded machine and has nothing of ours left
    to free, so it is skipped: a stop requested at any moment ends within ``STOP_GRACE_S`` and a little."""
    try:
        code = main()
    except KeyboardInterrupt:  # Ctrl-C before rclpy's handlers were installed: a requested stop too
        code = 0
    exit_now(code)


def exit_now(code: int) -> NoReturn:
    """End the process with ``code`` once stdout and stderr are flushed, without the interpreter's teardown:
    for a node that has already released what it holds (see ``entry``)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_dds_node(config: Path | None, domain_id: int) -> int:
    """``ssp node --transport dds``: run the node on Cyclone DDS until SIGINT or SIGTERM; 0 on a clean stop."""
    from ssp_ros.ros.dds_transport import DdsTransport

    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] [%(asctime)s] [ssp]: %(message)s")
    cfg = load_config(config)
    # SIGTERM stops the node as Ctrl-C does, by raising KeyboardInterrupt in this thread: at any moment, model
    # loading included. SIGINT gets its default handler back even where the node was started with it ignored (a
    # background job of a non-interactive shell inherits that, and Python then keeps it).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    transport = DdsTransport(domain_id, NODE_NAME)
    segmenter = None
    try:
        LOG.info("DDS domain %d; loading the model (%s backend)", domain_id, cfg.runtime.backend)
        segmenter = make_node(transport, cfg)
        LOG.info("ready; outputs on %s",
                 ", ".join(f"rt{transport.resolve(f'~/{name}')}" for name in segmenter.publishers))
        while segmenter.alive:
            time.sleep(WORKER_CHECK_S)  # a signal's KeyboardInterrupt lands here
    except KeyboardInterrupt:
        pass
    finally:
        if segmenter is not None:
            segmenter.close()
        transport.close()
    LOG.info("stopped")
    return _exit_status(None if segmenter is None else segmenter.failure)


if __name__ == "__main__":
    entry()

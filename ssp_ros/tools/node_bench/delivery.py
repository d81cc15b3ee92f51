"""``ssp bench-node --delivery``: the share of best-effort camera frames Fast DDS delivers from one process to another
on the same host, with and without a Fast DDS XML profile (``config/fastdds.xml``).

No node, no model: a plain rclpy publisher (a camera: rgb8 frames at a fixed rate, best effort) and a plain rclpy
subscriber, each in its own process started by ``measure`` with this module's ``main``. Processes, because Fast DDS
reads its XML profile once per process. Both run on loopback (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``) in a
private ``ROS_DOMAIN_ID``, with ``SKIP_DEFAULT_XML_FILE=1`` so that no ``DEFAULT_FASTRTPS_PROFILES.xml`` in the
working folder takes part.

What is counted: the frames published once both sides matched each other (each prints ``matched``; the publisher
starts on ``go``), each numbered in ``header.frame_id``. The publisher paces itself (a late frame shifts the ones
after it, never a burst) and reports each frame it sent; after the last counted frame it goes on with uncounted
trailer frames until one reaches the subscriber (best effort delivers in order, so every counted frame has arrived
or is lost by then) or ``TRAILER_S`` of them went out. Closing a child's stdin ends it. The subscriber keeps
``depth`` frames, a second at the default rate, so that a late turn of its own executor is not counted as the
middleware's loss.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from ssp_ros.errors import SspError
from ssp_ros.ros.fastdds import PROFILE_ENV
from ssp_ros.tools.node_bench.report import machine_info

TOPIC = "/ssp_delivery/image_raw"
START_TIMEOUT_S = 120.0  # process start to both sides matched: imports and discovery, on a loaded machine
STALL_S = 60.0  # a child that prints nothing for this long while it should is stuck
TRAILER_S = 2.0  # after the counted frames: trailer frames for at most this long, until one arrives
STOP_TIMEOUT_S = 30.0
XML_ERROR = "XMLPARSER"  # the category of Fast DDS's log lines (on stdout) about a profile it could not read


def profile_env(profile: Path | None) -> dict[str, str | None]:
    """The variables that make Fast DDS 2.x and 3.x load ``profile`` (None: unset them)."""
    return {name: None if profile is None else str(profile) for name in PROFILE_ENV}


def child_env(domain: int, profile: Path | None) -> dict[str, str]:
    """This process's environment for a child on rmw_fastrtps_cpp in ``domain`` on loopback, with ``profile``."""
    settings = {"ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_LOCALHOST_ONLY": None,
                "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp", "SKIP_DEFAULT_XML_FILE": "1", "PYTHONUNBUFFERED": "1",
                **profile_env(profile)}
    env = {k: v for k, v in os.environ.items() if k not in settings}
    env.update({k: v for k, v in settings.items() if v is not None})
    return env


# --- the two processes --------------------------------------------------------------------------------------------

def _qos(depth: int) -> Any:
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.VOLATILE)


def _say(line: str) -> None:
    print(line, flush=True)


def _stdin_lines() -> tuple[list[str], threading.Event]:
    """The lines the parent writes to stdin, collected by a thread; the event is set when stdin closes."""
    lines: list[str] = []
    closed = threading.Event()

    def read() -> None:
        for line in sys.stdin:
            lines.append(line.strip())
        closed.set()

    threading.Thread(target=read, daemon=True).start()
    return lines, closed


def run_subscriber(depth: int) -> None:
    """Print ``matched`` once a publisher is matched, then ``frame <n>`` per frame received; until stdin closes."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    _, closed = _stdin_lines()
    rclpy.init()
    node = rclpy.create_node("ssp_delivery_subscriber")
    subscription = node.create_subscription(Image, TOPIC, lambda msg: _say(f"frame {msg.header.frame_id}"),
                                            _qos(depth))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    matched = False
    while not closed.is_set():
        if not matched and subscription.get_publisher_count():
            matched = True
            _say("matched")
        executor.spin_once(timeout_sec=0.1)
    rclpy.try_shutdown()


def run_publisher(frames: int, rate_hz: float, height: int, width: int, depth: int) -> None:
    """Print ``matched`` once a subscriber is matched; on ``go`` publish ``frames`` numbered rgb8 frames at
    ``rate_hz`` (``sent <n> <monotonic s>`` each), then trailer frames until stdin closes or for ``TRAILER_S``;
    print ``end``."""
    import array

    import rclpy
    from sensor_msgs.msg import Image

    lines, closed = _stdin_lines()
    rclpy.init()
    node = rclpy.create_node("ssp_delivery_camera")
    publisher = node.create_publisher(Image, TOPIC, _qos(depth))
    msg = Image(height=height, width=width, encoding="rgb8", step=width * 3,
                data=array.array("B", bytes(height * width * 3)))
    msg.header.frame_id = "camera_optical"
    while not publisher.get_subscription_count():
        if closed.is_set():
            return
        time.sleep(0.05)
    _say("matched")
    while "go" not in lines:
        if closed.is_set():
            return
        time.sleep(0.01)
    period, sent, end = 1.0 / rate_hz, 0, float("inf")
    due = time.monotonic()
    while not closed.is_set():
        now = time.monotonic()
        if now < due:
            time.sleep(due - now)
            continue
        if sent == frames:  # the first trailer frame
            end = now + TRAILER_S
        if now >= end:
            break
        msg.header.frame_id = str(sent)
        publisher.publish(msg)
        if sent < frames:
            _say(f"sent {sent} {time.monotonic():.6f}")
        sent += 1
        due = max(due + period, now)
    _say("end")
    node.destroy_node()
    rclpy.try_shutdown()


# --- the parent ---------------------------------------------------------------------------------------------------

class Child:
    """A child process of this module and the lines it prints, read by a thread (its stderr goes to ``log``)."""

    def __init__(self, role: str, args: Sequence[str], env: dict[str, str], log: IO[str]) -> None:
        self.role = role
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.process = subprocess.Popen([sys.executable, "-m", __name__, role, *args], env=env, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, bufsize=1)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            with self.changed:
                self.lines.append(line.strip())
                self.changed.notify_all()
        with self.changed:
            self.lines.append("")  # EOF: wakes a wait, which then sees the process gone
            self.changed.notify_all()

    def tell(self, line: str) -> None:
        """Write ``line`` to the child's stdin."""
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def wait_for(self, predicate: Callable[[list[str]], bool], what: str, *, limit_s: float = float("inf"),
                 stall_s: float = float("inf")) -> None:
        """Until ``predicate(lines)``; SspError once the child exited, printed nothing for ``stall_s`` or
        ``limit_s`` passed in all."""
        start = moved = time.monotonic()
        with self.changed:
            count = len(self.lines)
            while not predicate(self.lines):
                now = time.monotonic()
                if len(self.lines) != count:
                    count, moved = len(self.lines), now
                if self.process.poll() is not None and not predicate(self.lines):
                    raise SspError(f"the {self.role} exited with {self.process.returncode} before {what}")
                if now - start >= limit_s or now - moved >= stall_s:
                    raise SspError(f"gave up waiting {now - start:.0f} s for {what} (last line: "
                                   f"{self.lines[-1] if self.lines else None!r})")
                self.changed.wait(0.1)

    def stop(self) -> int | None:
        """Close stdin (the child's signal to end), then its exit status; None if it had to be killed."""
        try:
            self.process.stdin.close()
        except BrokenPipeError:
            pass
        try:
            code = self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            code = None
        self._reader.join(timeout=STOP_TIMEOUT_S)
        return code


def measure(profile: Path | None, domain: int, log: Path, *, frames: int = 300, rate_hz: float = 30.0,
            size: tuple[int, int] = (720, 1280), depth: int | None = None) -> dict[str, Any]:
    """One publisher and one subscriber process with ``profile`` (None: Fast DDS's defaults): the share of the
    ``frames`` counted frames (``size`` = H, W rgb8 at ``rate_hz``) the subscriber received. The children's
    stderr goes to ``log``: SspError, with it, when a child fails or Fast DDS logs an error in the profile.
    ``depth``: both sides' history (default: a second of frames)."""
    depth = depth or max(1, round(rate_hz))
    env = child_env(domain, profile)
    load = os.getloadavg()
    with log.open("w") as err:
        subscriber = Child("subscribe", ["--depth", str(depth)], env, err)
        try:
            publisher = Child("publish", ["--frames", str(frames), "--rate", str(rate_hz), "--height",
                                          str(size[0]), "--width", str(size[1]), "--depth", str(depth)], env, err)
        except OSError:
            subscriber.stop()
            raise
        try:
            for child in (subscriber, publisher):
                child.wait_for(lambda lines: "matched" in lines, "discovery", limit_s=START_TIMEOUT_S)
            publisher.tell("go")
            publisher.wait_for(lambda lines: any(line.startswith(f"sent {frames - 1} ") for line in lines),
                               f"{frames} frames sent", stall_s=STALL_S)
            subscriber.wait_for(lambda lines: bool(received(lines) - set(range(frames))) or "end" in publisher.lines,
                                "a trailer frame or the end of the trailers", stall_s=STALL_S)
        finally:
            codes = publisher.stop(), subscriber.stop()
    xml = [re.sub(r"\x1b\[[0-9;]*m", "", line) for child in (publisher, subscriber) for line in child.lines
           if XML_ERROR in line]  # without the terminal colours
    if codes != (0, 0) or xml:
        raise SspError(f"publisher and subscriber exited with {codes}; Fast DDS's profile errors (on stdout): "
                       f"{xml or 'none'}; stderr:\n{log.read_text(errors='replace')}")
    times = [float(line.split()[2]) for line in publisher.lines if line.startswith("sent ")]
    got = received(subscriber.lines) & set(range(frames))
    return {"profile": None if profile is None else str(profile), "frames": frames, "delivered": len(got),
            "delivered_share": round(len(got) / frames, 4), "frame_size": list(size), "rate_hz": rate_hz,
            "send_rate_hz": round((len(times) - 1) / (times[-1] - times[0]), 2) if len(times) > 1 else None,
            "depth": depth, "loadavg_before": [round(v, 2) for v in load],
            "loadavg_after": [round(v, 2) for v in os.getloadavg()]}


def run_delivery_bench(profile: Path, sizes: Sequence[tuple[int, int]], rate_hz: float, duration_s: float,
                       domain: int, logs: Path, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Per frame size a run without, then with ``profile``: ``duration_s`` of frames at ``rate_hz``, the children's
    stderr in ``logs``; the report (machine, settings, runs)."""

    if not profile.is_file():
        raise SspError(f"{profile}: no such Fast DDS profile")
    say = progress or (lambda _: None)
    frames = max(1, round(rate_hz * duration_s))
    report: dict[str, Any] = {"tool": "ssp bench-node --delivery", "machine": machine_info(),
                              "settings": {"topic": TOPIC, "qos": "best effort, keep last", "domain_id": domain,
                                           "discovery_range": "LOCALHOST", "rate_hz": rate_hz, "frames": frames},
                              "runs": []}
    for size in sizes:
        for used in (None, profile):
            say(f"{size[0]}x{size[1]} rgb8 at {rate_hz:g} Hz, {frames} frames, "
                f"{'profile ' + str(used) if used else 'no profile'}")
            log = logs / f"{size[0]}x{size[1]}_{'with' if used else 'without'}_profile.log"
            run = measure(used, domain, log, frames=frames, rate_hz=rate_hz, size=size)
            report["runs"].append(run)
            say(summary_line(run))
    return report


def summary_line(run: dict[str, Any]) -> str:
    """One line per run: frame size, profile, frames delivered."""
    h, w = run["frame_size"]
    return (f"{h}x{w} {'with ' + Path(run['profile']).name if run['profile'] else 'without a profile'}: "
            f"{run['delivered']} / {run['frames']} frames delivered ({100 * run['delivered_share']:.1f} %), sent at "
            f"{run['send_rate_hz']} Hz, load {run['loadavg_before'][0]:g} before, {run['loadavg_after'][0]:g} after")


def markdown(report: dict[str, Any]) -> str:
    """The runs as a Markdown table, with the machine above."""
    m, s = report["machine"], report["settings"]
    lines = ["# Fast DDS delivery of best-effort frames between two processes", "",
             f"{m['cpu_count']} CPUs, {m['platform']}; {', '.join(f'{k} {v}' for k, v in m['versions'].items())}.",
             f"rclpy publisher -> rclpy subscriber, {s['qos']}, {s['discovery_range']} discovery, domain "
             f"{s['domain_id']}; {s['frames']} frames per run.", "",
             "| frame | profile | delivered | of | share % | sent Hz | load (1 min) before / after |", "|---" * 7 + "|"]
    for r in report["runs"]:
        lines.append(f"| {r['frame_size'][0]}x{r['frame_size'][1]} | {r['profile'] or 'none'} | {r['delivered']} | "
                     f"{r['frames']} | {100 * r['delivered_share']:.1f} | {r['send_rate_hz']} | "
                     f"{r['loadavg_before'][0]} / {r['loadavg_after'][0]} |")
    return "\n".join(lines) + "\n"


def received(lines: Sequence[str]) -> set[int]:
    """The frame numbers in a subscriber's ``frame <n>`` lines."""
    return {int(line.split()[1]) for line in lines if line.startswith("frame ")}


def main(argv: Sequence[str] | None = None) -> None:
    """The child processes: ``subscribe --depth N`` or ``publish --frames N --rate HZ --height H --width W --depth
    N``."""
    parser = argparse.ArgumentParser(prog=f"python -m {__name__}")
    sub = parser.add_subparsers(dest="role", required=True)
    subscribe = sub.add_parser("subscribe")
    subscribe.add_argument("--depth", type=int, required=True)
    publish = sub.add_parser("publish")
    for name, kind in (("--frames", int), ("--rate", float), ("--height", int), ("--width", int), ("--depth", int)):
        publish.add_argument(name, type=kind, required=True)
    args = parser.parse_args(argv)
    if args.role == "subscribe":
        run_subscriber(args.depth)
    else:
        run_publisher(args.frames, args.rate, args.height, args.width, args.depth)


if __name__ == "__main__":
    main()

"""config/fastdds.xml, the Fast DDS profile for large frames: what it configures, that Fast DDS 2.14 (the Jazzy
wheels) loads it, and that with it best-effort 1280x720 rgb8 frames at 30 Hz reach another process on this host
(issue #24: without it Fast DDS loses most of them, ros2/rmw_fastrtps#739).

The processes run on loopback in a private ROS_DOMAIN_ID; no wait is a short fixed timeout (the delivery bench waits as
long as its children print progress)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from dds_domains import FAST_DDS_PROFILE, private_domain

from ssp_ros.tools.node_bench.delivery import START_TIMEOUT_S, Child, child_env, measure

ROOT = Path(__file__).resolve().parent.parent
PROFILE = ROOT / "config" / "fastdds.xml"
FRAME_4K = 3840 * 2160 * 3  # bytes of a 4K rgb8 frame
PROBE = """
import re, os, rclpy
rclpy.init()
node = rclpy.create_node("ssp_profile_probe")
for path in sorted(set(re.findall(r"/dev/shm/fastrtps_[0-9a-f]+\\b", open("/proc/self/maps").read()))):
    print("segment", path, os.path.getsize(path))
node.destroy_node()
rclpy.shutdown()
"""  # the shared-memory segments this process mapped, with their sizes


def domain() -> int:
    return private_domain(FAST_DDS_PROFILE)


def elements(path: Path) -> ET.Element:
    """The file's XML without its namespace (Fast DDS's parsers ignore it; 2.x and 3.x XSDs name different ones)."""
    root = ET.parse(path).getroot()
    for element in root.iter():
        element.tag = element.tag.split("}")[-1]
    return root


def test_the_profile_gives_the_default_participant_shared_memory_for_4k_frames_and_udp() -> None:
    root = elements(PROFILE)
    assert root.tag == "dds" and root.find("profiles") is not None
    transports = {d.findtext("transport_id"): d for d in root.iter("transport_descriptor")}
    kinds = {d.findtext("type"): d for d in transports.values()}
    assert set(kinds) == {"SHM", "UDPv4"}, "shared memory on the host, UDP to other hosts"
    shm = kinds["SHM"]
    assert int(shm.findtext("segment_size")) >= 4 * FRAME_4K, "a few 4K frames in the segment (default 512 KB)"
    assert int(shm.findtext("port_queue_capacity")) * 65500 >= 4 * FRAME_4K, "the reader's queue holds them too"
    assert int(shm.findtext("maxMessageSize")) <= int(shm.findtext("segment_size"))
    (participant,) = root.iter("participant")
    assert participant.get("is_default_profile") == "true", "rmw_fastrtps creates the default participant"
    used = [t.text for t in participant.find("rtps/userTransports")]
    assert sorted(used) == sorted(transports), "every transport is used, by an id that exists"
    assert participant.findtext("rtps/useBuiltinTransports") == "false", "else the 512 KB segment stays beside it"


def probe(profile: Path | None) -> tuple[str, dict[str, int]]:
    """A participant started with ``profile``: what it printed (Fast DDS logs to stdout) and the shared-memory
    segments it mapped, by path."""
    done = subprocess.run([sys.executable, "-c", PROBE], env=child_env(domain(), profile), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    segments = {m[0]: int(m[1]) for m in re.findall(r"^segment (\S+) (\d+)$", done.stdout, re.M)}
    return done.stdout + done.stderr, segments


def test_fast_dds_loads_the_profile_without_an_error(tmp_path) -> None:
    """The participant maps a segment of the profile's size and Fast DDS logs no XML error; a copy with a
    misspelt element shows that both checks see a profile Fast DDS rejects."""
    pytest.importorskip("rclpy", reason="rclpy is not installed: pip install -e '.[ros]' or source ROS 2")
    size = int(elements(PROFILE).find(".//segment_size").text)
    output, segments = probe(PROFILE)
    assert "XMLPARSER" not in output and "Error" not in output, output
    assert max(segments.values()) >= size, segments
    broken = tmp_path / "fastdds.xml"
    broken.write_text(PROFILE.read_text().replace("segment_size>", "segmentSize>"))
    output, segments = probe(broken)
    assert "XMLPARSER" in output and "segmentSize" in output, output
    assert max(segments.values()) < size, "Fast DDS's default segment"


@pytest.mark.slow
def test_best_effort_720p_frames_reach_another_process_with_the_profile(tmp_path) -> None:
    """150 frames (5 s at 30 Hz) counted once publisher and subscriber matched: with the profile at least 95 %
    arrive (in runs of 300: all, idle and beside two CPU hogs). Without it some are lost: the 2.8 MB frame is 43
    fragments and Fast DDS's 512 KB segment holds 8, so the writer overwrites fragments the reader has not taken
    (in runs of 300: 57-96 % were lost in every run, idle or loaded); that this test sees the loss shows that it
    can fail."""
    pytest.importorskip("rclpy", reason="rclpy is not installed: pip install -e '.[ros]' or source ROS 2")
    without = measure(None, domain(), tmp_path / "without.log", frames=150)
    with_profile = measure(PROFILE, domain(), tmp_path / "with.log", frames=150)
    print(f"delivered without the profile {without['delivered']}/{without['frames']}, with it "
          f"{with_profile['delivered']}/{with_profile['frames']}")
    assert with_profile["delivered_share"] >= 0.95, with_profile
    assert without["delivered"] < without["frames"], without


def test_the_camera_ends_its_trailer_frames_by_itself(tmp_path) -> None:
    """After the counted frames the publisher sends uncounted trailer frames until its stdin closes or for
    ``TRAILER_S``, so a run in which no trailer arrives (a lossy one) ends too."""
    pytest.importorskip("rclpy", reason="rclpy is not installed: pip install -e '.[ros]' or source ROS 2")
    env = child_env(domain(), None)
    with (tmp_path / "children.log").open("w") as log:
        subscriber = Child("subscribe", ["--depth", "1"], env, log)
        publisher = Child("publish", ["--frames", "3", "--rate", "30", "--height", "4", "--width", "4", "--depth", "1"],
                          env, log)
        try:
            for child in (subscriber, publisher):
                child.wait_for(lambda lines: "matched" in lines, "discovery", limit_s=START_TIMEOUT_S)
            publisher.tell("go")
            publisher.wait_for(lambda lines: "end" in lines, "the end of the trailers", limit_s=START_TIMEOUT_S)
        finally:
            codes = publisher.stop(), subscriber.stop()
    assert codes == (0, 0), (tmp_path / "children.log").read_text()
    assert [line.split()[1] for line in publisher.lines if line.startswith("sent ")] == ["0", "1", "2"]


@pytest.mark.slow
def test_bench_node_delivery_reports_both_runs(tmp_path, capsys) -> None:
    """``ssp bench-node --delivery``: a run without and one with the shipped profile per size, as JSON and a
    Markdown table; small frames, which Fast DDS delivers either way."""
    pytest.importorskip("rclpy", reason="rclpy is not installed: pip install -e '.[ros]' or source ROS 2")
    from ssp_ros.cli.main import main

    out = tmp_path / "delivery.json"
    args = ["bench-node", "--delivery", "--size", "48x64", "--rate", "20", "--duration", "1", "--domain-id",
            str(domain()), "--out", str(out)]
    assert main(args) == 0
    runs = json.loads(out.read_text())["runs"]
    assert [(r["profile"], r["frame_size"], r["frames"]) for r in runs] == [(None, [48, 64], 20),
                                                                           (str(PROFILE), [48, 64], 20)]
    assert all(r["delivered"] == 20 and r["send_rate_hz"] > 0 for r in runs), runs
    table = out.with_suffix(".md").read_text()
    assert "| 48x64 | none | 20 | 20 | 100.0 |" in table and f"| 48x64 | {PROFILE} | 20 | 20 | 100.0 |" in table
    assert "without a profile: 20 / 20 frames delivered" in capsys.readouterr().out
    assert main([*args, "--fastdds-profile", str(tmp_path / "missing.xml")]) == 2
    assert "missing.xml: no such Fast DDS profile" in capsys.readouterr().err

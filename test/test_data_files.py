"""setup.py installs every launch and config file, and package.xml names every ROS package the node and
the launch files use."""

from __future__ import annotations

import ast
import runpy
import sys
from pathlib import Path

import pytest
import setuptools

ROOT = Path(__file__).resolve().parent.parent
# import name -> rosdep key
PYTHON_KEYS = {"numpy": "python3-numpy", "cv2": "python3-opencv", "yaml": "python3-yaml", "PIL": "python3-pil"}
OURS = {"ssp_ros", "ssp_train"}


def setup_kwargs(monkeypatch) -> dict:
    captured: dict = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
    monkeypatch.chdir(ROOT)
    runpy.run_path(str(ROOT / "setup.py"))
    return captured


@pytest.mark.parametrize("folder", ["launch", "config"])
def test_data_files_install_every_file(monkeypatch, folder: str) -> None:
    installed = {(Path(dest), Path(src)) for dest, files in setup_kwargs(monkeypatch)["data_files"] for src in files}
    present = [p.relative_to(ROOT) for p in (ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert present, folder
    missing = [str(p) for p in present if (Path("share/ssp_ros") / p.parent, p) not in installed]
    assert not missing, f"not in setup.py data_files (or installed elsewhere): {missing}"


def imported_packages(path: Path) -> set[str]:
    """Top-level packages a Python file imports anywhere (also inside functions), minus the stdlib and ours."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return {PYTHON_KEYS.get(n, n) for n in names - set(sys.stdlib_module_names) - OURS - {"__future__"}}


def launched_packages(path: Path) -> set[str]:
    """Packages whose executables a launch file starts (Node(package=...), `ros2 bag`)."""
    tree = ast.parse(path.read_text())
    packages = {k.value.value for n in ast.walk(tree) if isinstance(n, ast.Call) for k in n.keywords
                if k.arg == "package" and isinstance(k.value, ast.Constant)}
    strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    if "ros2" in strings and "bag" in strings:
        packages.add("ros2bag")
    return packages - {"ssp_ros"}


def test_package_xml_lists_what_the_node_and_launch_files_use() -> None:
    catkin_pkg = pytest.importorskip("catkin_pkg.package")
    depends = {dep.name for dep in catkin_pkg.parse_package(str(ROOT / "package.xml")).exec_depends}
    node_files = ("node.py", "rclpy_transport.py", "main.py", "images.py")
    needed = set().union(*(imported_packages(ROOT / "ssp_ros" / "ros" / f) for f in node_files))
    for launch_file in (ROOT / "launch").glob("*.launch.py"):
        needed |= imported_packages(launch_file) | launched_packages(launch_file)
    assert {"rclpy", "sensor_msgs", "std_srvs", "diagnostic_msgs", "vision_msgs", "cv_bridge", "launch",
            "launch_ros", "rviz2", "ros2bag"} <= needed, "the scan finds the node's lazy imports"
    assert needed <= depends, f"missing from package.xml: {sorted(needed - depends)}"

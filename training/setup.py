"""ssp_train, the companion training package of ssp_ros: an ament_python package for colcon, and, without ROS,
`pip install -e . -e ./training` from the repository root (so that ssp_ros comes from this clone). It adds
`ssp train`, `ssp flow-cache` and `ssp ablate` to the `ssp` command through the ssp_ros.commands entry point; the
runtime never imports it."""

from setuptools import find_packages, setup

PACKAGE = "ssp_train"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Training for ssp_ros: image model, SSP similarity head, teacher and KD-SSP distillation",
    python_requires=">=3.10",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
    ],
    # the runtime it trains for, with torch, timm and safetensors (models), PyAV and matplotlib (evaluation)
    install_requires=["ssp_ros[torch]>=0.1"],
    tests_require=["pytest"],
    zip_safe=True,
    entry_points={"ssp_ros.commands": ["training = ssp_train.cli:add_commands"]},
)

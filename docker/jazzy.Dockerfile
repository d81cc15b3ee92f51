# An x86_64 image: ROS 2 Jazzy (Ubuntu 24.04, CPython 3.12), the ONNX Runtime backend on the CPU. Build it from the
# repository root:
#   docker build -f docker/jazzy.Dockerfile -t ssp_ros:jazzy .
# (The base image is multi-arch, so it builds on arm64 as well.) No torch in the image.

# The official ROS image (docker-library `ros`, Dockerfiles in github.com/osrf/docker_images).
ARG ROS_TAG=jazzy-ros-base-noble

# ---- Stage 1: the ONNX graphs of the shipped model (`ssp export`). Exporting needs torch, which this image does not
# carry. The graphs are the same on every machine, so this stage runs on the build machine's own platform; on
# x86_64 it installs exactly the versions of constraints.txt (CPython 3.11), the ones CI passed with. (BUILDPLATFORM
# is set by BuildKit, Docker's default builder since 23.0.)
FROM --platform=$BUILDPLATFORM python:3.11-slim-bookworm AS export
WORKDIR /src
COPY . .
# -c for the install, the two variables for the package's build environment (as in the README). The CPU build of
# torch comes from its own index, as `torch==X+cpu`, which constraints.txt's `torch==X` admits: the CUDA build is
# gigabytes that exporting never uses.
RUN PIP_CONSTRAINT=constraints.txt PIP_BUILD_CONSTRAINT=constraints.txt \
        pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu \
        -c constraints.txt '.[torch,onnx]' \
    && ssp export --out /export

# ---- Stage 2: the node.
FROM ros:${ROS_TAG}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG DEBIAN_FRONTEND=noninteractive

# Cyclone DDS beside Fast DDS (see RMW_IMPLEMENTATION below), and pip.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ros-jazzy-rmw-cyclonedds-cpp python3-pip \
    && rm -rf /var/lib/apt/lists/*

# pip: onnxruntime and rosbags at the versions of docker/jazzy-requirements.txt. Ubuntu 24.04 marks its Python as
# externally managed (PEP 668); in an image that is the only environment, so pip installs beside apt, into
# /usr/local, and leaves apt's packages (numpy 1.26.4 among them) where they are.
COPY docker/jazzy-requirements.txt /tmp/requirements.txt
RUN PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The rest of package.xml's keys with apt (the base image ran `rosdep init`). rviz2 is skipped: it runs wherever
# someone looks at the topics, not in the node's container.
WORKDIR /ws
COPY package.xml src/ssp_ros/package.xml
RUN apt-get update \
    && rosdep update --rosdistro "${ROS_DISTRO}" \
    && rosdep install --from-paths src --ignore-src -y --rosdistro "${ROS_DISTRO}" \
        --dependency-types exec --skip-keys rviz2 \
    && rm -rf /var/lib/apt/lists/*

COPY . src/ssp_ros
RUN . "/opt/ros/${ROS_DISTRO}/setup.bash" \
    && colcon build --base-paths src --event-handlers console_direct- \
    && rm -rf build log

# The graphs of stage 1, for ONNX Runtime on the CPU.
COPY --from=export /export /opt/ssp/export

# Fast DDS, ROS 2's default; RMW_IMPLEMENTATION=rmw_cyclonedds_cpp switches to Cyclone DDS (installed above).
ENV RMW_IMPLEMENTATION=rmw_fastrtps_cpp SSP_BACKEND=onnxruntime SSP_EXPORT_DIR=/opt/ssp/export
ENTRYPOINT ["/bin/bash", "/ws/src/ssp_ros/docker/entrypoint.sh"]
# Empty: the base image's CMD (bash) would otherwise be the command, and no command starts the node.
CMD []

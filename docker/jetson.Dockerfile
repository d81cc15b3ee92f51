# The drone's image: JetPack 6 (L4T r36.4, Ubuntu 22.04, CPython 3.10), ROS 2 Humble, the TensorRT backend.
# Build it on the Jetson, from the repository root:
#   docker build -f docker/jetson.Dockerfile -t ssp_ros:jetson .
# TensorRT (10.3 on r36.4), CUDA and cuDNN come from the base image; no torch in the image.

# The L4T release of the base image; run the image on a Jetson with the same JetPack 6 (r36.x) major release.
ARG L4T_TAG=r36.4.0

# ---- Stage 1: the ONNX graphs of the shipped model (`ssp export`). Exporting needs torch, which the drone image must
# not carry. The graphs are the same on every machine, so this stage runs on the build machine's own platform; on
# x86_64 it installs exactly the versions of constraints.txt (CPython 3.11), the ones CI passed with. (BUILDPLATFORM
# is set by BuildKit, Docker's default builder since 23.0.)
FROM --platform=$BUILDPLATFORM python:3.11-slim-bookworm AS export
# The TensorRT whose ONNX parser the graphs are checked against: 10.3 on r36.4 (JetPack 6.1/6.2), 8.6 on r36.2
# and r36.3 (JetPack 6.0): with an older L4T_TAG, also --build-arg TRT_VERSION=8.6.
ARG TRT_VERSION=10.3
WORKDIR /src
COPY . .
# -c for the install, the two variables for the package's build environment (as in the README). The CPU build of
# torch comes from its own index, as `torch==X+cpu`, which constraints.txt's `torch==X` admits: the CUDA build is
# gigabytes that exporting never uses.
RUN PIP_CONSTRAINT=constraints.txt PIP_BUILD_CONSTRAINT=constraints.txt \
        pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu \
        -c constraints.txt '.[torch,onnx]' \
    && ssp export --out /export --trt-version "${TRT_VERSION}"

# ---- Stage 2: the node.
FROM nvcr.io/nvidia/l4t-jetpack:${L4T_TAG}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG DEBIAN_FRONTEND=noninteractive
ENV LANG=C.UTF-8 LC_ALL=C.UTF-8 ROS_DISTRO=humble

# ROS 2 Humble from packages.ros.org (arm64 debs for Ubuntu 22.04), so rosdep resolves package.xml with apt. The
# jetson-containers ROS images build ROS from source instead, where package.xml's other keys (vision_msgs,
# cv_bridge, rosbag2_storage_mcap) would need source builds too. The apt source package and its checksum are the
# ones the official ros:humble images install; ros-base is pinned to the same release as they are.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && curl -fsSL -o /tmp/ros2-apt-source.deb \
        https://github.com/ros-infrastructure/ros-apt-source/releases/download/1.2.0/ros2-apt-source_1.2.0.jammy_all.deb \
    && echo "767884cf4ed03116b9d64438930a832ed854147ae435279a7924dfdf60f94433 */tmp/ros2-apt-source.deb" \
        | sha256sum --strict --check \
    && apt-get install -y --no-install-recommends /tmp/ros2-apt-source.deb \
    && rm /tmp/ros2-apt-source.deb \
    && apt-get update \
    && apt-get install -y --no-install-recommends \
        ros-humble-ros-base=0.10.0-1* ros-humble-rmw-cyclonedds-cpp \
        python3-rosdep python3-colcon-common-extensions python3-pip python3-dev build-essential \
    && rosdep init \
    && rm -rf /var/lib/apt/lists/*

# TensorRT's Python bindings (`import tensorrt`) are the deb python3-libnvinfer of NVIDIA's Jetson apt repository.
# Installed only if the base image lacks them, from that repository (added if the base does not list it). Checked
# with find_spec, not by importing: on a Jetson the import needs driver libraries that only `--runtime nvidia`
# mounts, and a build does not have them unless the daemon's default runtime is nvidia.
ARG JETSON_APT_RELEASE=r36.4
RUN if ! python3 -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('tensorrt') is None)"; then \
        if ! grep -rqs "repo.download.nvidia.com/jetson/common" /etc/apt/sources.list /etc/apt/sources.list.d; then \
            curl -fsSL -o /usr/share/keyrings/jetson-ota-public.asc \
                https://repo.download.nvidia.com/jetson/jetson-ota-public.asc \
            && echo "deb [signed-by=/usr/share/keyrings/jetson-ota-public.asc]" \
                "https://repo.download.nvidia.com/jetson/common ${JETSON_APT_RELEASE} main" \
                > /etc/apt/sources.list.d/nvidia-l4t-apt-source.list; \
        fi \
        && apt-get update \
        && apt-get install -y --no-install-recommends python3-libnvinfer \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('tensorrt') is None)"

# pip: pycuda (compiled here with the base image's nvcc; it links libcuda from the toolkit's stubs, the driver's own
# comes with --runtime nvidia) and rosbags, at the versions of docker/jetson-requirements.txt. The file is also the
# constraint of pycuda's build environment, so pycuda is built against the numpy it runs with.
ENV PATH=/usr/local/cuda/bin:${PATH}
COPY docker/jetson-requirements.txt /tmp/requirements.txt
RUN PIP_CONSTRAINT=/tmp/requirements.txt python3 -m pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The rest of package.xml's keys with apt. rviz2 is skipped: RViz runs on the ground station, not on the drone.
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

# The graphs of stage 1. Engines are built from them on the Jetson itself, once, into a volume mounted here:
#   docker run --rm --runtime nvidia -v ssp-export:/opt/ssp/export ssp_ros:jetson ssp build-engine --onnx /opt/ssp/export
COPY --from=export /export /opt/ssp/export

# Fast DDS, ROS 2's default; RMW_IMPLEMENTATION=rmw_cyclonedds_cpp switches to Cyclone DDS (installed above).
ENV RMW_IMPLEMENTATION=rmw_fastrtps_cpp SSP_BACKEND=tensorrt SSP_EXPORT_DIR=/opt/ssp/export
ENTRYPOINT ["/bin/bash", "/ws/src/ssp_ros/docker/entrypoint.sh"]
# Empty: the base image's CMD (a shell) would otherwise be the command, and no command starts the node.
CMD []

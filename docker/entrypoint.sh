#!/usr/bin/env bash
# Entry point of the images of docker/*.Dockerfile: sources ROS 2 and the colcon workspace, then runs the command.
# With no command, or only launch arguments (name:=value), it starts the node with the image's backend:
#   ros2 launch ssp_ros ssp.launch.py backend:=$SSP_BACKEND export_dir:=$SSP_EXPORT_DIR [name:=value ...]
# (a later name:=value wins, so `docker run IMAGE backend:=torch` overrides the image's choice).
set -eo pipefail  # no -u: the ROS setup scripts read unset variables
# shellcheck source=/dev/null
source "${SSP_ROS_SETUP:-/opt/ros/${ROS_DISTRO}/setup.bash}"
# shellcheck source=/dev/null
source "${SSP_WS_SETUP:-/ws/install/setup.bash}"
if [ "$#" -eq 0 ] || [[ "$1" == *:=* ]]; then
  set -- ros2 launch ssp_ros ssp.launch.py "backend:=${SSP_BACKEND}" "export_dir:=${SSP_EXPORT_DIR}" "$@"
fi
exec "$@"

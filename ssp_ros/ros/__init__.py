"""The ROS face: the node on a transport seam (rclpy or Cyclone DDS), message conversion, parameters,
diagnostics, bags and replay. rclpy, cyclonedds and the message packages are imported inside functions."""

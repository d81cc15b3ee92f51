"""The ROS face: the node on a transport seam (rclpy or Cyclone DDS), message conversion, parameters,
diagnostics, security. rclpy, cyclonedds and the message packages are imported inside functions. Bags, replay and
the node bench are tools (``ssp_ros.tools``): nothing here imports them, nor ``ssp_ros.eval``."""

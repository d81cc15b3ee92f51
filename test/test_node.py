import importlib.util

import pytest

from ssp_ros import node


@pytest.mark.skipif(importlib.util.find_spec("rclpy") is not None, reason="rclpy is installed: ROS path")
def test_node_without_ros_explains_what_to_source(capsys) -> None:
    assert node.main([]) == 1
    assert "rclpy is not importable: source a ROS 2 installation" in capsys.readouterr().err

"""The Image damage both hostile-message fuzzes use (test_ros_stream in-process, test_rclpy_node through the
real node): one broken field of an otherwise good message, and the reason it must be skipped for."""

from __future__ import annotations

import random

from ssp_ros.ros.images import BAD_STEP, EMPTY_IMAGE, SHORT_DATA, TOO_LARGE, UNSUPPORTED_ENCODING

DAMAGE = ("encoding", "zero", "step", "short", "huge")


def damage_image(msg, case: str, rng: random.Random) -> str:
    """Break ``msg`` (an rgb8 Image: rosbags or rclpy) in place as ``case`` (one of DAMAGE) says; returns the
    skip reason the node must count it under."""
    if case == "encoding":
        msg.encoding = rng.choice(["32FC1", "", "RGB8", "yuv420", "bayer_xyzw8"])
        return UNSUPPORTED_ENCODING
    if case == "zero":
        setattr(msg, rng.choice(["height", "width"]), 0)
        return EMPTY_IMAGE
    if case == "step":
        msg.step = rng.randrange(0, msg.width * 3)
        return BAD_STEP
    if case == "short":
        msg.data = msg.data[: rng.randrange(0, len(msg.data))]
        return SHORT_DATA
    if case == "huge":  # refused by node.max_pixels before the (short) data is looked at
        msg.height, msg.width, msg.step = 100_000, 100_000, 300_000
        return TOO_LARGE
    raise ValueError(f"no Image damage '{case}' (known: {', '.join(DAMAGE)})")

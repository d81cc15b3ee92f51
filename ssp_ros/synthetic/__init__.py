"""Synthetic aerial video with labels and exact optical flow: the embedded default data set."""

from ssp_ros.synthetic.video import SyntheticVideo, relative_homography

__all__ = ["SyntheticVideo", "relative_homography"]

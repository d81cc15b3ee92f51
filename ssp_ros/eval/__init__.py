"""Evaluation: metrics, optical flow, clips, ``ssp demo``, ``ssp bench``, ``ssp eval`` and their reports."""

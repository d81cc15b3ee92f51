"""Estimated optical flow of real training pairs (``PairFlow``; its conventions in ``ssp_train.sources``),
computed on the fly or cached to disk, and the ``flow-cache`` command that fills the cache ahead of training.

DIS (OpenCV) is the default estimator; RAFT runs only with a local weights file (``ssp_ros.eval.flow``). A cache
file holds one pair's flow in both directions at the training frame size::

    <cache>/<estimator>_<H>x<W>/<sequence>/<prev:06d>_<cur:06d>.npz   (float16 flow, bool validity)

so caches of different estimators or sizes never mix; each file also records them and is checked on load.
A file that cannot be read is an error naming it (delete it to recompute).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from ssp_ros.errors import SspError
from ssp_ros.eval.flow import FLOW_ESTIMATORS, FlowEstimator, make_flow_estimator
from ssp_train.sources import PairFlow


def estimated_pair_flow(estimator: FlowEstimator, prev: np.ndarray, cur: np.ndarray) -> PairFlow:
    """Both directions with a flow estimator of ``ssp_ros.eval.flow`` (validity: its forward-backward check)."""
    forward, forward_valid = estimator(prev, cur)
    backward, backward_valid = estimator(cur, prev)
    return PairFlow(forward, forward_valid, backward, backward_valid)


class EstimatedFlow:
    """A flow provider for ``VideoSource``: ``provider(sequence, prev, cur, prev_image, cur_image)`` → PairFlow.

    The estimator is built on first use in each process (OpenCV objects do not cross process boundaries, so
    DataLoader workers each build their own). With ``cache`` set, a pair is read from the cache when there and
    written to it (atomically) when computed.
    """

    def __init__(self, estimator: str = "dis", weights: str | Path | None = None,
                 cache: str | Path | None = None) -> None:
        if estimator not in FLOW_ESTIMATORS:
            raise SspError(f"unknown flow estimator '{estimator}' (choose {', '.join(FLOW_ESTIMATORS)})")
        if estimator != "dis" and weights is None:
            raise SspError(f"flow '{estimator}' needs a local weights file (no downloads at run time)")
        self.estimator_name, self.weights = estimator, weights
        self.cache = None if cache is None else Path(cache)
        self._estimator: FlowEstimator | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_estimator": None}

    def _estimate(self, prev: np.ndarray, cur: np.ndarray) -> PairFlow:
        if self._estimator is None:
            self._estimator = make_flow_estimator(self.estimator_name, self.weights)
        return estimated_pair_flow(self._estimator, prev, cur)

    def path(self, sequence: str, prev: int, cur: int, size: tuple[int, int]) -> Path:
        """The cache file of a pair (``cache`` must be set)."""
        if self.cache is None:
            raise SspError("no flow cache folder set")
        return self.cache / f"{self.estimator_name}_{size[0]}x{size[1]}" / sequence / f"{prev:06d}_{cur:06d}.npz"

    def __call__(self, sequence: str, prev: int, cur: int, prev_image: np.ndarray, cur_image: np.ndarray
                 ) -> PairFlow:
        if self.cache is None:
            return self._estimate(prev_image, cur_image)
        size = prev_image.shape[:2]
        path = self.path(sequence, prev, cur, size)
        if path.is_file():
            return self._load(path, size)
        flow = self._estimate(prev_image, cur_image)
        self._save(path, flow)
        return flow

    def _save(self, path: Path, flow: PairFlow) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        np.savez_compressed(tmp, estimator=self.estimator_name, size=np.array(flow.forward.shape[:2]),
                            forward=flow.forward.astype(np.float16), forward_valid=flow.forward_valid,
                            backward=flow.backward.astype(np.float16), backward_valid=flow.backward_valid)
        os.replace(tmp, path)

    def _load(self, path: Path, size: tuple[int, int]) -> PairFlow:
        try:
            with np.load(path) as data:
                estimator, stored = str(data["estimator"]), tuple(int(v) for v in data["size"])
                flow = PairFlow(data["forward"].astype(np.float32), data["forward_valid"],
                                data["backward"].astype(np.float32), data["backward_valid"])
        except (OSError, KeyError, ValueError, EOFError) as err:
            raise SspError(f"{path}: unreadable flow cache file ({err}): delete it to recompute") from None
        if estimator != self.estimator_name or stored != tuple(size):
            raise SspError(f"{path}: cached with {estimator} at {stored[1]}x{stored[0]}, this run wants "
                           f"{self.estimator_name} at {size[1]}x{size[0]}: delete it to recompute")
        return flow


def pair_frames(sequence_frames: list[int], labelled: list[int], gaps: tuple[int, int]) -> list[tuple[int, int]]:
    """The training pairs (k − gap, k) of a sequence: each labelled frame k with each gap in ``gaps`` (inclusive)
    whose previous frame exists."""
    available = set(sequence_frames) | set(labelled)
    return [(k - gap, k) for k in labelled for gap in range(gaps[0], gaps[1] + 1) if k - gap in available]


def run_flow_cache(config: Path, cache: Path | None = None, flow: str | None = None,
                   flow_weights: Path | None = None) -> str:
    """Fill the flow cache of the recipe ``config`` (``cache``, ``flow``, ``flow_weights`` default to its
    ``data.*`` keys); returns a one-line summary. Errors are ``SspError``."""
    from tqdm import tqdm

    from ssp_train.config import load_train_config
    from ssp_train.data import video_source

    cfg = load_train_config(config)
    flow = flow or cfg.data.flow
    flow_weights = flow_weights or cfg.data.flow_weights
    cache = cache or cfg.data.flow_cache
    if cache is None:
        raise SspError(f"{config}: no cache folder: pass --cache or set data.flow_cache (training reads it)")
    provider = EstimatedFlow(flow, flow_weights, cache)
    source = video_source(cfg, flow=provider)
    jobs = []
    for s, sequence in enumerate(source.sequences):
        labelled = [item.frame for item in sequence.labelled]
        jobs += [(s, prev, cur) for prev, cur in pair_frames(list(sequence.frames), labelled, cfg.data.frame_gap)]
    if not jobs:
        raise SspError(f"{config}: no frame pairs to cache: are the video frames there (see "
                       "ssp_train/datasets.py for the layout)?")
    began, computed = time.perf_counter(), 0
    for s, prev, cur in tqdm(jobs, desc="flow", unit="pair"):
        size = source.shape(s, cur)
        if provider.path(source.sequences[s].name, prev, cur, size).is_file():
            continue
        source.flow(s, prev, cur, source.image(s, prev), source.image(s, cur))
        computed += 1
    seconds = time.perf_counter() - began
    return (f"{len(jobs)} pairs ({computed} computed, {len(jobs) - computed} already cached) in "
            f"{seconds:.1f} s with {flow} under {cache}")

"""Synthetic drone video for training, generated in memory and cached per (scenario, frames, seed).

Frames come from ``ssp_ros.synthetic.SyntheticVideo`` (uint8 RGB, uint8 UAVid labels, the exact world→image
homography, the exact flow to the next frame) and are cached for the life of the process, so the image stage
and the SSP stage share one generation (a world takes ~5 s to build at the default size).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time

from ssp_ros.config import SyntheticConfig, to_dict
from ssp_ros.synthetic import SyntheticFrame, SyntheticVideo

Sequence = list[SyntheticFrame]  # one video's frames, in order

_CACHE: dict[str, Sequence] = {}


def generate_sequence(scenario: SyntheticConfig, frames: int, seed: int, keep_flow: bool = False) -> Sequence:
    """The frames of ``SyntheticVideo(scenario, frames, seed)``, cached in memory for the process.

    Flow is dropped (2 MB per frame at 384×640) unless ``keep_flow`` (validation and flow losses need it).
    """
    key = json.dumps([to_dict(scenario), frames, seed, keep_flow], sort_keys=True)
    if key not in _CACHE:
        video = SyntheticVideo(scenario, frames=frames, seed=seed)
        _CACHE[key] = [f if keep_flow else dataclasses.replace(f, flow=None, valid=None) for f in video]
    return _CACHE[key]


def clear_cache() -> None:
    """Forget every cached sequence (frees the memory)."""
    _CACHE.clear()


def generate_sequences(scenario: SyntheticConfig, frames: int, seeds: list[int], progress: bool = True,
                       keep_flow: bool = False) -> tuple[list[Sequence], float]:
    """``(sequences, seconds)``: one cached sequence per seed, with a progress bar over seeds."""
    from tqdm import tqdm

    start = time.perf_counter()
    sequences = [generate_sequence(scenario, frames, seed, keep_flow)
                 for seed in tqdm(seeds, desc="data", unit="seq", disable=not progress)]
    return sequences, time.perf_counter() - start


def sequence_keys(scenario: SyntheticConfig, frames: int, seeds: list[int]) -> list[str]:
    """Names of generated sequences for per-frame caches: a digest of the scenario and length, and the seed."""
    digest = hashlib.blake2b(json.dumps([to_dict(scenario), frames], sort_keys=True).encode(), digest_size=6)
    return [f"synthetic-{digest.hexdigest()}/seed{seed}" for seed in seeds]

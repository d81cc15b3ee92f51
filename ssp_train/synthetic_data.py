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

from ssp_ros.frames import SyntheticFrame
from ssp_ros.schema import to_dict
from ssp_ros.synthetic import SyntheticVideo
from ssp_ros.synthetic.config import SyntheticConfig

Sequence = list[SyntheticFrame]  # one video's frames, in order

_CACHE: dict[str, Sequence] = {}


def generate_sequence(scenario: SyntheticConfig, frames: int, seed: int, keep_flow: bool = False) -> Sequence:
    """The frames of ``SyntheticVideo(scenario, frames, seed)``, cached in memory for the process.

    Flow is dropped (2 MB per frame at 384×640) unless ``keep_flow`` (validation and flow losses need it), and
    the sky mask always (training reads labels, where the sky is clutter).
    """
    key = json.dumps([to_dict(scenario), frames, seed, keep_flow], sort_keys=True)
    if key not in _CACHE:
        video = SyntheticVideo(scenario, frames=frames, seed=seed)
        _CACHE[key] = [dataclasses.replace(f, sky=None) if keep_flow else dataclasses.replace(f, flow=None, valid=None,
                                                                                             sky=None) for f in video]
    return _CACHE[key]


def clear_cache() -> None:
    """Forget every cached sequence (frees the memory)."""
    _CACHE.clear()


def generate_sequences(plan: list[tuple[SyntheticConfig, int]], frames: int, progress: bool = True,
                       keep_flow: bool = False) -> tuple[list[Sequence], float]:
    """``(sequences, seconds)``: one cached sequence per (scenario, seed) of ``plan``, with a progress bar."""
    from tqdm import tqdm

    start = time.perf_counter()
    sequences = [generate_sequence(scenario, frames, seed, keep_flow)
                 for scenario, seed in tqdm(plan, desc="data", unit="seq", disable=not progress)]
    return sequences, time.perf_counter() - start


def sequence_keys(plan: list[tuple[SyntheticConfig, int]], frames: int) -> list[str]:
    """Names of generated sequences for per-frame caches: a digest of the scenario and length, and the seed."""
    keys = []
    for scenario, seed in plan:
        digest = hashlib.blake2b(json.dumps([to_dict(scenario), frames], sort_keys=True).encode(), digest_size=6)
        keys.append(f"synthetic-{digest.hexdigest()}/seed{seed}")
    return keys

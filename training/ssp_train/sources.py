"""Where training frames come from, behind one small interface (``FrameSource``) that the datasets of
``ssp_train.data`` read: synthetic video in memory (``SyntheticSource``) or a real data set on disk
(``VideoSource``, over ``ssp_train.datasets``).

A source addresses frames as (sequence index, frame number) and gives, for each, the RGB image, the labels
(None for an unlabelled video frame), the homography between two frames of a sequence (exact for synthetic
video, estimated by ``ssp_ros.registration`` for real video; None when registration fails) and the flow of a
pair in both directions (``PairFlow``).

Synthetic video is generated in memory and cached per (scenario, frames, seed): frames come from
``ssp_ros.synthetic.SyntheticVideo`` (uint8 RGB, uint8 UAVid labels, the exact world→image homography, the exact
flow to the next frame) and are cached for the life of the process, so the image stage and the SSP stage share
one generation (a world takes ~5 s to build at the default size).

The flow of a training pair (frame k − gap → frame k) is exact for synthetic video, estimated (OpenCV DIS by
default, RAFT with local weights; ``ssp_train.flow_cache``) for real video. Flows are H×W×2 float32 (dx, dy) with
H×W bool validity, in the convention of ``ssp_ros.eval.flow``: ``forward`` takes each pixel of frame k − gap to
frame k, ``backward`` each pixel of frame k to frame k − gap. Synthetic video carries the exact flow of each frame
to the next (``SyntheticFrame.flow``, movers included). ``synthetic_pair_flow`` chains those steps for a gap > 1
(each step sampled at the nearest pixel: the flow's change over half a pixel is ~1e-3 px on this smooth motion).
The generator has no backward flow; the backward flow here is the exact background homography's, kept valid only
where the exact forward flow of its target pixel comes back within ``ROUND_TRIP_PX``: exact on the ground, invalid
on movers and on what they uncover.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import cv2
import numpy as np

from ssp_ros.classes import ClassSet
from ssp_ros.config import RegistrationConfig
from ssp_ros.errors import SspError
from ssp_ros.frames import SyntheticFrame
from ssp_ros.registration import estimate_homography
from ssp_ros.schema import to_dict
from ssp_ros.synthetic import SyntheticVideo, relative_homography
from ssp_ros.synthetic.config import SyntheticConfig
from ssp_train.datasets import LabelDecoder, VideoSequence, read_image

ROUND_TRIP_PX = 1.0  # backward flow kept where forward(backward(p)) returns within this distance of p

Sequence = list[SyntheticFrame]  # one video's frames, in order

_CACHE: dict[str, Sequence] = {}


@dataclass(frozen=True)
class PairFlow:
    """Flow of a pair in both directions, with validity (see the module docstring)."""

    forward: np.ndarray  # H×W×2 float32, frame k − gap → frame k
    forward_valid: np.ndarray  # H×W bool
    backward: np.ndarray  # H×W×2 float32, frame k → frame k − gap
    backward_valid: np.ndarray  # H×W bool


FlowProvider = Callable[[str, int, int, np.ndarray, np.ndarray], PairFlow]  # (sequence, prev, cur, images) → flow


class FrameSource(Protocol):
    """Frames of a set of videos, by (sequence index, frame number)."""

    def labelled(self) -> list[tuple[int, int]]:
        """Every labelled frame."""

    def shape(self, sequence: int, frame: int) -> tuple[int, int]:
        """(H, W) of a labelled frame as ``image`` returns it."""

    def has_frame(self, sequence: int, frame: int) -> bool: ...

    def image(self, sequence: int, frame: int) -> np.ndarray:
        """H×W×3 uint8 RGB."""

    def labels(self, sequence: int, frame: int) -> np.ndarray | None:
        """H×W uint8 class ids, or None for an unlabelled frame."""

    def homography(self, sequence: int, prev: int, cur: int, prev_image: np.ndarray, cur_image: np.ndarray
                   ) -> np.ndarray | None:
        """3×3 previous → current pixels, or None where it cannot be found (the images: as ``image`` gave them)."""

    def flow(self, sequence: int, prev: int, cur: int, prev_image: np.ndarray, cur_image: np.ndarray) -> PairFlow:
        """Flow of the pair in both directions."""

    def name(self, sequence: int, frame: int) -> str:
        """A frame's name for error messages."""

    def frame_key(self, sequence: int, frame: int) -> str:
        """A frame's identity as a relative path (``a/b/000042``): what caches of per-frame results are keyed by."""


def generate_sequence(scenario: SyntheticConfig, frames: int, seed: int, keep_flow: bool = False) -> Sequence:
    """The frames of ``SyntheticVideo(scenario, frames, seed)``, cached in memory for the process.

    Flow is dropped (2 MB per frame at 384×640) unless ``keep_flow`` (validation and flow losses need it), and
    the sky mask always (training reads labels, where the sky is clutter).
    """
    key = json.dumps([to_dict(scenario), frames, seed, keep_flow], sort_keys=True)
    if key not in _CACHE:
        video = SyntheticVideo(scenario, frames=frames, seed=seed)
        _CACHE[key] = [replace(f, sky=None) if keep_flow else replace(f, flow=None, valid=None, sky=None)
                       for f in video]
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


def _pixel_grid(height: int, width: int) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return np.stack([xs, ys], axis=-1)


def _nearest(points: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rounded (rows, cols) of H×W×2 points, clipped into the frame, and whether they were inside."""
    cols = np.round(points[..., 0]).astype(np.int64)
    rows = np.round(points[..., 1]).astype(np.int64)
    inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    return np.clip(rows, 0, height - 1), np.clip(cols, 0, width - 1), inside


def synthetic_pair_flow(frames: list[SyntheticFrame]) -> PairFlow:
    """The flow between ``frames[0]`` and ``frames[-1]``, given every frame in between (consecutive frames of a
    synthetic video generated with its flow)."""
    if len(frames) < 2:
        raise ValueError(f"a pair needs at least 2 frames, got {len(frames)}")
    if any(f.flow is None or f.valid is None for f in frames[:-1]):
        raise SspError("synthetic frames without flow: generate the sequence with keep_flow=True")
    height, width = frames[0].labels.shape
    grid = _pixel_grid(height, width)
    position = grid + frames[0].flow
    valid = frames[0].valid.copy()
    for frame in frames[1:-1]:  # chain the per-frame steps
        rows, cols, inside = _nearest(position, height, width)
        valid &= inside & frame.valid[rows, cols]
        position = position + frame.flow[rows, cols]
    forward = (position - grid).astype(np.float32)

    homography = relative_homography(frames[0], frames[-1])
    target = _apply_homography(np.linalg.inv(homography), grid)
    backward = (target - grid).astype(np.float32)
    rows, cols, inside = _nearest(target, height, width)
    returned = target + forward[rows, cols]  # back in frame k: where the exact forward flow takes the target
    round_trip = np.linalg.norm(returned - grid, axis=-1)
    backward_valid = inside & valid[rows, cols] & (round_trip <= ROUND_TRIP_PX)
    return PairFlow(forward, valid, backward, backward_valid)


def _apply_homography(homography: np.ndarray, points: np.ndarray) -> np.ndarray:
    """H×W×2 points mapped by a 3×3 homography."""
    p = points.astype(np.float64) @ homography[:, :2].T + homography[:, 2]
    return (p[..., :2] / p[..., 2:3]).astype(np.float32)


class SyntheticSource:
    """Synthetic sequences in memory: every frame labelled, exact homography and flow (needs the sequences
    generated with ``keep_flow`` for ``flow``). ``keys`` name the sequences in frame keys (e.g. scenario digest
    and seed); by default ``synthetic/<index>``."""

    def __init__(self, sequences: list[Sequence], keys: list[str] | None = None) -> None:
        if keys is not None and len(keys) != len(sequences):
            raise ValueError(f"{len(keys)} keys for {len(sequences)} sequences")
        self.sequences = sequences
        self.keys = keys or [f"synthetic/{i}" for i in range(len(sequences))]

    def labelled(self) -> list[tuple[int, int]]:
        return [(s, k) for s, sequence in enumerate(self.sequences) for k in range(len(sequence))]

    def shape(self, sequence: int, frame: int) -> tuple[int, int]:
        return self.sequences[sequence][frame].labels.shape

    def has_frame(self, sequence: int, frame: int) -> bool:
        return 0 <= frame < len(self.sequences[sequence])

    def image(self, sequence: int, frame: int) -> np.ndarray:
        return self.sequences[sequence][frame].image

    def labels(self, sequence: int, frame: int) -> np.ndarray:
        return self.sequences[sequence][frame].labels

    def homography(self, sequence: int, prev: int, cur: int, prev_image: np.ndarray, cur_image: np.ndarray
                   ) -> np.ndarray:
        frames = self.sequences[sequence]
        return relative_homography(frames[prev], frames[cur])

    def flow(self, sequence: int, prev: int, cur: int, prev_image: np.ndarray, cur_image: np.ndarray) -> PairFlow:
        return synthetic_pair_flow(self.sequences[sequence][prev : cur + 1])

    def name(self, sequence: int, frame: int) -> str:
        return f"synthetic sequence {sequence} frame {frame}"

    def frame_key(self, sequence: int, frame: int) -> str:
        return f"{self.keys[sequence]}/{frame:06d}"


class VideoSource:
    """A real data set's sequences (``ssp_train.datasets``), read lazily from disk.

    Frames and labels are resized to ``frame_size`` (H, W) when it is set (area / nearest interpolation);
    labels are decoded strictly by ``decoder``. ``flow`` is required only by datasets that return flow.
    """

    def __init__(self, sequences: list[VideoSequence], decoder: LabelDecoder,
                 frame_size: tuple[int, int] | None = None, flow: FlowProvider | None = None,
                 registration: RegistrationConfig | None = None) -> None:
        self.sequences, self.decoder, self.frame_size = sequences, decoder, frame_size
        self.flow_provider, self.registration = flow, registration or RegistrationConfig()

    @property
    def classes(self) -> ClassSet:
        return self.decoder.classes

    def labelled(self) -> list[tuple[int, int]]:
        return [(s, item.frame) for s, sequence in enumerate(self.sequences) for item in sequence.labelled]

    def _item(self, sequence: int, frame: int):
        return next((item for item in self.sequences[sequence].labelled if item.frame == frame), None)

    def shape(self, sequence: int, frame: int) -> tuple[int, int]:
        if self.frame_size is not None:
            return self.frame_size
        return self._item(sequence, frame).size

    def has_frame(self, sequence: int, frame: int) -> bool:
        return self.sequences[sequence].has_frame(frame)

    def image(self, sequence: int, frame: int) -> np.ndarray:
        image = read_image(self.sequences[sequence].image_path(frame))
        if self.frame_size is not None and image.shape[:2] != self.frame_size:
            image = cv2.resize(image, self.frame_size[::-1], interpolation=cv2.INTER_AREA)
        return image

    def labels(self, sequence: int, frame: int) -> np.ndarray | None:
        item = self._item(sequence, frame)
        if item is None:
            return None
        labels = self.decoder(item.labels)
        if labels.shape != item.size:
            raise SspError(f"{item.labels}: label size {labels.shape[1]}x{labels.shape[0]} does not match its "
                           f"image {item.image} ({item.size[1]}x{item.size[0]})")
        if self.frame_size is not None and labels.shape != self.frame_size:
            labels = cv2.resize(labels, self.frame_size[::-1], interpolation=cv2.INTER_NEAREST)
        return labels

    def homography(self, sequence: int, prev: int, cur: int, prev_image: np.ndarray, cur_image: np.ndarray
                   ) -> np.ndarray | None:
        result = estimate_homography(prev_image, cur_image, self.registration)
        return result.homography if result.ok else None

    def flow(self, sequence: int, prev: int, cur: int, prev_image: np.ndarray, cur_image: np.ndarray) -> PairFlow:
        if self.flow_provider is None:
            raise SspError("this real-video source has no flow estimator: pass flow= to VideoSource")
        return self.flow_provider(self.sequences[sequence].name, prev, cur, prev_image, cur_image)

    def name(self, sequence: int, frame: int) -> str:
        return f"{self.sequences[sequence].name} frame {frame}"

    def frame_key(self, sequence: int, frame: int) -> str:
        size = "native" if self.frame_size is None else f"{self.frame_size[0]}x{self.frame_size[1]}"
        return f"{size}/{self.sequences[sequence].name}/{frame:06d}"

"""Where training frames come from, behind one small interface (``FrameSource``) that the datasets of
``ssp_train.data`` read: synthetic video in memory (``SyntheticSource``) or a real data set on disk
(``VideoSource``).

A source addresses frames as (sequence index, frame number) and gives, for each, the RGB image, the labels
(None for an unlabelled video frame), the homography between two frames of a sequence (exact for synthetic
video, estimated by ``ssp_ros.registration`` for real video; None when registration fails) and the flow of a
pair in both directions (``ssp_train.pair_flow``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import cv2
import numpy as np

from ssp_ros.classes import ClassSet
from ssp_ros.config import RegistrationConfig
from ssp_ros.errors import SspError
from ssp_ros.registration import estimate_homography
from ssp_ros.synthetic import relative_homography
from ssp_train.datasets import VideoSequence
from ssp_train.labels import LabelDecoder, read_image
from ssp_train.pair_flow import PairFlow, synthetic_pair_flow
from ssp_train.synthetic_data import Sequence

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

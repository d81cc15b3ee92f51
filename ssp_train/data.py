"""Training data: synthetic drone video generated in memory, as single labelled frames or frame pairs.

Frames come from ``ssp_ros.synthetic.SyntheticVideo`` (uint8 RGB, uint8 UAVid labels, the exact
world→image homography) and are cached per (scenario, frames, seed) for the life of the process, so the
image stage and the SSP stage share one generation (a world takes ~5 s to build at the default size).

Augmentations are random square crops and horizontal flips. For a pair, the same crop and flip apply to
both frames and the previous→current homography is conjugated by that map, so it stays exact:
``H' = A·H·A⁻¹`` with ``A`` the frame→augmented pixel map. Training uses the generator's exact background
homography; at inference the registration module estimates it from keypoints (with its errors).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from ssp_ros.config import SyntheticConfig, to_dict
from ssp_ros.errors import ConfigError
from ssp_ros.registration import cells_to_previous
from ssp_ros.synthetic import SyntheticFrame, SyntheticVideo, relative_homography

Sequence = list[SyntheticFrame]  # one video's frames, in order

_CACHE: dict[str, Sequence] = {}


def generate_sequence(scenario: SyntheticConfig, frames: int, seed: int, keep_flow: bool = False) -> Sequence:
    """The frames of ``SyntheticVideo(scenario, frames, seed)``, cached in memory for the process.

    Flow is dropped (2 MB per frame at 384×640) unless ``keep_flow`` (validation needs it for TC).
    """
    key = json.dumps([to_dict(scenario), frames, seed, keep_flow], sort_keys=True)
    if key not in _CACHE:
        video = SyntheticVideo(scenario, frames=frames, seed=seed)
        _CACHE[key] = [f if keep_flow else dataclasses.replace(f, flow=None, valid=None) for f in video]
    return _CACHE[key]


def clear_cache() -> None:
    """Forget every cached sequence (frees the memory)."""
    _CACHE.clear()


def generate_sequences(scenario: SyntheticConfig, frames: int, seeds: list[int], progress: bool = True
                       ) -> tuple[list[Sequence], float]:
    """``(sequences, seconds)``: one cached sequence per seed, with a progress bar over seeds."""
    from tqdm import tqdm

    start = time.perf_counter()
    sequences = [generate_sequence(scenario, frames, seed)
                 for seed in tqdm(seeds, desc="data", unit="seq", disable=not progress)]
    return sequences, time.perf_counter() - start


# ---------------------------------------------------------------------------------------------------------
# geometry of the augmentations (pixel centres at integers, as in ssp_ros.registration)


def crop_matrix(x0: int, y0: int) -> np.ndarray:
    """Frame pixels → pixels of the crop whose top-left pixel is (x0, y0)."""
    return np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]])


def flip_matrix(width: int) -> np.ndarray:
    """Pixels → pixels of the horizontally flipped image of ``width`` (x' = width − 1 − x)."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def conjugate(homography: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """The homography between two frames after both went through ``transform``: ``T·H·T⁻¹``, [2, 2] = 1."""
    out = transform @ homography @ np.linalg.inv(transform)
    return out / out[2, 2]


def _random_view(rng: np.random.Generator, height: int, width: int, crop: int, flip_prob: float
                 ) -> tuple[slice, slice, bool, np.ndarray]:
    """A random square crop (``crop`` 0 = whole frame) and flip: row/column slices, flip flag, pixel map."""
    ch, cw = (height, width) if crop == 0 else (crop, crop)
    y0 = int(rng.integers(0, height - ch + 1))
    x0 = int(rng.integers(0, width - cw + 1))
    flip = bool(rng.random() < flip_prob)  # always drawn, so the flip probability never changes the crops
    transform = crop_matrix(x0, y0)
    if flip:
        transform = flip_matrix(cw) @ transform
    return slice(y0, y0 + ch), slice(x0, x0 + cw), flip, transform


def _view(array: np.ndarray, rows: slice, cols: slice, flip: bool) -> np.ndarray:
    out = array[rows, cols]
    return np.ascontiguousarray(out[:, ::-1] if flip else out)


def _image_tensor(image: np.ndarray) -> torch.Tensor:
    """H×W×3 uint8 RGB → 3×H×W float32 in 0..255 (the models normalise inside)."""
    return torch.from_numpy(image).permute(2, 0, 1).float()


def _item_rng() -> np.random.Generator:
    """A fresh generator drawn from torch's RNG, so ``torch.manual_seed`` (and DataLoader workers) seed it."""
    return np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))


def _check_crop(crop: int, height: int, width: int, key: str, multiple: int) -> None:
    if crop > min(height, width):
        raise ConfigError(f"{key}: crop {crop} does not fit frames of {height}x{width}")
    if crop == 0 and (height % multiple or width % multiple):
        raise ConfigError(f"{key}: 0 (whole frames) needs frame sizes divisible by {multiple}, frames are "
                          f"{height}x{width}: set data.frame_size or a crop size")


class FrameDataset(Dataset):
    """Single labelled frames for the image stage, randomly cropped and flipped (with ``flip_prob``).

    ``dataset[i]`` → ``(image 3×c×c float32 0..255, labels c×c int64)``.
    """

    def __init__(self, sequences: list[Sequence], crop_size: int, flip_prob: float = 0.5, multiple: int = 32,
                 key: str = "image.crop_size") -> None:
        self.frames = [frame for sequence in sequences for frame in sequence]
        if not self.frames:
            raise ConfigError("data: no frames to train on")
        height, width = self.frames[0].labels.shape
        _check_crop(crop_size, height, width, key, multiple)
        self.crop_size, self.flip_prob = crop_size, flip_prob

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        frame = self.frames[index]
        rows, cols, flip, _ = _random_view(_item_rng(), *frame.labels.shape, self.crop_size, self.flip_prob)
        image = _view(frame.image, rows, cols, flip)
        labels = _view(frame.labels, rows, cols, flip)
        return _image_tensor(image), torch.from_numpy(labels).long()


class ClipDataset(Dataset):
    """Clips of ``length`` frames (k − (length − 1)·gap, …, k) for the SSP stage, one gap per clip
    (``frame_gap``: inclusive range), with one random crop and flip shared by all frames of the clip.

    ``dataset[i]`` → dict of ``images`` (L×3×c×c float32 0..255), ``labels`` (L×c×c int64), ``homography``
    ((L−1)×3×3 float64, frame t−1 → t augmented pixels, exact background motion) and ``to_previous``
    ((L−1)×3×3 float32, frame t → t−1 stride-``stride`` cells: what ``WarpFusionStep`` takes).
    """

    def __init__(self, sequences: list[Sequence], crop_size: int, frame_gap: tuple[int, int] = (1, 1),
                 flip_prob: float = 0.5, stride: int = 4, multiple: int = 32, key: str = "ssp.crop_size",
                 length: int = 2) -> None:
        self.sequences, self.length = sequences, length
        self.min_gap, self.max_gap = frame_gap
        span = self.min_gap * (length - 1)
        # every last frame that has enough history for the smallest gap
        self.items = [(s, k) for s, sequence in enumerate(sequences) for k in range(span, len(sequence))]
        if not self.items:
            raise ConfigError(f"data.frame_gap: no clips of {length} frames with gap {self.min_gap} in sequences "
                              f"of {min(map(len, sequences), default=0)} frames")
        height, width = sequences[0][0].labels.shape
        _check_crop(crop_size, height, width, key, multiple)
        if crop_size % stride:
            raise ConfigError(f"{key}: {crop_size} is not a multiple of the stride {stride}")
        self.crop_size, self.flip_prob, self.stride = crop_size, flip_prob, stride

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        s, k = self.items[index]
        rng = _item_rng()
        gap = int(rng.integers(self.min_gap, min(self.max_gap, k // (self.length - 1)) + 1))
        frames = [self.sequences[s][k - gap * (self.length - 1 - t)] for t in range(self.length)]
        rows, cols, flip, transform = _random_view(rng, *frames[-1].labels.shape, self.crop_size, self.flip_prob)
        homographies, to_previous = [], []
        for prev, cur in zip(frames[:-1], frames[1:]):
            homography = conjugate(relative_homography(prev, cur), transform)
            homographies.append(homography)
            to_previous.append(cells_to_previous(homography, self.stride))
        return {
            "images": torch.stack([_image_tensor(_view(f.image, rows, cols, flip)) for f in frames]),
            "labels": torch.stack([torch.from_numpy(_view(f.labels, rows, cols, flip)).long() for f in frames]),
            "homography": torch.from_numpy(np.stack(homographies)),
            "to_previous": torch.from_numpy(np.stack(to_previous)).float(),
        }


class PairDataset(ClipDataset):
    """Frame pairs (k − gap, k): clips of two frames, with the pair's fields named.

    ``dataset[i]`` → dict of ``prev``, ``cur`` (3×c×c float32 0..255), ``labels`` / ``prev_labels`` (c×c
    int64), ``homography`` (3×3 float64, previous → current augmented pixels) and ``to_previous`` (3×3
    float32, current → previous stride-``stride`` cells).
    """

    def __init__(self, sequences: list[Sequence], crop_size: int, frame_gap: tuple[int, int] = (1, 1),
                 flip_prob: float = 0.5, stride: int = 4, multiple: int = 32, key: str = "ssp.crop_size") -> None:
        super().__init__(sequences, crop_size, frame_gap, flip_prob, stride, multiple, key, length=2)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        clip = super().__getitem__(index)
        return {"prev": clip["images"][0], "cur": clip["images"][1], "labels": clip["labels"][1],
                "prev_labels": clip["labels"][0], "homography": clip["homography"][0],
                "to_previous": clip["to_previous"][0]}


def batches(dataset: Dataset, batch_size: int, seed: int) -> Iterator:
    """Endless shuffled batches (epoch after epoch; with replacement when the set is smaller than a batch)."""
    generator = torch.Generator().manual_seed(seed)
    n = len(dataset)
    sampler = RandomSampler(dataset, replacement=n < batch_size, num_samples=max(n, batch_size), generator=generator)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True, num_workers=0)
    while True:
        yield from loader

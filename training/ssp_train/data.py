"""Training datasets over a frame source (``ssp_train.sources``): single labelled frames for the image stage,
frame pairs and clips for the SSP stage, and the loaders that feed them to each process.

Every sample is augmented with one random square crop, flip and photometric jitter shared by all frames of a
clip (``ssp_train.augment``); the previous → current homography is conjugated by the crop/flip map, so it
stays exact for synthetic video (``H' = A·H·A⁻¹``); real video uses the registration's estimate, as at run time.

Which samples each process trains on at each step is a pure function of (seed, step, rank), so that a resumed run
sees exactly the batches an uninterrupted one would have seen, on any number of DataLoader workers.
``StepBatchSampler`` shards every epoch with ``torch.utils.data.DistributedSampler`` (epoch e shuffled with
seed + e, one shard per rank) and cuts the concatenated epochs into batches; batch ``b`` of a run is the same
whether the run started at 0 or resumed at ``b``. Each sample key is ``(index, sample_seed)``: the dataset
draws its augmentation from ``sample_rng(key)``, never from global random state (a plain index also works,
seeded from torch's RNG).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from ssp_ros.classes import load_class_set
from ssp_ros.errors import ConfigError, SspError
from ssp_ros.geometry import cells_to_previous
from ssp_train.augment import View, conjugate, random_jitter, random_view
from ssp_train.config import TrainConfig
from ssp_train.datasets import LabelDecoder, index_dataset, label_encoding
from ssp_train.sources import FlowProvider, FrameSource, VideoSource
from ssp_train.teacher import TeacherCache

MAX_REDRAWS = 20  # a clip whose registration fails is replaced by another one drawn at random, at most this often
NO_JITTER = (0.0, 0.0, 0.0)
SampleKey = int | tuple[int, int]  # a dataset index, or (index, seed of its augmentation)


def sample_rng(key: SampleKey) -> tuple[int, np.random.Generator]:
    """``(index, generator)`` of a sample key; a plain index draws its seed from torch's global RNG (tests,
    interactive use), so ``torch.manual_seed`` still makes it repeatable."""
    if isinstance(key, tuple):
        index, seed = key
    else:
        index, seed = key, int(torch.randint(0, 2**62, ()).item())
    return int(index), np.random.default_rng(seed)


def sample_seed(seed: int, step: int, rank: int, slot: int) -> int:
    """The augmentation seed of the ``slot``-th sample of batch ``step`` on ``rank``."""
    return int(np.random.SeedSequence([seed, step, rank, slot]).generate_state(1, np.uint64)[0] >> 2)


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Endless batches of ``batch_size`` sample keys for one rank, starting at batch ``start``.

    Epochs (permutations of the dataset, padded to a multiple of ``world_size`` and sharded as
    ``DistributedSampler`` does) are concatenated, so a dataset smaller than a batch is simply cycled.
    """

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 start: int = 0) -> None:
        if len(dataset) == 0:
            raise ValueError("cannot sample batches from an empty dataset")
        self.shards = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
        self.batch_size, self.seed, self.rank, self.start = batch_size, seed, rank, start
        self._epoch: tuple[int, list[int]] = (-1, [])

    def _shard(self, epoch: int) -> list[int]:
        if self._epoch[0] != epoch:
            self.shards.set_epoch(epoch)
            self._epoch = (epoch, list(self.shards))
        return self._epoch[1]

    def batch(self, step: int) -> list[tuple[int, int]]:
        """The sample keys of batch ``step``."""
        per_epoch = self.shards.num_samples
        keys = []
        for slot in range(self.batch_size):
            epoch, offset = divmod(step * self.batch_size + slot, per_epoch)
            keys.append((self._shard(epoch)[offset], sample_seed(self.seed, step, self.rank, slot)))
        return keys

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start
        while True:
            yield self.batch(step)
            step += 1


def _image_tensor(image: np.ndarray) -> torch.Tensor:
    """H×W×3 uint8 RGB → 3×H×W float32 in 0..255 (the models normalise inside)."""
    return torch.from_numpy(image).permute(2, 0, 1).float()


def _check_crop(source: FrameSource, items: list[tuple[int, int]], crop: int, key: str, multiple: int) -> None:
    """The crop fits every frame; whole frames (0) need one size, divisible by ``multiple``."""
    shapes = {source.shape(s, k) for s, k in items}
    height, width = min(h for h, _ in shapes), min(w for _, w in shapes)
    if crop > min(height, width):
        raise ConfigError(f"{key}: crop {crop} does not fit frames of {height}x{width}")
    if crop == 0 and (len(shapes) > 1 or height % multiple or width % multiple):
        sizes = ", ".join(f"{h}x{w}" for h, w in sorted(shapes))
        raise ConfigError(f"{key}: 0 (whole frames) needs one frame size divisible by {multiple}, frames are "
                          f"{sizes}: set data.frame_size or a crop size")


class FrameDataset(Dataset):
    """Labelled frames for the image stage, randomly cropped, flipped (``flip_prob``) and jittered.

    ``dataset[key]`` → ``(image 3×c×c float32 0..255, labels c×c int64)``.
    """

    def __init__(self, source: FrameSource, crop_size: int, flip_prob: float = 0.5, multiple: int = 32,
                 key: str = "image.crop_size", jitter: tuple[float, float, float] = NO_JITTER) -> None:
        self.source, self.items = source, source.labelled()
        if not self.items:
            raise SspError("data: no labelled frames to train on")
        _check_crop(source, self.items, crop_size, key, multiple)
        self.crop_size, self.flip_prob, self.jitter = crop_size, flip_prob, jitter

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: SampleKey) -> tuple[torch.Tensor, torch.Tensor]:
        index, rng = sample_rng(key)
        s, k = self.items[index]
        image, labels = self.source.image(s, k), self.source.labels(s, k)
        view = random_view(rng, *labels.shape, self.crop_size, self.flip_prob)
        jitter = random_jitter(rng, self.jitter)
        return _image_tensor(jitter.apply(view.apply(image))), torch.from_numpy(view.apply(labels)).long()


class ClipDataset(Dataset):
    """Clips of ``length`` frames (k − (length − 1)·gap, …, k) ending at a labelled frame k, for the SSP stage,
    with one gap per clip drawn from ``frame_gap`` (inclusive) among those whose frames exist, and one random
    crop, flip and jitter shared by all frames of the clip.

    ``dataset[key]`` → dict of ``images`` (L×3×c×c float32 0..255), ``labels`` (L×c×c int64; 255 on unlabelled
    frames), ``homography`` ((L−1)×3×3 float64, frame t−1 → t augmented pixels) and ``to_previous`` ((L−1)×3×3
    float32, frame t → t−1 stride-``stride`` cells: what ``WarpFusionStep`` takes). With ``with_flow`` also
    ``flow_forward`` / ``flow_backward`` ((L−1)×2×c×c float32, t−1 → t and t → t−1) and ``valid_forward`` /
    ``valid_backward`` ((L−1)×1×c×c bool). With ``teacher`` (a ``TeacherCache``) also ``teacher``: L×K×c×c float32
    teacher logits of the whole (unjittered) frames, under the same crop and flip. A clip whose registration
    fails (real video) is replaced by another.
    """

    def __init__(self, source: FrameSource, crop_size: int, frame_gap: tuple[int, int] = (1, 1),
                 flip_prob: float = 0.5, stride: int = 4, multiple: int = 32, key: str = "ssp.crop_size",
                 length: int = 2, jitter: tuple[float, float, float] = NO_JITTER, with_flow: bool = False,
                 teacher: TeacherCache | None = None) -> None:
        self.source, self.length, self.teacher = source, length, teacher
        self.min_gap, self.max_gap = frame_gap
        # every labelled frame that has its history at the smallest gap
        self.items = [(s, k) for s, k in source.labelled() if all(self._has(s, k, self.min_gap))]
        if not self.items:
            raise ConfigError(f"data.frame_gap: no clips of {length} frames with gap {self.min_gap}: the labelled "
                              f"frames have no video frames {self.min_gap} apart before them")
        _check_crop(source, self.items, crop_size, key, multiple)
        if crop_size % stride:
            raise ConfigError(f"{key}: {crop_size} is not a multiple of the stride {stride}")
        self.crop_size, self.flip_prob, self.stride = crop_size, flip_prob, stride
        self.jitter, self.with_flow = jitter, with_flow

    def _has(self, s: int, k: int, gap: int) -> list[bool]:
        return [self.source.has_frame(s, k - gap * t) for t in range(1, self.length)]

    def __len__(self) -> int:
        return len(self.items)

    def frames_used(self) -> list[tuple[int, int]]:
        """Every (sequence, frame) a clip may read, in order (what a teacher cache must hold)."""
        used = set()
        for s, k in self.items:
            for gap in range(self.min_gap, self.max_gap + 1):
                if all(self._has(s, k, gap)):
                    used.update((s, k - gap * t) for t in range(self.length))
        return sorted(used)

    def _frames(self, rng: np.random.Generator, index: int) -> tuple[int, list[int], list[np.ndarray], list]:
        """A clip's sequence, frame numbers, images and homographies, redrawn while registration fails."""
        for _ in range(MAX_REDRAWS):
            s, k = self.items[index]
            gaps = [g for g in range(self.min_gap, self.max_gap + 1) if all(self._has(s, k, g))]
            gap = gaps[int(rng.integers(len(gaps)))]
            frames = [k - gap * (self.length - 1 - t) for t in range(self.length)]
            images = [self.source.image(s, f) for f in frames]
            if len({image.shape for image in images}) > 1:
                raise SspError(f"{self.source.name(s, k)}: the frames of a clip differ in size: set data.frame_size")
            homographies = [self.source.homography(s, a, b, images[t], images[t + 1])
                            for t, (a, b) in enumerate(zip(frames[:-1], frames[1:]))]
            if all(h is not None for h in homographies):
                return s, frames, images, homographies
            index = int(rng.integers(len(self.items)))
        raise SspError(f"registration failed on {MAX_REDRAWS} clips in a row (last: {self.source.name(s, k)}, frames "
                       f"{frames}): are these frames of one video, in order?")

    def _flows(self, s: int, frames: list[int], images: list[np.ndarray], view: View) -> dict[str, torch.Tensor]:
        fields: dict[str, list[torch.Tensor]] = {"flow_forward": [], "valid_forward": [], "flow_backward": [],
                                                 "valid_backward": []}
        for t, (a, b) in enumerate(zip(frames[:-1], frames[1:])):
            pair = self.source.flow(s, a, b, images[t], images[t + 1])
            for name, flow, valid in (("forward", pair.forward, pair.forward_valid),
                                      ("backward", pair.backward, pair.backward_valid)):
                flow, valid = view.apply_flow(flow, valid)
                fields[f"flow_{name}"].append(torch.from_numpy(flow).permute(2, 0, 1))
                fields[f"valid_{name}"].append(torch.from_numpy(valid)[None])
        return {name: torch.stack(values) for name, values in fields.items()}

    def __getitem__(self, key: SampleKey) -> dict[str, torch.Tensor]:
        index, rng = sample_rng(key)
        s, frames, images, homographies = self._frames(rng, index)
        view = random_view(rng, *images[-1].shape[:2], self.crop_size, self.flip_prob)
        jitter = random_jitter(rng, self.jitter)
        labels = []
        for f, image in zip(frames, images):
            frame_labels = self.source.labels(s, f)
            if frame_labels is None:  # an unlabelled video frame
                frame_labels = np.full(image.shape[:2], 255, np.uint8)
            labels.append(torch.from_numpy(view.apply(frame_labels)).long())
        homographies = [conjugate(h, view.transform) for h in homographies]
        sample = {
            "images": torch.stack([_image_tensor(jitter.apply(view.apply(image))) for image in images]),
            "labels": torch.stack(labels),
            "homography": torch.from_numpy(np.stack(homographies)),
            "to_previous": torch.from_numpy(np.stack([cells_to_previous(h, self.stride) for h in homographies])
                                            ).float(),
        }
        if self.with_flow:
            sample.update(self._flows(s, frames, images, view))
        if self.teacher is not None:
            logits = [self.teacher.logits(s, f, image).permute(1, 2, 0).numpy() for f, image in zip(frames, images)]
            sample["teacher"] = torch.stack([torch.from_numpy(view.apply(x)).permute(2, 0, 1) for x in logits])
        return sample


class PairDataset(ClipDataset):
    """Frame pairs (k − gap, k): clips of two frames, with the pair's fields named.

    ``dataset[key]`` → dict of ``prev``, ``cur`` (3×c×c float32 0..255), ``labels`` / ``prev_labels`` (c×c
    int64), ``homography`` (3×3 float64, previous → current augmented pixels) and ``to_previous`` (3×3
    float32, current → previous stride-``stride`` cells); with ``with_flow`` also ``flow_forward``,
    ``flow_backward`` (2×c×c) and ``valid_forward``, ``valid_backward`` (1×c×c bool).
    """

    def __init__(self, source: FrameSource, crop_size: int, frame_gap: tuple[int, int] = (1, 1),
                 flip_prob: float = 0.5, stride: int = 4, multiple: int = 32, key: str = "ssp.crop_size",
                 jitter: tuple[float, float, float] = NO_JITTER, with_flow: bool = False,
                 teacher: TeacherCache | None = None) -> None:
        super().__init__(source, crop_size, frame_gap, flip_prob, stride, multiple, key, length=2, jitter=jitter,
                         with_flow=with_flow, teacher=teacher)

    def __getitem__(self, key: SampleKey) -> dict[str, torch.Tensor]:
        clip = super().__getitem__(key)
        pair = {"prev": clip["images"][0], "cur": clip["images"][1], "labels": clip["labels"][1],
                "prev_labels": clip["labels"][0], "homography": clip["homography"][0],
                "to_previous": clip["to_previous"][0]}
        for name in ("flow_forward", "flow_backward", "valid_forward", "valid_backward"):
            if name in clip:
                pair[name] = clip[name][0]
        if "teacher" in clip:
            pair["prev_teacher"], pair["teacher"] = clip["teacher"][0], clip["teacher"][1]
        return pair


def batches(dataset: Dataset, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, start: int = 0,
            num_workers: int = 0, pin_memory: bool = False) -> Iterator:
    """Endless batches for one process, from batch ``start`` on (``StepBatchSampler``: resumable, sharded).

    The loader gets its own generator, so starting it draws nothing from torch's global RNG: that stays the
    model's (dropout), and a resumed run continues it exactly where the checkpoint left it.
    """
    sampler = StepBatchSampler(dataset, batch_size, seed, rank, world_size, start)
    generator = torch.Generator().manual_seed(seed + 1000 * rank)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, pin_memory=pin_memory,
                        persistent_workers=num_workers > 0, generator=generator)
    return iter(loader)


def video_source(cfg: TrainConfig, flow: FlowProvider | None = None) -> VideoSource:
    """The recipe's real data set (``data.source``, ``root``, ``split``), indexed and checked, at
    ``data.frame_size``, with labels decoded for ``model.dataset``."""
    data = cfg.data
    if data.source == "synthetic":
        raise ConfigError("data.source: 'synthetic' has no files on disk; set uavid or ruralscapes and data.root")
    sequences = index_dataset(data.source, data.root, data.split)
    classes = load_class_set(cfg.model.dataset)
    decoder = LabelDecoder(classes, label_encoding(data.source, classes.name))
    return VideoSource(sequences, decoder, data.frame_size, flow)

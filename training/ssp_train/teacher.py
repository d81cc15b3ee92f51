"""The KD-SSP teacher: loading it from its weights file, and its logits cached on disk.

The teacher is a larger image model (``config/train/teacher.yaml``); its architecture comes from the weights
file's metadata (``backbone``, ``decoder_channels``, ``num_classes``), so the KD recipe names only the file.
Running it over every training frame once, before the KD stage, and reading its logits back each epoch keeps
the KD steps as cheap as SSP steps. One file per frame::

    <cache>/<teacher sha256[:16]>/<frame key>.npz   (float16 logits at the teacher's stride, K×h×w)

The folder is keyed by the teacher weights' hash, so retraining the teacher never reads old logits. Each file
also records the full hash, the frame key and a digest of the frame's pixels; a file whose record does not
match (the data changed under the same frame key, or a file copied between folders) is a stale-cache error
naming it, never silently used.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ssp_ros.config import ModelConfig
from ssp_ros.errors import SspError
from ssp_ros.models import Segmenter, build_segmenter, read_weights_metadata
from ssp_train.sources import FrameSource

TEACHER_KEYS = ("backbone", "decoder_channels", "num_classes", "dataset")  # metadata the teacher is built from


def image_digest(image: np.ndarray) -> str:
    """A short digest of a frame's pixels and shape: detects data that changed under the same frame key."""
    return hashlib.blake2b(np.ascontiguousarray(image).tobytes() + str(image.shape).encode(), digest_size=12
                           ).hexdigest()


def load_teacher(path: str | Path, num_classes: int, dataset: str) -> Segmenter:
    """The teacher image model of a weights file (image-model or SSP kind), in eval mode without gradients.

    Raises ``SspError`` naming the file when it lacks the metadata to build it or was trained for other classes.
    """
    meta = read_weights_metadata(path)
    missing = [key for key in TEACHER_KEYS if key not in meta]
    if missing:
        raise SspError(f"kd.teacher {path}: the weights file has no {', '.join(missing)} in its metadata: save it "
                       "with ssp train (output.model: image)")
    if meta["num_classes"] != num_classes or meta["dataset"] != dataset:
        raise SspError(f"kd.teacher {path}: trained for {meta['num_classes']} classes of '{meta['dataset']}', the "
                       f"student has {num_classes} of '{dataset}'")
    cfg = ModelConfig(backbone=meta["backbone"], decoder_channels=meta["decoder_channels"], dataset=dataset,
                      weights=str(path))
    return build_segmenter(cfg, num_classes).eval().requires_grad_(False)


class TeacherCache:
    """The cached logits of one teacher (by its weights' hash) for the frames of one ``FrameSource``.

    Picklable (DataLoader workers read it). ``logits(sequence, frame, image)`` → K×H×W float32 logits at the
    frame's full size (bilinear upsampling, as at inference); ``fill`` computes what is missing.
    """

    def __init__(self, root: str | Path, teacher_hash: str, source: FrameSource) -> None:
        self.folder = Path(root) / teacher_hash[:16]
        self.teacher_hash, self.source = teacher_hash, source

    def path(self, sequence: int, frame: int) -> Path:
        return self.folder / f"{self.source.frame_key(sequence, frame)}.npz"

    def missing(self, frames: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
        """The frames (sequence, frame) without a cache file."""
        return [item for item in frames if not self.path(*item).is_file()]

    @torch.no_grad()
    def fill(self, teacher: Segmenter, frames: list[tuple[int, int]], device: torch.device, batch_size: int = 4,
             progress: bool = False) -> int:
        """Run the teacher over ``frames`` (whole frames, padded to its input multiple) and write their files
        atomically; returns how many were written."""
        from tqdm import tqdm

        multiple = teacher.input_multiple
        for start in tqdm(range(0, len(frames), batch_size), desc="teacher", unit="batch", disable=not progress):
            chunk = frames[start:start + batch_size]
            images = [self.source.image(s, f) for s, f in chunk]
            shapes = {image.shape for image in images}
            if len(shapes) > 1:  # frames of different sizes: one at a time
                for item in chunk:
                    self.fill(teacher, [item], device, 1)
                continue
            x = torch.stack([torch.from_numpy(image).permute(2, 0, 1).float() for image in images]).to(device)
            h, w = x.shape[-2:]
            x = F.pad(x, (0, (-w) % multiple, 0, (-h) % multiple))
            logits, _ = teacher(x)
            for (s, f), image, out in zip(chunk, images, logits.half().cpu().numpy()):
                self._write(s, f, image, out, x.shape[-2:])
        return len(frames)

    def _write(self, sequence: int, frame: int, image: np.ndarray, logits: np.ndarray, padded: torch.Size) -> None:
        path = self.path(sequence, frame)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        with tmp.open("wb") as f:
            np.savez(f, logits=logits, padded=np.array(list(padded), np.int64), teacher=np.array(self.teacher_hash),
                     frame=np.array(self.source.frame_key(sequence, frame)), digest=np.array(image_digest(image)))
        os.replace(tmp, path)

    def logits(self, sequence: int, frame: int, image: np.ndarray) -> torch.Tensor:
        """The teacher's K×H×W float32 logits of a frame (``image``: as the source gave it, for the digest check)."""
        path = self.path(sequence, frame)
        if not path.is_file():
            raise SspError(f"{path}: no cached teacher logits for {self.source.name(sequence, frame)}: the cache "
                           "is filled before the KD stage; was it deleted while training?")
        try:
            with np.load(path) as data:
                record = {k: data[k] for k in ("logits", "padded", "teacher", "frame", "digest")}
        except (OSError, ValueError, KeyError) as err:
            raise SspError(f"{path}: unreadable teacher-logits file ({type(err).__name__}: {err}); delete it to "
                           "recompute") from None
        stale = [name for name, want in (("teacher", self.teacher_hash),
                                         ("frame", self.source.frame_key(sequence, frame)),
                                         ("digest", image_digest(image))) if str(record[name]) != want]
        if stale:
            raise SspError(f"{path}: stale teacher-logits cache ({', '.join(stale)} differ from this run's "
                           f"{self.source.name(sequence, frame)}): delete {self.folder} to recompute")
        h, w = image.shape[:2]
        logits = torch.from_numpy(record["logits"]).float()[None]
        up = F.interpolate(logits, size=tuple(int(v) for v in record["padded"]), mode="bilinear",
                           align_corners=False)
        return up[0, :, :h, :w]

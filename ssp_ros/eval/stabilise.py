"""``ssp stabilise``: another segmenter's label images over a clip, made temporally consistent, with a report.

The segmentation comes from a folder (MASKS) or from a segmenter run here (``--segmenter``: a YAML of an ONNX model,
``backends/external.py``). FRAMES is a video, a folder of images or an ``ssp synth`` folder; MASKS a folder of label
PNGs (8- or 16-bit, one channel, each of its frame's size) or of ``.npy`` soft scores (K×h×w float probabilities or
logits, any h×w), matched to the frames by sorted file name, one per frame. Every mask (every score file's shape and
type) is read and checked before anything runs, and the output folder is written beside OUT and moved into place
only when complete, so a bad input or a failure leaves nothing half-written. OUT gets ``masks/`` (the stabilised
labels, under the input masks' file names and dtype), ``overlay.mp4`` (before | after, in the colours of
``--classes`` or numbered ones), ``report.json`` and ``report.md``: TC and the label-free change rate before and
after (flow: exact for an ``ssp synth`` folder, DIS otherwise), mIoU before and after where ground truth is given
(``--labels`` or the ``ssp synth`` folder's), and how registration went. ``ssp demo --segmenter`` writes the same
through ``write_stabilised``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from ssp_ros.classes import ClassSet, load_class_set, numbered_class_set, overlay
from ssp_ros.config import SspConfig
from ssp_ros.errors import FrameError, SspError
from ssp_ros.eval.clips import Clip, file_clip
from ssp_ros.eval.metrics import SequenceMetrics
from ssp_ros.eval.registration_health import RegistrationLog
from ssp_ros.eval.report import cell
from ssp_ros.eval.strip import titled
from ssp_ros.io import VideoWriter, commit_output, prepare_output, read_png, write_png
from ssp_ros.stabiliser import (
    VOID,
    VOID_16,
    StabilisedFrame,
    Stabiliser,
    check_labels,
    make_stabiliser,
    unknown_as_void,
)

if TYPE_CHECKING:
    from ssp_ros.backends.external import OnnxSegmenter



def mask_files(folder: Path, suffixes: tuple[str, ...] = (".png",)) -> list[Path]:
    """The label PNGs (or score files) of ``folder``, sorted by name: of the first suffix any file has."""
    if not folder.is_dir():
        raise SspError(f"{folder}: no such folder of label images (--masks)")
    for suffix in suffixes:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() == suffix)
        if files:
            return files
    raise SspError(f"{folder}: no label images ({' or '.join(suffixes)}) in this folder (--masks)")


def score_shapes(files: list[Path]) -> int:
    """Check every score file's header (a K×h×w float array, one K for all) without reading its values; → K."""
    classes = set()
    for path in files:
        try:
            scores = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            raise SspError(f"{path}: not a readable .npy array ({err})") from None
        if scores.ndim != 3 or scores.dtype.kind != "f":
            raise SspError(f"{path}: a {scores.dtype} array of shape {scores.shape}; soft scores are K×h×w floats")
        classes.add(scores.shape[0])
    if len(classes) > 1:
        raise SspError(f"{files[0].parent}: the score files disagree on the number of classes: {sorted(classes)}")
    return classes.pop()


def read_masks(files: list[Path]) -> list[np.ndarray]:
    """The label images, each one channel of class ids; errors name the file."""
    masks = [read_png(path, color=False) for path in files]
    for path, labels in zip(files, masks):
        if labels.ndim != 2:
            raise SspError(f"{path}: {labels.shape[2]} channels; a label image has one (class ids)")
    return masks


def check_mask(path: Path, labels: np.ndarray, frame_size: tuple[int, int], num_classes: int) -> np.ndarray:
    """``labels`` (one channel, from ``read_masks``) checked against its frame's size and the class count."""
    try:
        check_labels(labels, num_classes, frame_size)
    except FrameError as err:
        raise SspError(f"{path}: {err}") from None
    return labels


def largest_label(masks: list[np.ndarray]) -> int:
    """The largest class id in the masks, the unknown labels (``VOID``, ``VOID_16``) aside."""
    return max(int(m[(m != VOID) & (m != VOID_16)].max(initial=0)) for m in masks)


def infer_num_classes(masks: list[np.ndarray]) -> int:
    """The class count the masks imply: one more than the largest label (at least 2)."""
    return max(largest_label(masks) + 1, 2)


def clip_truth(clip_labels: list[np.ndarray] | None, num_classes: int) -> tuple[list[np.ndarray] | None, str]:
    """The clip's own labels (an ``ssp synth`` folder's, the synthetic flight's) as ground truth for mIoU when they
    use the segmenter's classes (ids below K), and why there is none otherwise."""
    if clip_labels is None:
        return None, "the frames come without labels"
    top = largest_label(clip_labels)
    if top >= num_classes:
        return None, f"the frames' own labels use class {top}, beyond the segmenter's {num_classes} classes"
    return clip_labels, ""


def ground_truth(labels_dir: Path | None, clip_labels: list[np.ndarray] | None, frames: list[np.ndarray],
                 num_classes: int) -> tuple[list[np.ndarray] | None, str]:
    """The ground truth for mIoU, and why there is none: ``--labels`` (checked like the masks), else the clip's
    own (``clip_truth``)."""
    if labels_dir is None:
        truth, why = clip_truth(clip_labels, num_classes)
        return truth, why and f"{why} (give --labels in the segmenter's classes)"
    files = mask_files(labels_dir)
    if len(files) != len(frames):
        raise SspError(f"{labels_dir}: {len(files)} label images for {len(frames)} frames (--labels: one per frame)")
    return [check_mask(f, m, image.shape[:2], num_classes) for f, m, image in zip(files, read_masks(files), frames)], ""


def class_set_for(classes: Path | None, num_classes: int | None, masks: list[np.ndarray]) -> ClassSet:
    """The input segmenter's classes: ``classes`` (a class list YAML, as in config/datasets/), else ``num_classes``
    numbered ones, else as many numbered ones as the masks imply."""
    if classes is None:
        return numbered_class_set(num_classes if num_classes is not None else infer_num_classes(masks))
    class_set = load_class_set(classes)
    if num_classes is not None and num_classes != class_set.num_classes:
        raise SspError(f"--num-classes {num_classes}, but {classes} lists {class_set.num_classes} classes")
    return class_set


@dataclass
class Source:
    """Where each frame's segmentation comes from: label images, score files, or a segmenter run here."""

    kind: str  # labels | probabilities | logits
    names: list[str]  # the output file of each frame
    get: Callable[[int, np.ndarray], np.ndarray]  # (frame index, frame) → class ids or K×h×w scores
    where: Callable[[int], str]  # what an error about frame i names
    classes: ClassSet


def _mask_source(masks_path: Path, frames: list[np.ndarray], num_classes: int | None, classes: Path | None,
                 logits: bool) -> Source:
    """Label PNGs (all read and checked now) or ``.npy`` scores (headers checked now) of ``masks_path``."""
    files = mask_files(masks_path, (".png", ".npy"))
    if len(files) != len(frames):
        raise SspError(f"{masks_path}: {len(files)} label images for the {len(frames)} frames: one mask per frame, "
                       "matched by sorted file name")
    names = [f.with_suffix(".png").name for f in files]
    if files[0].suffix.lower() == ".npy":
        found = score_shapes(files)
        class_set = class_set_for(classes, num_classes if num_classes is not None else found, [])
        if found != class_set.num_classes:
            raise SspError(f"{masks_path}: scores of {found} classes, {class_set.num_classes} expected")
        return Source("logits" if logits else "probabilities", names,
                      lambda i, _: np.load(files[i], allow_pickle=False), lambda i: str(files[i]), class_set)
    raw = read_masks(files)
    class_set = class_set_for(classes, num_classes, raw)
    masks = [check_mask(f, m, image.shape[:2], class_set.num_classes) for f, m, image in zip(files, raw, frames)]
    return Source("labels", names, lambda i, _: masks[i], lambda i: str(files[i]), class_set)


def segmenter_source(segmenter: OnnxSegmenter, count: int) -> Source:
    """A user's ONNX segmenter (``backends/external.py``), run on each of ``count`` frames."""
    return Source(segmenter.spec.output, [f"{i:06d}.png" for i in range(count)], lambda _, frame: segmenter(frame),
                  lambda i: f"{segmenter.model} on frame {i}", segmenter.classes)


def run_stabilise(cfg: SspConfig, frames_path: Path, masks_path: Path | None, out: Path,
                  num_classes: int | None = None, confidence: float | None = None,
                  labels_dir: Path | None = None, overwrite: bool = False, classes: Path | None = None,
                  logits: bool = False, segmenter: Path | None = None) -> dict:
    """Stabilise ``masks_path``'s label images or soft scores (``logits``: they are logits), or the output of the
    ONNX segmenter of the YAML ``segmenter``, over the frames of ``frames_path`` into ``out``; return the report
    (also written as ``report.json`` and ``report.md``)."""
    if (masks_path is None) == (segmenter is None):
        raise SspError("give either --masks (the segmenter's saved output) or --segmenter (a YAML of an ONNX model)")
    clip = file_clip(frames_path, None)
    if masks_path is not None:
        source = _mask_source(masks_path, clip.images, num_classes, classes, logits)
    else:
        from ssp_ros.backends.external import OnnxSegmenter

        source = segmenter_source(OnnxSegmenter(segmenter, cfg.runtime.device), len(clip.images))
    k = source.classes.num_classes
    truth, no_miou = ground_truth(labels_dir, clip.labels, clip.images, k)
    stabiliser = make_stabiliser(cfg, k, confidence)
    tmp = prepare_output(out, overwrite)
    try:
        report = write_stabilised(tmp, stabiliser, clip, source, truth, {
            "command": "ssp stabilise", "frames_input": str(frames_path), "masks_input": str(masks_path or segmenter),
            "miou_missing": no_miou})
        commit_output(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def write_stabilised(folder: Path, stabiliser: Stabiliser, clip: Clip, source: Source,
                     truth: list[np.ndarray] | None, about: dict) -> dict:
    """Stabilise the clip's frames with what ``source`` gives for each into ``folder`` (``masks/``, ``overlay.mp4``,
    ``report.json``, ``report.md``) and return the report; ``about`` names the inputs (``command``,
    ``frames_input``, ``masks_input``, ``miou_missing``)."""
    h, w = clip.images[0].shape[:2]
    video = VideoWriter(folder / "overlay.mp4", clip.fps, (h, 2 * w))
    try:
        report = _run(stabiliser, clip, source, truth, folder / "masks", video)
    finally:
        video.close()
    report.update({**about, "num_classes": source.classes.num_classes, "classes": list(source.classes.names),
                   "confidence": stabiliser.confidence, "similarity_model": str(stabiliser.model.folder),
                   "input": source.kind, "overlay": video.output.name})
    (folder / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (folder / "report.md").write_text(markdown(report))
    return report


def _side_by_side(image: np.ndarray, before: np.ndarray, after: np.ndarray, classes: ClassSet) -> np.ndarray:
    """One overlay video frame: the input labels | the stabilised labels, over the frame."""
    panels = [overlay(image, labels.astype(np.uint8), classes) for labels in (before, after)]
    return titled(np.concatenate(panels, axis=1), ("input segmenter", "stabilised"))


def _stabilise(stabiliser: Stabiliser, image: np.ndarray, stamp: float, source: Source, i: int) -> StabilisedFrame:
    """Frame ``i`` through the stabiliser, with what ``source`` gives for it."""
    try:
        result = stabiliser.process_output(image, source.get(i, image), stamp, source.kind)
    except FrameError as err:
        raise SspError(f"{source.where(i)}: {err}") from None
    if result is None:
        raise SspError(f"{source.where(i)}: its frame's stamp {stamp} is not newer than the previous one")
    return result


def _run(stabiliser: Stabiliser, clip: Clip, source: Source, truth: list[np.ndarray] | None, folder: Path,
         video: VideoWriter) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    classes = source.classes
    k = classes.num_classes
    metrics = {name: SequenceMetrics(k, ignore_index=VOID if k <= VOID else -1, vc_lengths=())
               for name in ("before", "after")}
    registrations = RegistrationLog()
    changed, times = [], []
    for i in tqdm(range(len(clip.images)), desc="stabilise", unit="frame"):
        start = time.perf_counter()
        result = _stabilise(stabiliser, clip.images[i], clip.stamps[i], source, i)
        times.append(time.perf_counter() - start)
        write_png(folder / source.names[i], result.labels)
        if clip.images[i].shape[:2] == clip.images[0].shape[:2]:  # the video keeps the first frame's size
            video.write(_side_by_side(clip.images[i], result.input_labels, result.labels, classes))
        changed.append(result.changed)
        registrations.add(result.registration, result.labels.shape)
        truth_i = None if truth is None else unknown_as_void(truth[i], k)
        for name, labels in (("before", result.input_labels), ("after", result.labels)):
            step = clip.flows[i]
            metrics[name].add(unknown_as_void(labels, k), truth_i, None if step is None else step[0],
                              None if step is None else step[1])
    reports = {name: m.report() for name, m in metrics.items()}
    return {
        "frames": len(clip.images), "size": list(clip.images[0].shape[:2]),
        **{name: {key: reports[name][key] for key in ("tc", "change_rate", "miou")} for name in metrics},
        "changed_pixels_percent": round(100.0 * float(np.mean(changed)), 3),
        "ms_per_frame": round(1000.0 * float(np.median(times[1:] or times)), 1),
        "registration": registrations.summary(stabiliser.propagator.resets),
    }


def markdown(report: dict) -> str:
    """``report.md``: before and after side by side, then registration."""
    rows = ["| | TC | change rate | mIoU |", "|---|---|---|---|"]
    for name in ("before", "after"):
        m = report[name]
        rows.append(f"| {name} | {cell(m['tc'])} | {cell(m['change_rate'])} | {cell(m['miou'])} |")
    reg = report["registration"]
    return "\n".join([
        f"# {report['command']}: {report['masks_input']}", "",
        f"{report['frames']} frames of {report['size'][0]}x{report['size'][1]} ({report['frames_input']}), "
        f"{report['num_classes']} classes, hard-label confidence {report['confidence']}; similarity model "
        f"{report['similarity_model']}; {report['ms_per_frame']} ms per frame (median).", "",
        *rows, "",
        "TC: mIoU of consecutive masks along the flow (percent); change rate: the share of flow-tracked pixels whose "
        "class changes from one frame to the next (label-free flicker, percent). "
        + (f"No mIoU: {report['miou_missing']}. " if report["miou_missing"] else "") +
        f"Propagation changed {report['changed_pixels_percent']} % of the pixels.", "",
        f"Registration: registered {reg['registered']} of {reg['pairs']} frame pairs, failed {reg['failed']}; "
        f"resets: {', '.join(f'{r} {n}' for r, n in reg['resets'].items()) or 'none'}.", ""])

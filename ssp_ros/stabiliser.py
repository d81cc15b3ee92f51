"""SSP over another segmenter: its output made temporally consistent by our registration and fusion.

``Stabiliser.process(frame, labels, stamp)`` takes a camera frame and the class ids another segmenter gave it
(values 0..K−1; ``VOID``, and ``VOID_16`` in uint16 labels, = unknown where K ≤ 255) and returns stabilised class
ids of the same size and dtype;
``process_scores(frame, scores, stamp, logits)`` takes its soft output instead (K×h×w probabilities or logits,
any h×w) and returns class ids (uint8). Per frame:

1. the segmenter's output becomes class probabilities on the stride-4 cells of the model input: a labelled pixel
   gives its class ``confidence`` and the other classes the rest, evenly, and unknown pixels give every class the
   same (``cell_probabilities``); soft scores are resized onto the cells (``score_cells``);
2. the previous frame is registered to this one (the same registrar, reset rules and letterbox as ``Pipeline``);
3. the previous *fused* probabilities are warped into this frame (OpenCV, ``backends/cpu_warp.py``) and blended
   with the current ones by the similarity ``s`` of the stabiliser's own small model (``backends/appearance.py``):
   an appearance encoder gives stride-4 features of the frame, and SSP's similarity head compares the previous
   frame's, warped likewise, with this frame's. It reads the frame's appearance, never the other segmenter's
   output, so it serves any segmenter and any class list without retraining;
4. where the current frame leads with a pixel's label but the fused state gives that label less than
   ``stabiliser.keep_ratio`` × its best class's probability, the pixel takes the fused best class: flicker is
   replaced. Everything else stays as the segmenter drew it, boundaries and objects smaller than a cell included.

The frame is letterboxed to ``stabiliser.input_size`` for steps 1–3; the labels keep the frame's size.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import cv2
import numpy as np

from ssp_ros.backends.appearance import AppearanceModel
from ssp_ros.backends.cpu_warp import validity, warp_planes
from ssp_ros.config import SspConfig
from ssp_ros.errors import FrameError, SspError
from ssp_ros.frames import check_frame
from ssp_ros.geometry import cells_to_previous
from ssp_ros.letterbox import Letterbox
from ssp_ros.propagation import Propagator
from ssp_ros.registration import FrameRegistrar, Registration
from ssp_ros.resources import resolve_data_path

VOID = 255  # the label of an unknown pixel, where the class count leaves it free (K ≤ 255)
VOID_16 = 65535  # in a 16-bit label image, unknown too (K ≤ 255): vision_msgs' unlabelled id of 16-bit class ids
MAX_CLASSES = 256
STRIDE = 4  # the cells the similarity head compares, and the fused state's resolution
LEADS = 0.999  # a label whose support (its probability over the best class's) is at least this leads its pixel
STAGES = ("registration", "similarity", "fusion")  # timed per frame: homography; encoder + head; the rest


@dataclass
class StabilisedFrame:
    """One frame's result at the camera frame's size."""

    stamp: float
    labels: np.ndarray  # H×W, the input labels' dtype
    input_labels: np.ndarray  # H×W, the other segmenter's own class ids (for soft scores: their argmax)
    changed: float  # share of the frame's pixels whose class the stabiliser changed
    fused: bool  # False: started over (first frame, failed registration, time gap, ...)
    reset_reason: str
    registration: Registration | None
    timings_ms: dict[str, float]  # per stage (``STAGES``) and their total


@dataclass
class _State:
    probabilities: np.ndarray  # 1×K×h×w float32, the fused class probabilities on the stride-4 cells
    feats: np.ndarray  # 1×C×h×w float32, the appearance features of the frame


def check_labels(labels: np.ndarray, num_classes: int, frame_size: tuple[int, int]) -> None:
    """Refuse a label image that does not fit: not 2-D uint8/uint16, another size than its frame, or a value that
    is neither a class (0..K−1) nor unknown (``VOID``, and ``VOID_16`` in a uint16 image, where K ≤ 255);
    ``FrameError`` names the problem."""
    if not isinstance(labels, np.ndarray) or labels.ndim != 2 or labels.dtype not in (np.uint8, np.uint16):
        raise FrameError(f"labels must be a 2-D uint8 or uint16 image, got {getattr(labels, 'dtype', type(labels))} "
                         f"{getattr(labels, 'shape', '')}")
    if labels.shape != tuple(frame_size):
        raise FrameError(f"labels are {labels.shape[1]}x{labels.shape[0]}, the frame is "
                         f"{frame_size[1]}x{frame_size[0]}: masks must have their frame's size")
    if int(labels.max(initial=0)) < num_classes:
        return
    invalid = labels >= num_classes
    wide = labels.dtype == np.uint16
    if num_classes <= VOID:
        invalid &= labels != VOID
        if wide:
            invalid &= labels != VOID_16
    if invalid.any():
        bad = int(labels[invalid].max())
        unknown = f"{VOID}{f' and {VOID_16}' if wide else ''} = unknown"
        raise FrameError(f"label {bad} is not a class of {num_classes} (0..{num_classes - 1}"
                         + (f", {unknown})" if num_classes <= VOID else ")"))


def unknown_as_void(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``labels`` with ``VOID_16`` written as ``VOID`` (a uint16 image, K ≤ 255): one unknown label, for the code
    that knows only ``VOID`` (the fusion, the metrics); the image itself where it has no ``VOID_16``."""
    if labels.dtype == np.uint16 and num_classes <= VOID and (labels == VOID_16).any():
        return np.where(labels == VOID_16, VOID, labels).astype(np.uint16)
    return labels


def check_scores(scores: np.ndarray, num_classes: int, logits: bool) -> None:
    """Refuse soft scores that do not fit: not a K×h×w float array, not finite, or (probabilities) outside [0, 1]
    or not summing to 1 over the classes (within 1 %); ``FrameError`` names the problem."""
    if not isinstance(scores, np.ndarray) or scores.ndim != 3 or scores.dtype.kind != "f":
        raise FrameError(f"scores must be a K×h×w float array, got {getattr(scores, 'dtype', type(scores))} "
                         f"{getattr(scores, 'shape', '')}")
    if scores.shape[0] != num_classes:
        raise FrameError(f"scores have {scores.shape[0]} classes (first axis), expected {num_classes}")
    if not np.isfinite(scores).all():
        raise FrameError("scores hold NaN or infinite values")
    if not logits:
        total = scores.sum(axis=0, dtype=np.float64)
        if scores.min() < 0 or scores.max() > 1 or np.abs(total - 1).max() > 0.01:
            raise FrameError(f"probabilities must lie in [0, 1] and sum to 1 over the classes (sums "
                             f"{total.min():.3f}..{total.max():.3f}); pass logits as logits")


def score_cells(scores: np.ndarray, logits: bool, content: tuple[int, int], cells: tuple[int, int]) -> np.ndarray:
    """Soft scores (K×h×w) → class probabilities on the stride-4 cells of the model input (1×K×hc×wc float32):
    softmax for logits, then each class plane resized onto the cells that the letterboxed frame (``content``:
    its h×w in the model input) covers; cells outside it are uniform."""
    x = scores.astype(np.float32)
    if logits:
        x = np.exp(x - x.max(axis=0, keepdims=True))
        x /= x.sum(axis=0, keepdims=True)
    k = x.shape[0]
    ch, cw = (min(-(-size // STRIDE), total) for size, total in zip(content, cells))
    interpolation = cv2.INTER_AREA if x.shape[1] >= ch else cv2.INTER_LINEAR
    out = np.full((1, k, *cells), 1.0 / k, np.float32)
    for plane, target in zip(x, out[0]):
        target[:ch, :cw] = cv2.resize(plane, (cw, ch), interpolation=interpolation)
    out /= out.sum(axis=1, keepdims=True)
    return out


@dataclass(frozen=True)
class CellMap:
    """Where each pixel of a label image falls among the stride-4 cells of the stabiliser's input."""

    index: np.ndarray  # H×W int64: the cell of each pixel (row-major over ``grid``)
    sizes: np.ndarray  # the number of pixels in each cell (0 for a cell no pixel falls in: the letterbox padding)
    grid: tuple[int, int]  # (rows, columns) of cells

    @classmethod
    def of(cls, frame_size: tuple[int, int], content_size: tuple[int, int], grid: tuple[int, int]) -> CellMap:
        """A frame of ``frame_size`` scaled to ``content_size`` at the top left of an input of ``grid`` cells."""
        (h, w), (ch, cw) = frame_size, content_size
        rows = np.minimum((np.arange(h) * ch // h) // STRIDE, grid[0] - 1)
        cols = np.minimum((np.arange(w) * cw // w) // STRIDE, grid[1] - 1)
        index = rows[:, None] * grid[1] + cols[None, :]
        return cls(index, np.bincount(index.ravel(), minlength=grid[0] * grid[1]), grid)


def cell_probabilities(labels: np.ndarray, known: np.ndarray, num_classes: int, confidence: float,
                       cells: CellMap | None = None) -> np.ndarray:
    """Class probabilities (1×K×rows×columns float32) of the cells of a label image: the mean over a cell's pixels
    of ``confidence`` for the pixel's class and ``(1 − confidence)/(K − 1)`` for each other class, or ``1/K`` for
    every class where ``known`` is False (and in a cell no pixel falls in). ``cells`` None: the image's own 4×4
    cells (h and w multiples of 4)."""
    if cells is None:
        h, w = labels.shape
        cells = CellMap.of((h, w), (h, w), (h // STRIDE, w // STRIDE))
    k, n = num_classes, cells.grid[0] * cells.grid[1]
    slot = np.where(known, labels, k)  # unknown pixels count in an extra slot, so no pixel is indexed out
    counts = np.bincount((cells.index * (k + 1) + slot).ravel(), minlength=n * (k + 1)).reshape(n, k + 1)[:, :k]
    labelled = counts.sum(axis=1, keepdims=True)
    size = cells.sizes[:, None].astype(np.float64)
    other = (1.0 - confidence) / (k - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = (confidence * counts + other * (labelled - counts) + (size - labelled) / k) / size
    p[cells.sizes == 0] = 1.0 / k
    return np.ascontiguousarray(p.T.reshape(1, k, *cells.grid), dtype=np.float32)


@dataclass(frozen=True)
class _FrameMap:
    """How a frame's pixels meet the stabiliser's input, worked out once per frame size: the cells its labels are
    counted in, and the input pixel each frame pixel is decided at (nearest)."""

    fit: bool  # the frame is not larger than the input: its labels are fitted to the input (nearest, losing
    # nothing) and counted in the input's own cells; else they are counted by area in the frame, so none is skipped
    cells: CellMap
    pixel: np.ndarray  # H×W int32: the flat input pixel of each frame pixel

    @classmethod
    def of(cls, letterbox: Letterbox) -> _FrameMap:
        (h, w), (ch, cw) = letterbox.frame_size, letterbox.content_size
        grid = tuple(size // STRIDE for size in letterbox.input_size)
        fit = letterbox.scale >= 1
        if fit:
            cells = CellMap.of(letterbox.input_size, letterbox.input_size, grid)
        else:
            cells = CellMap.of((h, w), (ch, cw), grid)
        pixel = (np.arange(h) * ch // h)[:, None] * letterbox.input_size[1] + (np.arange(w) * cw // w)[None, :]
        return cls(fit, cells, pixel.astype(np.int32))


class Stabiliser:
    """One stream of (frame, labels) pairs through one similarity model; ``process`` runs in one thread at a time.
    ``confidence`` None: ``cfg.stabiliser.confidence``."""

    def __init__(self, cfg: SspConfig, model: AppearanceModel, num_classes: int, confidence: float | None = None
                 ) -> None:
        confidence = cfg.stabiliser.confidence if confidence is None else confidence
        if not 2 <= num_classes <= MAX_CLASSES:
            raise SspError(f"number of classes {num_classes}: must be 2..{MAX_CLASSES}")
        if not 1.0 / num_classes < confidence <= 1.0:
            raise SspError(f"confidence {confidence}: must be above 1/K ({1.0 / num_classes:.3g}) and at most 1")
        check_similarity_model(model)
        self.cfg, self.model = cfg, model
        self.input_size: tuple[int, int] = tuple(cfg.stabiliser.input_size)
        self.num_classes, self.confidence = num_classes, confidence
        self.propagator: Propagator[_State] = Propagator(cfg.propagation)
        self.registrar = FrameRegistrar(cfg.registration)
        self._letterbox: Letterbox | None = None
        self._map: _FrameMap | None = None

    def _to_input(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Labels fitted into the model input like the frame (nearest), and where they are known."""
        fitted = self._letterbox.apply(labels, nearest=True, pad=0)
        ch, cw = self._letterbox.content_size
        known = np.zeros(self.input_size, bool)
        known[:ch, :cw] = True  # not the padding
        if self.num_classes <= VOID:
            known &= fitted != VOID
        return fitted.astype(np.int64), known

    def process(self, frame: np.ndarray, labels: np.ndarray, stamp: float) -> StabilisedFrame | None:
        """Stabilise one frame's labels (see the module docstring); None if the frame is dropped (an old stamp
        with ``reset_on_backwards_time`` off); FrameError for a frame or label image that cannot be used."""
        check_frame(frame, min_side=16)
        check_labels(labels, self.num_classes, frame.shape[:2])
        given, labels = labels, unknown_as_void(labels, self.num_classes)

        def cells() -> np.ndarray:
            if self._map.fit:
                read, known = self._to_input(labels)
            else:
                read, known = labels, (labels != VOID if self.num_classes <= VOID else np.ones(labels.shape, bool))
            return cell_probabilities(read, known, self.num_classes, self.confidence, self._map.cells)

        result = self._step(frame, labels, stamp, cells)
        if result is None or labels is given:
            return result
        # unknown pixels are never replaced: give them back their own unknown label
        return replace(result, labels=np.where(given == VOID_16, given, result.labels), input_labels=given)

    def process_scores(self, frame: np.ndarray, scores: np.ndarray, stamp: float, logits: bool = False
                       ) -> StabilisedFrame | None:
        """Stabilise one frame's soft output (K×h×w probabilities, or ``logits``): class ids (uint8) at the
        frame's size, the scores' own argmax wherever propagation changes nothing. As ``process`` otherwise."""
        check_frame(frame, min_side=16)
        check_scores(scores, self.num_classes, logits)
        own = scores.argmax(axis=0).astype(np.uint8)
        labels = cv2.resize(own, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_NEAREST)

        def cells() -> np.ndarray:
            grid = tuple(size // STRIDE for size in self.input_size)
            return score_cells(scores, logits, self._letterbox.content_size, grid)

        return self._step(frame, labels, stamp, cells)

    def process_output(self, frame: np.ndarray, output: np.ndarray, stamp: float, kind: str
                       ) -> StabilisedFrame | None:
        """A segmenter's ``output`` for ``frame``, as its ``kind`` (``labels``, ``probabilities`` or ``logits``)
        says: ``process`` or ``process_scores``."""
        if kind == "labels":
            return self.process(frame, output, stamp)
        return self.process_scores(frame, output, stamp, kind == "logits")

    def _step(self, frame: np.ndarray, labels: np.ndarray, stamp: float,
              cells: Callable[[], np.ndarray]) -> StabilisedFrame | None:
        """Register, fuse and decide, given the current output's cell probabilities as ``cells()``; ``labels`` are
        the current class ids at the frame's size."""
        if self.propagator.admit(stamp) is not None:
            return None
        timings = dict.fromkeys(STAGES, 0.0)
        clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[stage] += 1000.0 * (now - clock)
            clock = now

        size = frame.shape[:2]
        if self._letterbox is None or self._letterbox.frame_size != size:
            self._letterbox = Letterbox(size, self.input_size)
            self._map = _FrameMap.of(self._letterbox)
        registration = None
        if self.cfg.propagation.enabled:
            registration = self.registrar.commit(self.registrar.prepare(frame))
        lap("registration")
        feats = self.model.features(self._letterbox.apply(frame))
        lap("similarity")
        current = fused = cells()
        decision = self.propagator.decide(stamp, size, registration)
        if decision.fuse:
            prev = self.propagator.state
            to_previous = cells_to_previous(self._letterbox.homography_to_input(registration.homography), STRIDE)
            warped_feats = warp_planes(prev.feats, to_previous)
            lap("fusion")
            s = self.model.similarity(warped_feats, feats)
            lap("similarity")
            weight = s * validity(to_previous, *fused.shape[-2:])
            fused = weight * warp_planes(prev.probabilities, to_previous) + (1.0 - weight) * current
        self.propagator.commit(_State(fused, feats), stamp, size)
        out = self._decide(labels, current, fused) if decision.fuse else labels
        lap("fusion")
        share = float(np.count_nonzero(out != labels)) / out.size
        return StabilisedFrame(stamp=stamp, labels=out, input_labels=labels, changed=share, fused=decision.fuse,
                               reset_reason=decision.reason, registration=registration,
                               timings_ms={**timings, "total": sum(timings.values())})

    def _decide(self, labels: np.ndarray, current: np.ndarray, fused: np.ndarray) -> np.ndarray:
        """The stabiliser's class ids at the frame's size. The current and the fused cell probabilities are resized
        (bilinear) to the model input; a class's support is its probability over the best class's there. A frame
        pixel whose own label the current frame leads with (support ≥ ``LEADS`` at the pixel's input pixel) but
        the fused state gives less than ``stabiliser.keep_ratio`` takes the fused best class: flicker, which the
        past does not back, is replaced. Every other pixel keeps its label as the segmenter drew it: detail finer
        than a cell (boundaries within a cell, objects smaller than a cell, which the cells cannot follow when they
        move), and unknown pixels. Only the classes that are first or second in some cell are resized: a label
        that is neither cannot lead its pixel, and such a class could only win where the resize mixes cells that
        all rank it third or lower; so K up to 256 costs about what a few classes cost."""
        k = self.num_classes
        present = np.zeros(k, np.intp)
        for p in (current[0], fused[0]):
            # the first and second class of each cell: two argmax passes beat argpartition along the class axis;
            # bincount, not np.unique: the class ids are small integers
            first = p.argmax(axis=0)
            second = np.where(np.arange(k)[:, None, None] == first, -1.0, p).argmax(axis=0)
            present += np.bincount(first.ravel(), minlength=k) + np.bincount(second.ravel(), minlength=k)
        classes = np.flatnonzero(present)
        h, w = self.input_size
        ups = [np.stack([cv2.resize(p[c], (w, h), interpolation=cv2.INTER_LINEAR) for c in classes])
               for p in (current[0], fused[0])]
        support = [up / np.maximum(up.max(axis=0), 1e-12) for up in ups]
        best = ups[1].argmax(axis=0)
        # class × input pixel, and a last row of False for labels outside the classes (unknown): never replaced
        replace = np.zeros((len(classes) + 1, h * w), bool)
        replace[:-1] = ((support[0] >= LEADS) & (support[1] < self.cfg.stabiliser.keep_ratio)).reshape(len(classes), -1)
        wide = (len(classes) + 1) * h * w >= 2**31  # int32 indexes halve the memory traffic where they suffice
        lookup = np.full(max(k, VOID + 1), len(classes), np.int64 if wide else np.int32)
        lookup[classes] = np.arange(len(classes))
        at = lookup[labels]
        at *= h * w
        at += self._map.pixel
        replace_frame = replace.reshape(-1)[at]
        winner = self._letterbox.restore(classes[best].astype(np.uint16), nearest=True).astype(labels.dtype)
        return np.where(replace_frame, winner, labels)


def check_similarity_model(model: AppearanceModel) -> None:
    """Refuse a similarity model whose features are not at the stride the stabiliser fuses at."""
    if model.stride != STRIDE:
        raise SspError(f"{model.folder}: features at stride {model.stride}; the stabiliser fuses at {STRIDE}")


def similarity_model(cfg: SspConfig) -> AppearanceModel:
    """The similarity model of ``stabiliser.model``, checked; one per stream (it serves one thread)."""
    model = AppearanceModel(resolve_data_path(cfg.stabiliser.model, "stabiliser.model", "stabiliser model folder"))
    check_similarity_model(model)
    return model


def make_stabiliser(cfg: SspConfig, num_classes: int, confidence: float | None = None,
                    model: AppearanceModel | None = None) -> Stabiliser:
    """The stabiliser of ``cfg`` for another segmenter's ``num_classes`` classes (every caller builds it here), with
    ``model`` or, None, the similarity model of ``stabiliser.model``. ``confidence`` None: ``stabiliser.confidence``."""
    return Stabiliser(cfg, similarity_model(cfg) if model is None else model, num_classes, confidence)

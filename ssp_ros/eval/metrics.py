"""Segmentation quality and temporal consistency of a predicted video.

- mIoU from a streaming confusion matrix (ignore label excluded);
- TC (the SSP paper's temporal consistency): flow k→k+1, prediction k+1 pulled back to k by nearest
  warping, mIoU(pred_k, warped pred_k+1) per pair, averaged over pairs; pixels whose flow leaves the frame
  (or is invalid) are skipped;
- flicker rate: among flow-tracked pixels whose ground truth keeps its class, the share whose prediction
  changes (needs labels on both frames);
- VC_n (VSPW's video consistency) measured along flow tracks: among pixels whose ground truth stays the
  same over n frames, the share whose prediction stays the same too. With zero flow it is VSPW's VC_n;
- the change rate (label-free flicker): among flow-tracked pixels, the share whose prediction changes (no labels
  needed, so it is what unlabelled video gets besides TC);
- the class share: how much of the video each class covers, which on unlabelled video shows at a glance what a
  model calls the scene (a steady mask of wrong classes scores well on TC and the change rate).

TC alone rewards over-smoothing (a constant mask scores 100): reports show it next to mIoU and flicker.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from ssp_ros.eval.flow import warp_nearest


def percent(x: float) -> float | None:
    """A share in [0, 1] as percent with 3 decimals, for JSON reports; None for NaN (nothing counted)."""
    return None if not np.isfinite(x) else round(100.0 * float(x), 3)


class ConfusionMatrix:
    """Streaming K×K confusion matrix (rows: ground truth, columns: prediction)."""

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.matrix = np.zeros((num_classes, num_classes), np.int64)

    def update(self, pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Count pixels of ``pred`` against ``target`` (same shape), skipping ``~mask`` and the ignore label on either
        side: a target nobody labelled, and a prediction of "unknown" (another segmenter's void pixels, which the
        stabiliser keeps as they are), which is no class to score."""
        if pred.shape != target.shape:
            raise ValueError(f"prediction {pred.shape} and target {target.shape} differ in shape")
        keep = (target != self.ignore_index) & (pred != self.ignore_index)
        if mask is not None:
            keep &= mask
        t, p = target[keep].astype(np.int64), pred[keep].astype(np.int64)
        if t.size and (max(t.max(), p.max()) >= self.num_classes or min(t.min(), p.min()) < 0):
            raise ValueError(f"class id outside 0..{self.num_classes - 1} (and not ignore {self.ignore_index})")
        self.matrix += np.bincount(t * self.num_classes + p, minlength=self.num_classes**2).reshape(
            self.num_classes, self.num_classes)

    def merge(self, other: ConfusionMatrix) -> None:
        """Add another matrix's counts (e.g. from another worker)."""
        self.matrix += other.matrix

    def iou(self) -> np.ndarray:
        """Per-class IoU in [0, 1]; NaN for classes absent from both target and prediction."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / union, np.nan)

    def miou(self) -> float:
        """Mean IoU over classes that occur (NaN if nothing was counted)."""
        iou = self.iou()
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")

    def pixel_accuracy(self) -> float:
        total = self.matrix.sum()
        return float(np.trace(self.matrix) / total) if total else float("nan")


def pair_miou(a: np.ndarray, b: np.ndarray, num_classes: int, mask: np.ndarray | None = None,
              ignore_index: int = 255) -> float:
    """mIoU between two label maps (classes present in either), e.g. a prediction and its warped successor."""
    cm = ConfusionMatrix(num_classes, ignore_index)
    cm.update(a, b, mask)
    return cm.miou()


class TemporalConsistency:
    """TC: mean over consecutive pairs of mIoU(pred_k, pred_{k+1} warped back to k), in [0, 1]."""

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.pairs: list[float] = []

    def update(self, pred: np.ndarray, next_pred: np.ndarray, flow: np.ndarray, valid: np.ndarray | None = None
               ) -> float:
        """Score one pair given the forward flow of ``pred``'s frame; returns the pair's TC."""
        return self.update_warped(pred, *warp_nearest(next_pred, flow, valid))

    def update_warped(self, pred: np.ndarray, warped: np.ndarray, ok: np.ndarray) -> float:
        """``update`` with the next prediction already pulled back to ``pred``'s frame (``warp_nearest``)."""
        score = pair_miou(pred, warped, self.num_classes, ok, self.ignore_index)
        if np.isfinite(score):
            self.pairs.append(score)
        return score

    def value(self) -> float:
        return float(np.mean(self.pairs)) if self.pairs else float("nan")


class FlickerRate:
    """Share of flow-tracked pixels whose ground truth keeps its class but whose prediction changes."""

    def __init__(self, ignore_index: int = 255) -> None:
        self.ignore_index = ignore_index
        self.changed = 0
        self.stable = 0

    def update(self, pred: np.ndarray, labels: np.ndarray, next_pred: np.ndarray, next_labels: np.ndarray,
               flow: np.ndarray, valid: np.ndarray | None = None) -> None:
        warped_pred, ok = warp_nearest(next_pred, flow, valid)
        warped_labels, _ = warp_nearest(next_labels, flow)
        stable = ok & (labels == warped_labels) & (labels != self.ignore_index)
        self.stable += int(stable.sum())
        self.changed += int((stable & (pred != warped_pred)).sum())

    def value(self) -> float:
        return self.changed / self.stable if self.stable else float("nan")


class ChangeRate:
    """Label-free flicker: the share of flow-tracked pixels whose class changes from one frame to the next."""

    def __init__(self, ignore_index: int = 255) -> None:
        self.ignore_index = ignore_index
        self.changed = 0
        self.tracked = 0

    def update_warped(self, pred: np.ndarray, warped: np.ndarray, ok: np.ndarray) -> None:
        """Count one pair, the next prediction already pulled back to ``pred``'s frame by the flow (``warp_nearest``:
        ``warped``, and ``ok`` where it is tracked); the warp is ``TemporalConsistency``'s too."""
        ok = ok & (pred != self.ignore_index) & (warped != self.ignore_index)
        self.tracked += int(ok.sum())
        self.changed += int((ok & (pred != warped)).sum())

    def value(self) -> float | None:
        """Percent, None when no pixel was tracked."""
        return round(100.0 * self.changed / self.tracked, 3) if self.tracked else None


class ClassShare:
    """The share of predicted pixels per class over a video (ignore label excluded)."""

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.counts = np.zeros(num_classes, np.int64)

    def update(self, pred: np.ndarray) -> None:
        ids = pred[pred != self.ignore_index].astype(np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_classes):
            raise ValueError(f"class id outside 0..{self.num_classes - 1} (and not ignore {self.ignore_index})")
        self.counts += np.bincount(ids, minlength=self.num_classes)

    def value(self) -> list[float] | None:
        """Percent per class id (summing to 100), None when no pixel was counted."""
        total = self.counts.sum()
        return [round(100.0 * float(c) / total, 3) for c in self.counts] if total else None


class VideoConsistency:
    """VC_n along flow tracks: over windows of n frames, among tracked pixels whose ground truth never
    changes, the share whose prediction never changes either. Streaming: feed frames in order."""

    def __init__(self, n: int, ignore_index: int = 255) -> None:
        if n < 2:
            raise ValueError(f"VC_n needs n >= 2, got {n}")
        self.n, self.ignore_index = n, ignore_index
        self.window: deque = deque(maxlen=n)
        self.clips: list[float] = []

    def update(self, pred: np.ndarray, labels: np.ndarray, flow: np.ndarray | None, valid: np.ndarray | None) -> None:
        """Add a frame with its forward flow to the next frame (None on the last frame)."""
        self.window.append((pred, labels, flow, valid))
        if len(self.window) == self.n:
            score = self._clip(list(self.window))
            if np.isfinite(score):
                self.clips.append(score)

    def _clip(self, frames: list) -> float:
        pred0, labels0 = frames[0][0], frames[0][1]
        h, w = labels0.shape
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        alive = labels0 != self.ignore_index
        gt_same, pred_same = np.ones_like(alive), np.ones_like(alive)
        for (_, _, flow, valid), (pred, labels, _, _) in zip(frames[:-1], frames[1:]):
            if flow is None:
                return float("nan")
            r, c = np.clip(np.round(ys), 0, h - 1).astype(np.int64), np.clip(np.round(xs), 0, w - 1).astype(np.int64)
            step = flow[r, c]
            if valid is not None:
                alive &= valid[r, c]
            xs, ys = xs + step[..., 0], ys + step[..., 1]
            c, r = np.round(xs).astype(np.int64), np.round(ys).astype(np.int64)
            alive &= (c >= 0) & (c < w) & (r >= 0) & (r < h)
            c, r = np.clip(c, 0, w - 1), np.clip(r, 0, h - 1)
            gt_same &= labels[r, c] == labels0
            pred_same &= pred[r, c] == pred0
        tracked = alive & gt_same
        return float((tracked & pred_same).sum() / tracked.sum()) if tracked.any() else float("nan")

    def value(self) -> float:
        return float(np.mean(self.clips)) if self.clips else float("nan")


class SequenceMetrics:
    """Everything a report needs, fed one frame at a time in order.

    ``add(pred, labels, flow, valid)``: ``labels`` may be None (unlabelled frame); ``flow``/``valid`` are
    this frame's forward flow to the next frame (None on the last frame or when unknown).
    Results are in percent.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, vc_lengths: tuple[int, ...] = (8, 16)) -> None:
        self.confusion = ConfusionMatrix(num_classes, ignore_index)
        self.tc = TemporalConsistency(num_classes, ignore_index)
        self.flicker = FlickerRate(ignore_index)
        self.changes = ChangeRate(ignore_index)
        self.shares = ClassShare(num_classes, ignore_index)
        self.vc = {n: VideoConsistency(n, ignore_index) for n in vc_lengths}
        self._previous: tuple | None = None
        self.frames = 0

    def add(self, pred: np.ndarray, labels: np.ndarray | None = None, flow: np.ndarray | None = None,
            valid: np.ndarray | None = None) -> None:
        if labels is not None:
            self.confusion.update(pred, labels)
        self.shares.update(pred)
        if self._previous is not None:
            p_pred, p_labels, p_flow, p_valid = self._previous
            if p_flow is not None:  # one warp serves TC and the change rate
                warped, ok = warp_nearest(pred, p_flow, p_valid)
                self.tc.update_warped(p_pred, warped, ok)
                self.changes.update_warped(p_pred, warped, ok)
                if p_labels is not None and labels is not None:
                    self.flicker.update(p_pred, p_labels, pred, labels, p_flow, p_valid)
        if labels is not None:
            for vc in self.vc.values():
                vc.update(pred, labels, flow, valid)
        self._previous = (pred, labels, flow, valid)
        self.frames += 1

    def report(self) -> dict:
        """JSON-ready results in percent (NaN → None): miou, tc, flicker, change rate, vc_n, per-class IoU, class
        share, TC per pair."""
        labelled = self.confusion.matrix.sum() > 0
        return {
            "frames": self.frames,
            "miou": percent(self.confusion.miou()) if labelled else None,
            "tc": percent(self.tc.value()),
            "flicker": percent(self.flicker.value()),
            "change_rate": self.changes.value(),
            **{f"vc{n}": percent(vc.value()) for n, vc in self.vc.items()},
            "iou_per_class": [percent(x) for x in self.confusion.iou()] if labelled else None,
            "class_share": self.shares.value(),
            "tc_per_pair": [percent(x) for x in self.tc.pairs],
        }


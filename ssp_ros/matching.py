"""Keypoints and matching for frame registration: an OpenCV detector tuned for consecutive drone frames,
exhaustive 2-NN matching with Lowe's ratio test, and guided matching of binary descriptors near predicted
positions.

Why guided matching is written here rather than taken from OpenCV: ``cv2.BFMatcher`` compares every
keypoint with every other (2000 x 2000 Hamming distances cost ~20 ms on one core), and OpenCV has no
radius-limited Hamming matcher in its Python API. With a coarse motion model each keypoint only needs the
few candidates near its predicted position, which makes matching linear in the number of keypoints.
``test/test_registration.py`` checks the whole registrar against ``cv2.BFMatcher`` + ratio test +
``cv2.findHomography`` (USAC) on pairs with known homographies; ``ssp bench`` reports the speed ratio.
"""

from __future__ import annotations

import cv2
import numpy as np

from ssp_ros.config import RegistrationConfig, opencv_detector

COARSE_GRID = (8, 6)  # cells (x, y) over which spread_strongest spreads the coarse keypoints
# ORB settings for frame-to-frame matching: consecutive frames differ by a small zoom, so a shallow
# pyramid suffices (3 levels at 1.2 span 1.44x; ORB descriptors tolerate a little more) and is faster.
ORB_LEVELS = 3
ORB_EDGE = 16  # keypoints closer to the border than this are dropped; OpenCV default 31 leaves the corners bare
ORB_PATCH = 31  # descriptor patch (OpenCV default); ORB pads the image, so it may exceed ORB_EDGE
# The FAST threshold adapts per stream: OpenCV's default 20 (cheapest when the frame is busy) down to 6
# on low-texture ground, where 20 finds too few corners (fields, water, roofs: fewer inliers, worse fit).
ORB_FAST_THRESHOLD = 20
ORB_FAST_THRESHOLD_MIN = 6
ORB_FAST_STEP = 2


def grey_work_image(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (h, w) uint8 grey at work ``size`` (area-averaged when downscaled)."""
    if frame.strides[2] != 1 or frame.strides[1] != 3 or frame.strides[0] < 3 * frame.shape[1]:
        frame = np.ascontiguousarray(frame)  # OpenCV needs packed pixels and rows (not e.g. frame[:, :, ::-1])
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    if grey.shape != size:
        grey = cv2.resize(grey, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return grey


class Detector:
    """One configured OpenCV detector/descriptor: ``detect(grey) -> (points (N, 2), descriptors, responses (N,))``.

    Binary descriptors are zero-padded to a multiple of 8 bytes (Hamming distances are unchanged) so
    that guided matching can compare them as 64-bit words.
    """

    def __init__(self, cfg: RegistrationConfig) -> None:
        self.max_features = cfg.max_features
        self.fast_threshold = ORB_FAST_THRESHOLD
        factory = opencv_detector(cfg.detector)  # ConfigError if this OpenCV build lacks it
        if cfg.detector == "orb":
            self.impl = factory(nfeatures=cfg.max_features, nlevels=ORB_LEVELS, edgeThreshold=ORB_EDGE,
                                patchSize=ORB_PATCH, fastThreshold=self.fast_threshold)
            self.norm = cv2.NORM_HAMMING
        elif cfg.detector == "sift":
            self.impl = factory(nfeatures=cfg.max_features)
            self.norm = cv2.NORM_L2
        else:  # akaze: binary descriptors, no feature cap (detect keeps the strongest)
            self.impl = factory()
            self.norm = cv2.NORM_HAMMING
        self.is_orb = cfg.detector == "orb"

    def _set_fast_threshold(self, value: int) -> None:
        self.fast_threshold = value
        self.impl.setFastThreshold(value)

    def detect(self, grey: np.ndarray,
               mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """Keypoints of a uint8 grey image where ``mask`` (uint8, same size; None = everywhere) is non-zero."""
        keypoints, descriptors = self.impl.detectAndCompute(grey, mask)
        if self.is_orb:  # adapt the FAST threshold to the texture of the stream (see ORB_FAST_THRESHOLD)
            n, t = len(keypoints), self.fast_threshold
            if n < self.max_features // 4 and t > ORB_FAST_THRESHOLD_MIN:  # textureless: retry now
                self._set_fast_threshold(ORB_FAST_THRESHOLD_MIN)
                keypoints, descriptors = self.impl.detectAndCompute(grey, mask)
            elif n < self.max_features // 2 and t > ORB_FAST_THRESHOLD_MIN:
                self._set_fast_threshold(max(ORB_FAST_THRESHOLD_MIN, t - ORB_FAST_STEP))
            elif n >= self.max_features and t < ORB_FAST_THRESHOLD:
                self._set_fast_threshold(min(ORB_FAST_THRESHOLD, t + ORB_FAST_STEP))
        if not keypoints or descriptors is None:
            return np.zeros((0, 2), np.float32), None, np.zeros(0, np.float32)
        responses = np.fromiter((k.response for k in keypoints), np.float32, len(keypoints))
        points = cv2.KeyPoint_convert(keypoints)
        if len(keypoints) > self.max_features:  # AKAZE has no feature cap
            keep = np.argsort(-responses)[: self.max_features]
            points, descriptors, responses = points[keep], descriptors[keep], responses[keep]
        if self.norm == cv2.NORM_HAMMING and descriptors.shape[1] % 8:
            descriptors = np.pad(descriptors, ((0, 0), (0, -descriptors.shape[1] % 8)))
        return points, descriptors, responses


def spread_strongest(points: np.ndarray, responses: np.ndarray, work_shape: tuple[int, int], count: int) -> np.ndarray:
    """Indices of ``count`` strong keypoints spread over the frame: the strongest of every COARSE_GRID cell,
    then the second strongest of every cell, and so on. points: (N, 2); responses: (N,); returns (<= count,).
    """
    if len(points) <= count:
        return np.arange(len(points))
    gx, gy = COARSE_GRID
    h, w = work_shape
    col = np.minimum((points[:, 0] * (gx / w)).astype(np.intp), gx - 1)
    row = np.minimum((points[:, 1] * (gy / h)).astype(np.intp), gy - 1)
    strength = responses / (2.5 * max(float(np.abs(responses).max()), 1e-30))  # in [-0.4, 0.4]
    order = np.argsort((row * gx + col) - strength)  # by cell, strongest first within a cell
    cell = (row * gx + col)[order]
    first = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])
    rank = np.arange(len(order)) - np.repeat(first, np.diff(np.r_[first, len(order)]))
    return order[np.argsort(rank, kind="stable")[:count]]


def knn_ratio_match(desc_a: np.ndarray, desc_b: np.ndarray, norm: int, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Exhaustive 2-NN matching of (N, D) against (M, D) descriptors + Lowe's ratio test -> indices (K,), (K,)."""
    if len(desc_a) == 0 or len(desc_b) == 0:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    dtype = cv2.CV_32S if norm == cv2.NORM_HAMMING else cv2.CV_32F
    dist, idx = cv2.batchDistance(desc_a, desc_b, dtype, normType=norm, K=min(2, len(desc_b)))
    if dist.shape[1] < 2:  # a single candidate cannot pass a ratio test
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    good = np.flatnonzero(dist[:, 0] < ratio * dist[:, 1])
    return good, idx[good, 0].astype(np.intp)


_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], np.int64)


def _popcount_rows(words: np.ndarray) -> np.ndarray:
    """Set bits per row of (n, k) uint64 words -> (n,) int64 (overwrites ``words``)."""
    if not hasattr(np, "bitwise_count"):  # numpy < 2.0 (e.g. the distro numpy of ROS 2 Humble / JetPack)
        return _POPCOUNT8[words.view(np.uint8)].sum(axis=1)
    counts = np.bitwise_count(words, out=words).view(np.int64)  # each <= 64
    total = counts[:, 0].copy()
    for word in range(1, counts.shape[1]):
        total += counts[:, word]
    return total


def guided_match(pred: np.ndarray, prev_desc: np.ndarray, cur_points: np.ndarray, cur_desc: np.ndarray,
                 work_shape: tuple[int, int], radius: float, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Match binary descriptors of previous keypoints to current keypoints within ``radius`` of ``pred``.

    pred: (N, 2) predicted work positions in the current frame; prev_desc: (N, D) uint8 with D % 8 == 0;
    cur_points: (M, 2) current keypoints in a (h, w) = ``work_shape`` image; cur_desc: (M, D) uint8.
    The current keypoints are bucketed in a grid of ``radius``-sized cells; each previous keypoint is compared with
    those in the 3x3 cells around its prediction that lie within ``radius``, and kept when the best
    Hamming distance passes the ratio test against the second best there (a lone candidate passes).
    The work is linear in N (times the few candidates per keypoint). Returns index arrays (K,), (K,).
    """
    empty = np.zeros(0, np.intp), np.zeros(0, np.intp)
    if len(pred) == 0 or len(cur_points) == 0:
        return empty
    h, w = work_shape
    ncx, ncy = int(w // radius) + 3, int(h // radius) + 3  # one padding cell on every side, plus rounding
    cell = np.floor(cur_points / radius).astype(np.intp) + 1
    cell_id = cell[:, 1] * ncx + cell[:, 0]
    order = np.argsort(cell_id, kind="stable")  # current keypoints grouped by cell
    counts = np.bincount(cell_id, minlength=ncx * ncy)
    starts = np.cumsum(counts) - counts

    pred = np.nan_to_num(pred, nan=-1e6, posinf=-1e6, neginf=-1e6)  # points sent to infinity match nothing
    pcell = np.floor(pred / radius).astype(np.intp) + 1
    rows = np.flatnonzero(np.all((pcell >= 1) & (pcell <= (ncx - 2, ncy - 2)), axis=1))
    offsets = (np.arange(-1, 2)[:, None] * ncx + np.arange(-1, 2)[None, :]).ravel()  # 3x3 neighbourhood
    query = ((pcell[rows, 1] * ncx + pcell[rows, 0])[:, None] + offsets).ravel()  # (n * 9,) cell ids
    n_cand = counts[query]
    total = int(n_cand.sum())
    if total == 0:
        return empty
    group = np.repeat(np.arange(len(query)), n_cand)
    within = np.arange(total) - np.repeat(np.cumsum(n_cand) - n_cand, n_cand)
    cand = order[starts[query][group] + within]  # (total,) current keypoint per candidate pair
    row = rows[group // 9]  # (total,) previous keypoint per candidate pair, non-decreasing
    offset = cur_points.take(cand, axis=0)  # (total, 2); take() is much faster than fancy indexing here
    offset -= pred.take(row, axis=0)
    offset *= offset
    near = np.flatnonzero(offset[:, 0] + offset[:, 1] <= radius * radius)
    cand, row = cand.take(near), row.take(near)
    if len(row) == 0:
        return empty
    bits = prev_desc.view(np.uint64).take(row, axis=0)  # (total, D / 8) 64-bit words
    bits ^= cur_desc.view(np.uint64).take(cand, axis=0)
    dist = _popcount_rows(bits)
    # Pairs are grouped by previous keypoint (``row`` is non-decreasing). Per group, without sorting: the
    # best candidate (smallest distance, then first position) and the second-best distance.
    starts = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
    n = len(row)
    packed = np.minimum.reduceat(dist * n + np.arange(n), starts)
    best, best_dist = packed % n, packed // n
    dist[best] = 1 << 40  # a lone candidate has no second best: it passes the ratio test
    good = best[best_dist < ratio * np.minimum.reduceat(dist, starts)]
    return row[good], cand[good]

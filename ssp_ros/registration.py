"""Frame-to-frame global homography for a drone camera (OpenCV keypoints + robust fitting).

SSP warps the previous frame's fused logits and features into the current frame with a homography
``H`` (previous pixel -> current pixel). For a camera far above roughly flat ground a single homography
explains the image motion well; where it does not (tall buildings, moving cars) the similarity head
learns to distrust the warped state.

How ``H`` is found, per frame, at modest cost:

1. The RGB frame is turned into a grey image downscaled to ``cfg.work_width`` (never upscaled).
2. Keypoints + descriptors are detected once per frame (ORB by default; SIFT; AKAZE where the OpenCV
   build has it). :class:`FrameRegistrar` caches them, so each frame is detected exactly once.
3. Matching is k = 2 nearest neighbours + Lowe's ratio test. For binary descriptors (ORB) it runs
   coarse to fine: a few hundred strong keypoints spread over each frame are matched exhaustively and
   fitted robustly with an affine model, then every keypoint is matched only against the keypoints of
   the other frame near its predicted position (ratio test among those), and the homography is refitted
   by least squares on the inliers. That keeps matching linear in the number of keypoints instead of
   quadratic (2000 x 2000 exhaustive Hamming matching alone costs ~20 ms on one core). When the coarse
   step fails, and for SIFT, all keypoints are matched exhaustively and fitted with
   ``cv2.findHomography`` (RANSAC or USAC-MAGSAC, ``cfg.method``), then refitted the same way.
4. Sub-pixel polish: a few hundred inliers are tracked with Lucas-Kanade from their predicted positions
   and ``H`` is refitted to those tracks (ORB keypoints sit on a pixel grid; this cuts the corner error
   several-fold for well under a millisecond).
5. ``H`` is found at work resolution and rescaled to full resolution with the pixel-centre convention
   of ``cv2.resize``; the inlier threshold ``cfg.ransac_threshold_px`` is in full-resolution pixels.
6. A quality gate rejects implausible results (too few inliers, degenerate or extreme geometry), so that
   propagation resets instead of warping with a wrong ``H``.

Coordinates are pixel coordinates with the centre of pixel (col, row) at (x, y) = (col, row), as in
OpenCV. Homographies are 3x3 float64 acting on column vectors (x, y, 1).

This module imports no torch: it runs on the drone's CPU next to the inference runtime.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ssp_ros.config import RegistrationConfig
from ssp_ros.errors import SspError

__all__ = [
    "FrameFeatures",
    "FrameRegistrar",
    "Registration",
    "cells_to_previous",
    "check_frame",
    "estimate_homography",
    "homography_problem",
    "resize_homography",
    "scale_homography",
    "work_size",
]

# Coarse-to-fine matching (binary descriptors only).
COARSE_KEYPOINTS = 200  # strong keypoints per frame, spread over the frame, matched exhaustively for a coarse model
COARSE_GRID = (8, 6)  # cells (x, y) over which the coarse keypoints are spread
GUIDED_RADIUS_PX = 8.0  # work-resolution search radius around the position predicted by the coarse model
GUIDED_MIN_INLIER_SHARE = 0.5  # fewer guided matches consistent with the final H -> coarse model was wrong
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
# Sub-pixel polish: ORB keypoints sit on the pixel grid of their pyramid level (true matches scatter by
# ~0.6 work px), so the final homography is refitted to Lucas-Kanade refined positions of a subset of its
# inliers (~0.1 px scatter): corner errors drop from ~0.5-3 px to ~0.1-0.3 px for ~0.4 ms.
SUBPIXEL_POINTS = 400  # inliers tracked with Lucas-Kanade; 0 switches the polish off
SUBPIXEL_WINDOW = 9  # Lucas-Kanade window (work pixels)
SUBPIXEL_MAX_DEFORMATION = 0.05  # |J - I| above this: warp the previous image first (translational LK)
# Keypoints sit on the work image's pixel grid, so true matches scatter by ~0.5 work px: an inlier
# threshold below this many work pixels (a small work_width) would throw good matches away.
MIN_THRESHOLD_WORK_PX = 1.0
NEAR_SINGULAR_AREA = 1e-6  # local area scale of H below this -> near-singular


@dataclass(frozen=True)
class Registration:
    """The result of registering one frame to the previous one.

    ``homography`` (3x3 float64) maps previous-frame pixels to current-frame pixels at full resolution,
    so ``cv2.warpPerspective(prev, homography, (W, H))`` aligns ``prev`` onto ``cur``. It is None whenever
    ``ok`` is False; ``reason`` then says why in a few words (it is empty when ``ok``).
    """

    homography: np.ndarray | None
    inliers: int = 0  # matches within cfg.ransac_threshold_px of the homography
    matches: int = 0  # putative matches (passed the ratio test) the homography was fitted to
    inlier_ratio: float = 0.0  # inliers / matches
    ok: bool = False
    reason: str = ""

    @staticmethod
    def failed(reason: str, matches: int = 0, inliers: int = 0) -> Registration:
        """A failed registration (``homography`` None) with its reason and whatever counts were reached."""
        return Registration(None, inliers, matches, inliers / matches if matches else 0.0, False, reason)


@dataclass(frozen=True)
class FrameFeatures:
    """Keypoints of one frame, as cached between frames.

    ``points`` (N, 2) float32 are work-resolution pixel coordinates; ``descriptors`` (N, D) are uint8
    (binary, Hamming) or float32 (L2), None when N == 0; ``coarse`` indexes up to COARSE_KEYPOINTS strong
    keypoints spread over the frame (for the coarse model); ``to_work`` (3, 3) maps full-resolution
    pixels to work pixels.
    """

    shape: tuple[int, int]  # full-resolution (H, W)
    work_shape: tuple[int, int]  # work-resolution (h, w)
    grey: np.ndarray  # (h, w) uint8 work image, for the sub-pixel polish
    to_work: np.ndarray
    points: np.ndarray
    descriptors: np.ndarray | None
    coarse: np.ndarray

    def __len__(self) -> int:
        return len(self.points)


def check_frame(frame: np.ndarray, name: str = "frame") -> None:
    """Raise ValueError unless ``frame`` is a non-empty (H, W, 3) uint8 RGB image; the message names the problem.

    (A non-array raises TypeError: that is a programming error, not a bad frame.)
    """
    if not isinstance(frame, np.ndarray):
        raise TypeError(f"{name}: expected an (H, W, 3) uint8 numpy array, got {type(frame).__name__}")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"{name}: expected shape (H, W, 3) (RGB), got shape {frame.shape}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"{name}: empty image, shape {frame.shape}")
    if frame.dtype != np.uint8:
        raise ValueError(f"{name}: expected dtype uint8, got dtype {frame.dtype}")


def work_size(height: int, width: int, work_width: int) -> tuple[int, int]:
    """(h, w) of the work image: ``width`` scaled to ``work_width`` keeping the aspect, never upscaled."""
    if width <= work_width:
        return height, width
    return max(1, round(height * work_width / width)), work_width


def resize_homography(sx: float, sy: float) -> np.ndarray:
    """The 3x3 map from an image's pixel coordinates to those of the image resized by (sx, sy).

    Uses the pixel-centre convention of ``cv2.resize`` and ``F.interpolate(align_corners=False)``:
    ``x' = sx * (x + 0.5) - 0.5``, so pixel edges (not pixel centres) line up.
    """
    return np.array([[sx, 0.0, 0.5 * (sx - 1.0)], [0.0, sy, 0.5 * (sy - 1.0)], [0.0, 0.0, 1.0]])


def scale_homography(homography: np.ndarray, stride: float) -> np.ndarray:
    """The homography for feature maps at ``stride`` from a full-resolution pixel homography.

    Convention: feature cell i covers pixels [i*s, (i+1)*s) and its centre is pixel i*s + (s-1)/2,
    which is how a stride-s CNN feature map lines up with its input and how
    ``F.interpolate(..., align_corners=False)`` / ``F.grid_sample(..., align_corners=False)`` upsample it.
    So with ``C = resize_homography(1/s, 1/s)`` (pixel -> cell) the result is ``C @ H @ C^-1``. It differs
    from the plain ``S H S^-1`` (S = diag(1/s, 1/s, 1)) by a sub-cell offset wherever H is not a pure
    translation; for a translation by t pixels both give t/s cells.

    homography: (3, 3); returns (3, 3) float64 normalised so that [2, 2] == 1.
    """
    if stride <= 0:
        raise ValueError(f"stride must be > 0, got {stride}")
    to_cells = resize_homography(1.0 / stride, 1.0 / stride)
    out = to_cells @ np.asarray(homography, np.float64) @ np.linalg.inv(to_cells)
    return out / out[2, 2]


def cells_to_previous(homography: np.ndarray, stride: float) -> np.ndarray:
    """Current → previous cell map at ``stride`` for a previous → current pixel homography: what the
    warp (``ssp_ros.models.warp``, the fusion graph) takes. (3, 3) float64 normalised so that [2, 2] == 1."""
    out = np.linalg.inv(scale_homography(homography, stride))
    return out / out[2, 2]


def homography_problem(homography: np.ndarray, height: int, width: int, max_scale_change: float) -> str:
    """Why ``homography`` (3x3, prev -> cur pixels of an (height, width) frame) is implausible, or "" if it is not.

    Checks, in order: finite; no frame corner mapped through infinity; not near-singular; the warped
    frame is a convex quadrilateral with the same orientation (no mirroring, no twist); overall scale
    change sqrt(area ratio) within [1/m, m]; perspective (local scale at the four corners varies by at
    most m) and shear (anisotropy at the centre at most m), where m = ``max_scale_change``. Between
    consecutive drone frames all of these are far from their limits; breaking one means a wrong fit.
    """
    h = np.asarray(homography, np.float64)
    if h.shape != (3, 3) or not np.all(np.isfinite(h)):
        return "non-finite homography"
    corners = np.array([[-0.5, -0.5, 1.0], [width - 0.5, -0.5, 1.0], [width - 0.5, height - 0.5, 1.0],
                        [-0.5, height - 0.5, 1.0]])
    mapped = corners @ h.T  # (4, 3)
    w = mapped[:, 2]
    if w[0] < 0:  # H and -H are the same homography
        h, mapped, w = -h, -mapped, -w
    if not np.all(w > 1e-12 * np.abs(h).max()):
        return "degenerate homography (a frame corner maps through infinity)"
    local_area = np.linalg.det(h) / w**3  # Jacobian determinant of H at each corner
    if np.min(np.abs(local_area)) < NEAR_SINGULAR_AREA:
        return "near-singular homography"
    quad = mapped[:, :2] / w[:, None]
    edges = np.roll(quad, -1, axis=0) - quad
    turns = edges[:, 0] * np.roll(edges[:, 1], -1) - edges[:, 1] * np.roll(edges[:, 0], -1)
    if not np.all(turns > 0):
        return "warped frame is not a convex quadrilateral (mirrored or extreme perspective)"
    area = 0.5 * float(np.sum(quad[:, 0] * np.roll(quad[:, 1], -1) - np.roll(quad[:, 0], -1) * quad[:, 1]))
    scale = (area / (height * width)) ** 0.5
    if scale > max_scale_change:
        return f"scale change {scale:.2f} > {max_scale_change:g}"
    if scale < 1.0 / max_scale_change:
        return f"scale change {scale:.2f} < {1.0 / max_scale_change:.2f} (1/{max_scale_change:g})"
    local_scale = np.sqrt(local_area)
    spread = float(local_scale.max() / local_scale.min())
    if spread > max_scale_change:
        return f"perspective change too strong (local scale varies {spread:.2f}x > {max_scale_change:g})"
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    wc = h[2, 0] * cx + h[2, 1] * cy + h[2, 2]
    xc = (h[0, 0] * cx + h[0, 1] * cy + h[0, 2]) / wc
    yc = (h[1, 0] * cx + h[1, 1] * cy + h[1, 2]) / wc
    jac = (h[:2, :2] - np.outer((xc, yc), h[2, :2])) / wc
    sv = np.linalg.svd(jac, compute_uv=False)
    if sv[0] > max_scale_change * sv[1]:
        return f"shear too strong (anisotropy {sv[0] / sv[1]:.2f} > {max_scale_change:g})"
    return ""


def _grey_work_image(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (h, w) uint8 grey at work ``size`` (area-averaged when downscaled)."""
    if frame.strides[2] != 1 or frame.strides[1] != 3 or frame.strides[0] < 3 * frame.shape[1]:
        frame = np.ascontiguousarray(frame)  # OpenCV needs packed pixels and rows (not e.g. frame[:, :, ::-1])
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    if grey.shape != size:
        grey = cv2.resize(grey, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return grey


class _Detector:
    """One configured OpenCV detector/descriptor: ``detect(grey) -> (points (N, 2), descriptors, responses (N,))``.

    Binary descriptors are zero-padded to a multiple of 8 bytes (Hamming distances are unchanged) so
    that guided matching can compare them as 64-bit words.
    """

    def __init__(self, cfg: RegistrationConfig) -> None:
        self.max_features = cfg.max_features
        self.fast_threshold = ORB_FAST_THRESHOLD
        if cfg.detector == "orb":
            self.impl = cv2.ORB_create(nfeatures=cfg.max_features, nlevels=ORB_LEVELS, edgeThreshold=ORB_EDGE,
                                       patchSize=ORB_PATCH, fastThreshold=self.fast_threshold)
            self.norm = cv2.NORM_HAMMING
        elif cfg.detector == "sift":
            self.impl = cv2.SIFT_create(nfeatures=cfg.max_features)
            self.norm = cv2.NORM_L2
        elif cfg.detector == "akaze":
            contrib = getattr(cv2, "xfeatures2d", None)
            factory = getattr(cv2, "AKAZE_create", None) or getattr(contrib, "AKAZE_create", None)
            if factory is None:
                raise SspError(f"registration.detector: AKAZE is not in this OpenCV build ({cv2.__version__}; "
                               "OpenCV 5 moved it to opencv-contrib's xfeatures2d): use 'orb' or 'sift'")
            self.impl = factory()
            self.norm = cv2.NORM_HAMMING
        else:
            raise SspError(f"registration.detector: unknown detector {cfg.detector!r} (expected orb, akaze or sift)")
        self.is_orb = cfg.detector == "orb"

    def _set_fast_threshold(self, value: int) -> None:
        self.fast_threshold = value
        self.impl.setFastThreshold(value)

    def detect(self, grey: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        keypoints, descriptors = self.impl.detectAndCompute(grey, None)
        if self.is_orb:  # adapt the FAST threshold to the texture of the stream (see ORB_FAST_THRESHOLD)
            n, t = len(keypoints), self.fast_threshold
            if n < self.max_features // 4 and t > ORB_FAST_THRESHOLD_MIN:  # textureless: retry now
                self._set_fast_threshold(ORB_FAST_THRESHOLD_MIN)
                keypoints, descriptors = self.impl.detectAndCompute(grey, None)
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


def _spread_strongest(points: np.ndarray, responses: np.ndarray, work_shape: tuple[int, int], count: int) -> np.ndarray:
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


def _knn_ratio_match(desc_a: np.ndarray, desc_b: np.ndarray, norm: int, ratio: float) -> tuple[np.ndarray, np.ndarray]:
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


def _guided_match(pred: np.ndarray, prev_desc: np.ndarray, cur: FrameFeatures, radius: float,
                  ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Match binary descriptors of previous keypoints to current keypoints within ``radius`` of ``pred``.

    pred: (N, 2) predicted work positions in the current frame; prev_desc: (N, D) uint8 with D % 8 == 0.
    The current keypoints are bucketed in a grid of ``radius``-sized cells; each previous keypoint is compared with
    those in the 3x3 cells around its prediction that lie within ``radius``, and kept when the best
    Hamming distance passes the ratio test against the second best there (a lone candidate passes).
    The work is linear in N (times the few candidates per keypoint). Returns index arrays (K,), (K,).
    """
    empty = np.zeros(0, np.intp), np.zeros(0, np.intp)
    if len(pred) == 0 or len(cur) == 0:
        return empty
    h, w = cur.work_shape
    ncx, ncy = int(w // radius) + 3, int(h // radius) + 3  # one padding cell on every side, plus rounding
    cell = np.floor(cur.points / radius).astype(np.intp) + 1
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
    offset = cur.points.take(cand, axis=0)  # (total, 2); take() is much faster than fancy indexing here
    offset -= pred.take(row, axis=0)
    offset *= offset
    near = np.flatnonzero(offset[:, 0] + offset[:, 1] <= radius * radius)
    cand, row = cand.take(near), row.take(near)
    if len(row) == 0:
        return empty
    bits = prev_desc.view(np.uint64).take(row, axis=0)  # (total, D / 8) 64-bit words
    bits ^= cur.descriptors.view(np.uint64).take(cand, axis=0)
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


def _dlt(src: np.ndarray, dst: np.ndarray) -> np.ndarray | None:
    """Least-squares homography from (K, 2) point pairs, K >= 4, by the normalised DLT -> (3, 3) or None.

    Algebraic least squares after Hartley normalisation. For the near-affine homographies between
    consecutive frames it matches the geometric (Levenberg-Marquardt) fit to ~0.01 px, at a third of
    the cost of ``cv2.findHomography(..., 0)``.
    """
    s = src.astype(np.float64)
    d = dst.astype(np.float64)
    s_mean, d_mean = s.mean(axis=0), d.mean(axis=0)
    s -= s_mean
    d -= d_mean
    s_var, d_var = np.mean(s[:, 0] ** 2 + s[:, 1] ** 2), np.mean(d[:, 0] ** 2 + d[:, 1] ** 2)
    if not (s_var > 1e-12 and d_var > 1e-12):
        return None
    ks, kd = np.sqrt(2.0 / s_var), np.sqrt(2.0 / d_var)
    s *= ks
    d *= kd
    x, y, u, v = s[:, 0], s[:, 1], d[:, 0], d[:, 1]
    one, zero = np.ones(len(s)), np.zeros(len(s))
    rows = np.vstack((np.column_stack((x, y, one, zero, zero, zero, -u * x, -u * y, -u)),
                      np.column_stack((zero, zero, zero, x, y, one, -v * x, -v * y, -v))))
    _, vectors = np.linalg.eigh(rows.T @ rows)
    to_s = np.array([[ks, 0.0, -ks * s_mean[0]], [0.0, ks, -ks * s_mean[1]], [0.0, 0.0, 1.0]])
    to_d = np.array([[kd, 0.0, -kd * d_mean[0]], [0.0, kd, -kd * d_mean[1]], [0.0, 0.0, 1.0]])
    h = np.linalg.solve(to_d, vectors[:, 0].reshape(3, 3) @ to_s)
    if not np.all(np.isfinite(h)) or abs(h[2, 2]) < 1e-12:
        return None
    return h / h[2, 2]


def _refine(src: np.ndarray, dst: np.ndarray, h: np.ndarray, threshold: float, iterations: int = 3,
            start_threshold: float | None = None) -> tuple[np.ndarray, int]:
    """Refit ``h`` by least squares on the pairs within ``threshold`` of it, re-selecting them each time.

    src, dst: (K, 2) float32; h: (3, 3). The first selection uses ``start_threshold`` when given (a
    looser one, for a start model that is only approximate). Returns (refined H, inliers of that H).
    OpenCV's RANSAC returns a model fitted to a minimal sample (1-3 px off at the frame corners on our
    test scenes) and even MAGSAC++ gains from this (~0.4 -> ~0.25 px); guided matches start from the
    coarse model and need it anyway.
    """
    for step in range(iterations + 1):
        limit = (start_threshold if step == 0 and start_threshold is not None else threshold) ** 2
        err = cv2.perspectiveTransform(src[None], h)[0]
        err -= dst
        err *= err
        inliers = err[:, 0] + err[:, 1] <= limit
        count = int(np.count_nonzero(inliers))
        if step == iterations or count < 4:
            break
        refit = _dlt(src[inliers], dst[inliers])
        if refit is None:
            break
        h = refit
    return h, count


def _corner_shift(h_a: np.ndarray, h_b: np.ndarray, shape: tuple[int, int]) -> float:
    """The largest distance between where two homographies (3, 3) put the corners of an (h, w) image."""
    h, w = shape
    corners = np.array([[[0.0, 0.0], [w - 1.0, 0.0], [w - 1.0, h - 1.0], [0.0, h - 1.0]]])
    diff = cv2.perspectiveTransform(corners, h_a) - cv2.perspectiveTransform(corners, h_b)
    return float(np.sqrt(np.max(np.sum(diff * diff, axis=2))))


def _fit(src: np.ndarray, dst: np.ndarray, method: int, threshold: float) -> np.ndarray | None:
    """Robust homography (RANSAC or USAC-MAGSAC) from (K, 2) float32 point pairs -> (3, 3) or None."""
    if len(src) < 4:
        return None
    h, _ = cv2.findHomography(src, dst, method, threshold, maxIters=2000, confidence=0.999)
    return h


def _max_deformation(h: np.ndarray, height: int, width: int) -> float:
    """max |J - I| (spectral norm) of the Jacobian J of ``h`` (3, 3) over the centre and corners of an image."""
    pts = np.array([[(width - 1) / 2.0, (height - 1) / 2.0, 1.0], [0.0, 0.0, 1.0], [width - 1.0, 0.0, 1.0],
                    [0.0, height - 1.0, 1.0], [width - 1.0, height - 1.0, 1.0]])
    mapped = pts @ h.T  # (5, 3)
    w = mapped[:, 2:]
    jac = (h[None, :2, :2] - (mapped[:, :2] / w)[:, :, None] * h[None, 2:, :2]) / w[:, :, None]  # (5, 2, 2)
    return float(np.max(np.linalg.norm(jac - np.eye(2), ord=2, axis=(1, 2))))


def _subpixel_polish(prev: FrameFeatures, cur: FrameFeatures, ia: np.ndarray, ib: np.ndarray, h: np.ndarray,
                     threshold: float) -> np.ndarray:
    """Refit work-resolution ``h`` to Lucas-Kanade refined positions of up to SUBPIXEL_POINTS of its inliers.

    ia, ib: (K,) matched keypoint indices into prev / cur. Each selected inlier is tracked from the
    previous grey image into the current one, starting at its position predicted by ``h``; tracks that
    fail or move by more than ``threshold`` are dropped. Lucas-Kanade assumes a locally translational
    motion, so when ``h`` rotates or zooms noticeably the previous image is first warped by ``h``.
    Returns ``h`` unchanged when too few tracks survive.
    """
    if SUBPIXEL_POINTS <= 0:
        return h
    src = prev.points[ia]
    err = cv2.perspectiveTransform(src[None], h)[0] - cur.points[ib]
    keep = np.flatnonzero(np.sum(err * err, axis=1) <= threshold * threshold)
    if len(keep) > SUBPIXEL_POINTS:
        keep = keep[np.linspace(0, len(keep) - 1, SUBPIXEL_POINTS).astype(np.intp)]
    if len(keep) < 8:
        return h
    src = src[keep].reshape(-1, 1, 2)
    pred = cv2.perspectiveTransform(src, h)
    height, width = cur.work_shape
    if _max_deformation(h, height, width) > SUBPIXEL_MAX_DEFORMATION:
        reference, start = cv2.warpPerspective(prev.grey, h, (width, height), flags=cv2.INTER_LINEAR), pred
    else:
        reference, start = prev.grey, src
    tracked, status, _ = cv2.calcOpticalFlowPyrLK(
        reference, cur.grey, start, pred.copy(), winSize=(SUBPIXEL_WINDOW, SUBPIXEL_WINDOW), maxLevel=0,
        criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 10, 0.01), flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
    moved = tracked - pred
    good = (status.ravel() == 1) & (np.sum(moved * moved, axis=2).ravel() <= threshold * threshold)
    if np.count_nonzero(good) < 8:
        return h
    polished, count = _refine(src[good, 0], tracked[good, 0], h, threshold, iterations=2)
    return polished if count >= 8 else h


class FrameRegistrar:
    """Registers each new frame to the one before: ``register(frame_rgb) -> Registration``.

    Keypoints are detected once per frame and the previous frame's are cached. The first frame, the
    first frame after ``reset()`` and a frame whose resolution differs from the previous one return a
    failed Registration (and become the reference for the next frame). Not thread-safe: one per stream.
    """

    def __init__(self, cfg: RegistrationConfig | None = None) -> None:
        self.cfg = cfg if cfg is not None else RegistrationConfig()
        self._detector = _Detector(self.cfg)
        self._method = cv2.USAC_MAGSAC if self.cfg.method == "usac" else cv2.RANSAC
        self._prev: FrameFeatures | None = None

    def reset(self) -> None:
        """Forget the previous frame: the next ``register`` call is a first frame."""
        self._prev = None

    def features(self, frame_rgb: np.ndarray) -> FrameFeatures:
        """Detect the keypoints of one (H, W, 3) uint8 RGB frame (validated; ValueError if malformed)."""
        check_frame(frame_rgb)
        height, width = frame_rgb.shape[:2]
        small = work_size(height, width, self.cfg.work_width)
        grey = _grey_work_image(frame_rgb, small)
        points, descriptors, responses = self._detector.detect(grey)
        coarse = _spread_strongest(points, responses, small, COARSE_KEYPOINTS)
        to_work = resize_homography(small[1] / width, small[0] / height)
        return FrameFeatures((height, width), small, grey, to_work, points, descriptors, coarse)

    def register(self, frame_rgb: np.ndarray) -> Registration:
        """Register ``frame_rgb`` (H, W, 3) uint8 RGB to the previous frame, then make it the previous frame.

        With ``cfg.enabled`` off nothing is detected and every frame gets the identity homography.
        """
        if not self.cfg.enabled:
            check_frame(frame_rgb)
            return Registration(np.eye(3), ok=True)
        cur = self.features(frame_rgb)
        prev, self._prev = self._prev, cur
        if prev is None:
            return Registration.failed("first frame")
        if prev.shape != cur.shape:
            return Registration.failed(f"resolution changed {prev.shape[0]}x{prev.shape[1]} -> "
                                       f"{cur.shape[0]}x{cur.shape[1]}")
        return self.match(prev, cur)

    def match(self, prev: FrameFeatures, cur: FrameFeatures) -> Registration:
        """The homography prev -> cur from two frames' features (same resolution), through the quality gate."""
        cfg = self.cfg
        if prev.shape != cur.shape:
            raise ValueError(f"frames differ in size: {prev.shape} vs {cur.shape}")
        for name, feats in (("previous", prev), ("current", cur)):
            if len(feats) < cfg.min_inliers:
                return Registration.failed(f"too few keypoints in {name} frame ({len(feats)} < {cfg.min_inliers})")
        # full-resolution px -> work px (floored: see MIN_THRESHOLD_WORK_PX)
        threshold = max(cfg.ransac_threshold_px * prev.to_work[0, 0], MIN_THRESHOLD_WORK_PX)

        found = None
        binary = self._detector.norm == cv2.NORM_HAMMING
        if binary and min(len(prev), len(cur)) > 2 * COARSE_KEYPOINTS:
            found = self._coarse_to_fine(prev, cur, threshold)
        if found is None:  # exhaustive matching: small keypoint sets, float descriptors, or coarse step failed
            ia, ib = _knn_ratio_match(prev.descriptors, cur.descriptors, self._detector.norm, cfg.ratio)
            if len(ia) < cfg.min_inliers:
                return Registration.failed(f"too few matches ({len(ia)} < {cfg.min_inliers})", len(ia))
            h_small = _fit(prev.points[ia], cur.points[ib], self._method, threshold)
            if h_small is None:
                return Registration.failed("homography fit failed", len(ia))
            found = (ia, ib, *_refine(prev.points[ia], cur.points[ib], h_small, threshold))
        ia, ib, h_small, inliers = found
        matches = len(ia)

        if inliers < cfg.min_inliers:
            return Registration.failed(f"too few inliers ({inliers} < {cfg.min_inliers})", matches, inliers)
        ratio = inliers / matches
        if ratio < cfg.min_inlier_ratio:
            return Registration.failed(f"inlier ratio {ratio:.2f} < {cfg.min_inlier_ratio:g}", matches, inliers)
        h_small = _subpixel_polish(prev, cur, ia, ib, h_small, threshold)
        h_full = np.linalg.solve(cur.to_work, h_small @ prev.to_work)  # to_work^-1 @ H_small @ to_work
        if not np.all(np.isfinite(h_full)) or abs(h_full[2, 2]) < 1e-12:
            return Registration.failed("non-finite homography", matches, inliers)
        h_full /= h_full[2, 2]
        problem = homography_problem(h_full, prev.shape[0], prev.shape[1], cfg.max_scale_change)
        if problem:
            return Registration.failed(problem, matches, inliers)
        return Registration(h_full, inliers, matches, ratio, True, "")

    def _coarse_to_fine(self, prev: FrameFeatures, cur: FrameFeatures,
                        threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, int] | None:
        """Affine model from the coarse keypoints, guided matching of all, refit -> (ia, ib, H_work, inliers) or None.

        The coarse model is affine on purpose: a homography fitted to a few hundred keypoints that
        cluster in part of the frame can extrapolate its perspective terms wildly, and guided matching
        would then only find (and confirm) matches where it happens to be right (we saw 10-180 px errors
        at the far corners that way). Between consecutive frames the perspective part of the motion is
        well within GUIDED_RADIUS_PX of the affine prediction. None means: use exhaustive matching.
        """
        cfg = self.cfg
        ia, ib = _knn_ratio_match(prev.descriptors[prev.coarse], cur.descriptors[cur.coarse],
                                  self._detector.norm, cfg.ratio)
        if len(ia) < cfg.min_inliers:
            return None
        affine, mask = cv2.estimateAffine2D(prev.points[prev.coarse[ia]], cur.points[cur.coarse[ib]],
                                            method=self._method, ransacReprojThreshold=2.0 * threshold,
                                            maxIters=2000, confidence=0.999, refineIters=0)
        if affine is None or mask is None or int(np.count_nonzero(mask)) < cfg.min_inliers:
            return None
        pred = cv2.transform(prev.points[None], affine)[0]
        ia, ib = _guided_match(pred, prev.descriptors, cur, GUIDED_RADIUS_PX, cfg.ratio)
        if len(ia) < cfg.min_inliers:
            return None
        src, dst = prev.points[ia], cur.points[ib]
        start = np.vstack((affine, (0.0, 0.0, 1.0)))
        h_small, inliers = _refine(src, dst, start, threshold, iterations=2, start_threshold=0.5 * GUIDED_RADIUS_PX)
        if inliers < GUIDED_MIN_INLIER_SHARE * len(ia) or \
                _corner_shift(h_small, start, cur.work_shape) > 0.5 * GUIDED_RADIUS_PX:
            # Strong perspective change: the affine prediction was off somewhere in the frame, so guided
            # matching may have missed matches there and the refit may sit in a local optimum. Fit the
            # guided matches robustly, then match again around that homography.
            h_small = _fit(src, dst, self._method, threshold)
            if h_small is None:
                return None
            h_small, _ = _refine(src, dst, h_small, threshold)
            pred = cv2.perspectiveTransform(prev.points[None], h_small)[0]
            ia, ib = _guided_match(pred, prev.descriptors, cur, GUIDED_RADIUS_PX, cfg.ratio)
            if len(ia) < cfg.min_inliers:
                return None
            h_small, inliers = _refine(prev.points[ia], cur.points[ib], h_small, threshold)
        if inliers < max(cfg.min_inliers, GUIDED_MIN_INLIER_SHARE * len(ia)):
            return None
        return ia, ib, h_small, inliers


def estimate_homography(prev_rgb: np.ndarray, cur_rgb: np.ndarray,
                        cfg: RegistrationConfig | None = None) -> Registration:
    """The homography mapping ``prev_rgb`` pixels to ``cur_rgb`` pixels (both (H, W, 3) uint8 RGB), gated.

    A one-shot convenience over :class:`FrameRegistrar` (which detects each frame only once in a stream).
    Frames of different sizes return a failed Registration; malformed frames raise ValueError.
    """
    check_frame(prev_rgb, "prev_rgb")
    check_frame(cur_rgb, "cur_rgb")
    registrar = FrameRegistrar(cfg)
    registrar.register(prev_rgb)
    return registrar.register(cur_rgb)

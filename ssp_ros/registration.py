"""Frame-to-frame global homography for a drone camera (OpenCV keypoints + robust fitting).

SSP warps the previous frame's fused logits and features into the current frame with a homography
``H`` (previous pixel -> current pixel). For a camera far above roughly flat ground a single homography
explains the image motion well; where it does not (tall buildings, moving cars) the similarity head
learns to distrust the warped state.

How ``H`` is found, per frame, at modest cost:

1. The RGB frame is turned into a grey image downscaled to ``cfg.work_width`` (never upscaled).
2. Keypoints + descriptors are detected once per frame (ORB by default; SIFT; AKAZE where the OpenCV
   build has it), outside the sky band of an oblique view (``sky_band.py``; ``cfg.ignore_sky``), so the
   homography and the quality gate see the ground only. :class:`FrameRegistrar` caches them, so each
   frame is detected exactly once.
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

Steps 2 and 3's detector and matchers are in ``matching.py``; the homography arithmetic (resizing, stride
scaling, least-squares fit, the quality gate) is in ``geometry.py``, whose conventions this module follows:
pixel (col, row) has its centre at (x, y) = (col, row), as in OpenCV, and homographies are 3x3 float64
acting on column vectors (x, y, 1).

This module imports no torch: it runs on the drone's CPU next to the inference runtime.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ssp_ros.config import RegistrationConfig
from ssp_ros.frames import check_frame
from ssp_ros.geometry import (
    corner_shift,
    fit_homography_lsq,
    homography_problem,
    max_deformation,
    resize_homography,
    work_size,
)
from ssp_ros.matching import Detector, grey_work_image, guided_match, knn_ratio_match, spread_strongest
from ssp_ros.sky_band import ground_mask

__all__ = ["FrameFeatures", "FrameRegistrar", "Registration", "estimate_homography"]

# Coarse-to-fine matching (binary descriptors only).
COARSE_KEYPOINTS = 200  # strong keypoints per frame, spread over the frame, matched exhaustively for a coarse model
GUIDED_RADIUS_PX = 8.0  # work-resolution search radius around the position predicted by the coarse model
GUIDED_MIN_INLIER_SHARE = 0.5  # fewer guided matches consistent with the final H -> coarse model was wrong
# Sub-pixel polish: ORB keypoints sit on the pixel grid of their pyramid level (true matches scatter by
# ~0.6 work px), so the final homography is refitted to Lucas-Kanade refined positions of a subset of its
# inliers (~0.1 px scatter): corner errors drop from ~0.5-3 px to ~0.1-0.3 px for ~0.4 ms.
SUBPIXEL_POINTS = 400  # inliers tracked with Lucas-Kanade; 0 switches the polish off
SUBPIXEL_WINDOW = 9  # Lucas-Kanade window (work pixels)
SUBPIXEL_MAX_DEFORMATION = 0.05  # |J - I| above this: warp the previous image first (translational LK)
# Keypoints sit on the work image's pixel grid, so true matches scatter by ~0.5 work px: an inlier
# threshold below this many work pixels (a small work_width) would throw good matches away.
MIN_THRESHOLD_WORK_PX = 1.0
FIRST_FRAME = "first frame"  # the reason when there is no previous frame to register to: no pair, no failure
# config keys the keypoints depend on
DETECTION_KEYS = ("enabled", "detector", "max_features", "work_width", "ignore_sky")


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
        refit = fit_homography_lsq(src[inliers], dst[inliers])
        if refit is None:
            break
        h = refit
    return h, count


def _fit(src: np.ndarray, dst: np.ndarray, method: int, threshold: float) -> np.ndarray | None:
    """Robust homography (RANSAC or USAC-MAGSAC) from (K, 2) float32 point pairs -> (3, 3) or None."""
    if len(src) < 4:
        return None
    h, _ = cv2.findHomography(src, dst, method, threshold, maxIters=2000, confidence=0.999)
    return h


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
    if max_deformation(h, height, width) > SUBPIXEL_MAX_DEFORMATION:
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


@dataclass(frozen=True)
class PendingRegistration:
    """A frame registered to the previous one, not yet made the previous frame (``FrameRegistrar.prepare``)."""

    registration: Registration
    features: FrameFeatures | None  # None when registration is disabled (nothing to keep)


class FrameRegistrar:
    """Registers each new frame to the one before: ``register(frame_rgb) -> Registration``.

    Keypoints are detected once per frame and the previous frame's are cached. The first frame, the
    first frame after ``reset()`` and a frame whose resolution differs from the previous one return a
    failed Registration (and become the reference for the next frame). ``register`` is ``prepare`` (which
    changes nothing, so it may run in another thread while the frame is segmented) then ``commit``. Not
    thread-safe otherwise: one per stream, one call at a time.
    """

    def __init__(self, cfg: RegistrationConfig | None = None) -> None:
        self.cfg = cfg if cfg is not None else RegistrationConfig()
        self._detector = Detector(self.cfg)
        self._prev: FrameFeatures | None = None

    @property
    def _method(self) -> int:
        return cv2.USAC_MAGSAC if self.cfg.method == "usac" else cv2.RANSAC

    def reconfigure(self, cfg: RegistrationConfig) -> None:
        """Use ``cfg`` from the next frame on (call it between frames, from the thread that registers them:
        ``Pipeline.reconfigure`` does). A change of what is detected (DETECTION_KEYS) makes a new detector and
        forgets the previous frame's keypoints, which could not be matched with the new ones (the next frame
        is then registered as a first frame)."""
        if any(getattr(self.cfg, key) != getattr(cfg, key) for key in DETECTION_KEYS):
            self._detector = Detector(cfg)
            self._prev = None
        self.cfg = cfg

    def reset(self) -> None:
        """Forget the previous frame: the next ``register`` call is a first frame."""
        self._prev = None

    def features(self, frame_rgb: np.ndarray) -> FrameFeatures:
        """Detect the keypoints of one (H, W, 3) uint8 RGB frame (validated; ValueError if malformed)."""
        check_frame(frame_rgb)
        height, width = frame_rgb.shape[:2]
        small = work_size(height, width, self.cfg.work_width)
        grey = grey_work_image(frame_rgb, small)
        mask = ground_mask(frame_rgb, small) if self.cfg.ignore_sky else None
        points, descriptors, responses = self._detector.detect(grey, mask)
        coarse = spread_strongest(points, responses, small, COARSE_KEYPOINTS)
        to_work = resize_homography(small[1] / width, small[0] / height)
        return FrameFeatures((height, width), small, grey, to_work, points, descriptors, coarse)

    def register(self, frame_rgb: np.ndarray) -> Registration:
        """Register ``frame_rgb`` (H, W, 3) uint8 RGB to the previous frame, then make it the previous frame.

        With ``cfg.enabled`` off nothing is detected and every frame gets the identity homography.
        """
        return self.commit(self.prepare(frame_rgb))

    def prepare(self, frame_rgb: np.ndarray) -> PendingRegistration:
        """``register`` without its side effect: detect and match, leaving the previous frame as it is. The
        pipeline runs this next to the segmenter and commits only a frame it finished (a frame that fails
        later must not become the reference of the next one)."""
        if not self.cfg.enabled:
            check_frame(frame_rgb)
            return PendingRegistration(Registration(np.eye(3), ok=True), None)
        cur = self.features(frame_rgb)
        prev = self._prev
        if prev is None:
            registration = Registration.failed(FIRST_FRAME)
        elif prev.shape != cur.shape:
            registration = Registration.failed(f"resolution changed {prev.shape[0]}x{prev.shape[1]} -> "
                                               f"{cur.shape[0]}x{cur.shape[1]}")
        else:
            registration = self.match(prev, cur)
        return PendingRegistration(registration, cur)

    def commit(self, pending: PendingRegistration) -> Registration:
        """Make the prepared frame the previous frame; returns its registration."""
        if pending.features is not None:
            self._prev = pending.features
        return pending.registration

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
            ia, ib = knn_ratio_match(prev.descriptors, cur.descriptors, self._detector.norm, cfg.ratio)
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
        ia, ib = knn_ratio_match(prev.descriptors[prev.coarse], cur.descriptors[cur.coarse],
                                  self._detector.norm, cfg.ratio)
        if len(ia) < cfg.min_inliers:
            return None
        affine, mask = cv2.estimateAffine2D(prev.points[prev.coarse[ia]], cur.points[cur.coarse[ib]],
                                            method=self._method, ransacReprojThreshold=2.0 * threshold,
                                            maxIters=2000, confidence=0.999, refineIters=0)
        if affine is None or mask is None or int(np.count_nonzero(mask)) < cfg.min_inliers:
            return None
        pred = cv2.transform(prev.points[None], affine)[0]
        ia, ib = guided_match(pred, prev.descriptors, cur.points, cur.descriptors, cur.work_shape, GUIDED_RADIUS_PX,
                              cfg.ratio)
        if len(ia) < cfg.min_inliers:
            return None
        src, dst = prev.points[ia], cur.points[ib]
        start = np.vstack((affine, (0.0, 0.0, 1.0)))
        h_small, inliers = _refine(src, dst, start, threshold, iterations=2, start_threshold=0.5 * GUIDED_RADIUS_PX)
        if inliers < GUIDED_MIN_INLIER_SHARE * len(ia) or \
                corner_shift(h_small, start, cur.work_shape) > 0.5 * GUIDED_RADIUS_PX:
            # Strong perspective change: the affine prediction was off somewhere in the frame, so guided
            # matching may have missed matches there and the refit may sit in a local optimum. Fit the
            # guided matches robustly, then match again around that homography.
            h_small = _fit(src, dst, self._method, threshold)
            if h_small is None:
                return None
            h_small, _ = _refine(src, dst, h_small, threshold)
            pred = cv2.perspectiveTransform(prev.points[None], h_small)[0]
            ia, ib = guided_match(pred, prev.descriptors, cur.points, cur.descriptors, cur.work_shape, GUIDED_RADIUS_PX,
                              cfg.ratio)
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

"""Our registrar against the OpenCV pipeline it replaces, on synthetic frame pairs whose homography is known.

The reference is what one would write with OpenCV alone: the same keypoints (``matching.Detector`` on the
same work image), ``cv2.BFMatcher`` k = 2 nearest neighbours with Lowe's ratio test, and
``cv2.findHomography`` with the configured robust method (USAC-MAGSAC by default) and inlier threshold.
Both see the same features, so the comparison is of matching and fitting: accuracy as the corner error
against the synthetic ground plane's exact homography (full-resolution pixels), speed as the time from
features to homography. ``test/test_registration.py`` holds the accuracy to account; ``ssp bench`` reports
the speed ratio. ``tilt_sweep`` measures the registrar on oblique flights (``test/tools/registration_vs_tilt.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import cv2
import numpy as np

from ssp_ros.config import RegistrationConfig
from ssp_ros.geometry import corner_shift
from ssp_ros.registration import MIN_THRESHOLD_WORK_PX, FrameFeatures, FrameRegistrar
from ssp_ros.synthetic import SyntheticVideo, relative_homography
from ssp_ros.synthetic.config import SyntheticConfig


@dataclass(frozen=True)
class PairResult:
    """One pair: corner errors (px, inf when no homography came out) and features → homography times (ms)."""

    ours_px: float
    reference_px: float
    ours_ms: float
    reference_ms: float


Pair = tuple[np.ndarray, np.ndarray, np.ndarray]  # prev RGB, cur RGB, true prev → cur homography (3, 3)


def synthetic_pairs(scenario: SyntheticConfig, count: int, seed: int) -> list[Pair]:
    """``count`` consecutive (prev RGB, cur RGB, true prev → cur homography) pairs of a synthetic flight."""
    frames = list(SyntheticVideo(scenario, count + 1, seed))
    return [(a.image, b.image, relative_homography(a, b)) for a, b in zip(frames[:-1], frames[1:])]


def opencv_reference(prev: FrameFeatures, cur: FrameFeatures, cfg: RegistrationConfig) -> np.ndarray | None:
    """The homography prev → cur (full resolution) by BFMatcher + ratio test + cv2.findHomography, or None."""
    if prev.descriptors is None or cur.descriptors is None or len(cur) < 2:
        return None
    norm = cv2.NORM_L2 if prev.descriptors.dtype == np.float32 else cv2.NORM_HAMMING
    pairs = cv2.BFMatcher(norm).knnMatch(prev.descriptors, cur.descriptors, k=2)
    good = [m for m, n in (p for p in pairs if len(p) == 2) if m.distance < cfg.ratio * n.distance]
    if len(good) < 4:
        return None
    src = prev.points[[m.queryIdx for m in good]]
    dst = cur.points[[m.trainIdx for m in good]]
    threshold = max(cfg.ransac_threshold_px * prev.to_work[0, 0], MIN_THRESHOLD_WORK_PX)
    method = cv2.USAC_MAGSAC if cfg.method == "usac" else cv2.RANSAC
    h_small, _ = cv2.findHomography(src, dst, method, threshold, maxIters=2000, confidence=0.999)
    if h_small is None:
        return None
    h_full = np.linalg.solve(cur.to_work, h_small @ prev.to_work)
    return h_full / h_full[2, 2]


def compare(pairs: list[Pair], cfg: RegistrationConfig | None = None) -> list[PairResult]:
    """Run our registrar and the OpenCV reference on each pair's shared features."""
    registrar = FrameRegistrar(cfg)
    cfg = registrar.cfg
    results = []
    for prev_rgb, cur_rgb, truth in pairs:
        prev, cur = registrar.features(prev_rgb), registrar.features(cur_rgb)
        size = prev.shape
        start = time.perf_counter()
        ours = registrar.match(prev, cur)
        middle = time.perf_counter()
        reference = opencv_reference(prev, cur, cfg)
        end = time.perf_counter()
        results.append(PairResult(
            ours_px=corner_shift(ours.homography, truth, size) if ours.ok else np.inf,
            reference_px=corner_shift(reference, truth, size) if reference is not None else np.inf,
            ours_ms=1000.0 * (middle - start), reference_ms=1000.0 * (end - middle)))
    return results


def summary(results: list[PairResult]) -> dict:
    """Shares, error percentiles and median times of a ``compare`` run (JSON-ready)."""
    ours = np.array([r.ours_px for r in results])
    ref = np.array([r.reference_px for r in results])

    def stats(errors: np.ndarray) -> dict:
        found = errors[np.isfinite(errors)]
        return {"failed": int(np.sum(~np.isfinite(errors))),
                "median_px": round(float(np.median(found)), 3) if len(found) else None,
                "p95_px": round(float(np.percentile(found, 95)), 3) if len(found) else None}

    ours_ms = float(np.median([r.ours_ms for r in results]))
    ref_ms = float(np.median([r.reference_ms for r in results]))
    return {"pairs": len(results), "ours_no_worse_share": round(float(np.mean(ours <= ref)), 4),
            "ours": {**stats(ours), "median_ms": round(ours_ms, 3)},
            "opencv": {**stats(ref), "median_ms": round(ref_ms, 3)},
            "speed_ratio": round(ref_ms / ours_ms, 2) if ours_ms > 0 else None}


def tilt_sweep(base: SyntheticConfig, pitches: list[float], seeds: list[int], pairs: int,
               variants: dict[str, RegistrationConfig]) -> list[dict]:
    """Our registrar on synthetic flights flown at fixed forward pitches: one row per (pitch, variant).

    Each row: pairs, failed (registration refused), median / p95 / max corner error (full-resolution px, against
    the ground's exact homography, over the pairs that registered) and the mean number of keypoints per frame
    that lie in the sky. Every variant sees the same frames.
    """
    rows = []
    for pitch in pitches:
        scenario = replace(base, camera=replace(base.camera, pitch_deg=(pitch, pitch)))
        flights = [list(SyntheticVideo(scenario, pairs + 1, seed)) for seed in seeds]
        for name, cfg in variants.items():
            errors, failed, in_sky, frames = [], 0, 0, 0
            for flight in flights:
                registrar = FrameRegistrar(cfg)
                previous = None
                for frame in flight:
                    features = registrar.features(frame.image)
                    points = np.rint(features.points / features.to_work[0, 0]).astype(int)
                    if frame.sky is not None and len(points):
                        cols = np.clip(points[:, 0], 0, frame.image.shape[1] - 1)
                        lines = np.clip(points[:, 1], 0, frame.image.shape[0] - 1)
                        in_sky += int(frame.sky[lines, cols].sum())
                    frames += 1
                    if previous is not None:
                        result = registrar.match(previous[1], features)
                        if result.ok:
                            truth = relative_homography(previous[0], frame)
                            errors.append(corner_shift(result.homography, truth, frame.image.shape[:2]))
                        else:
                            failed += 1
                    previous = (frame, features)
            found = np.array(errors)
            rows.append({"pitch_deg": pitch, "variant": name, "pairs": pairs * len(seeds), "failed": failed,
                         "median_px": round(float(np.median(found)), 3) if len(found) else None,
                         "p95_px": round(float(np.percentile(found, 95)), 3) if len(found) else None,
                         "max_px": round(float(found.max()), 3) if len(found) else None,
                         "sky_keypoints_per_frame": round(in_sky / max(frames, 1), 1)})
    return rows

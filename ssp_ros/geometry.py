"""Pure homography helpers: no state, no OpenCV objects, shapes in the docstrings.

Conventions: pixel coordinates put the centre of pixel (col, row) at (x, y) = (col, row), as in OpenCV;
homographies are 3x3 float64 acting on column vectors (x, y, 1). Registration, the letterbox, the pipeline,
the warp and training all use these; the registrar that estimates homographies is ``registration.py``
(with the detector and matchers of ``matching.py``).
"""

from __future__ import annotations

import cv2
import numpy as np

NEAR_SINGULAR_AREA = 1e-6  # local area scale of H below this -> near-singular


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


def fit_homography_lsq(src: np.ndarray, dst: np.ndarray) -> np.ndarray | None:
    """Least-squares homography from (K, 2) point pairs, K >= 4, by the normalised DLT -> (3, 3) or None.

    Algebraic least squares after Hartley normalisation. Written out rather than taken from
    ``cv2.findHomography(src, dst, 0)``: for the near-affine homographies between consecutive frames it
    matches that geometric (Levenberg-Marquardt) fit to ~0.01 px at a third of the cost, on the many small
    refits per frame, and returns None instead of raising on degenerate input.
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


def corner_shift(h_a: np.ndarray, h_b: np.ndarray, shape: tuple[int, int]) -> float:
    """The largest distance between where two homographies (3, 3) put the corners of an (h, w) image."""
    h, w = shape
    corners = np.array([[[0.0, 0.0], [w - 1.0, 0.0], [w - 1.0, h - 1.0], [0.0, h - 1.0]]])
    diff = cv2.perspectiveTransform(corners, h_a) - cv2.perspectiveTransform(corners, h_b)
    return float(np.sqrt(np.max(np.sum(diff * diff, axis=2))))


def max_deformation(h: np.ndarray, height: int, width: int) -> float:
    """max |J - I| (spectral norm) of the Jacobian J of ``h`` (3, 3) over the centre and corners of an image."""
    pts = np.array([[(width - 1) / 2.0, (height - 1) / 2.0, 1.0], [0.0, 0.0, 1.0], [width - 1.0, 0.0, 1.0],
                    [0.0, height - 1.0, 1.0], [width - 1.0, height - 1.0, 1.0]])
    mapped = pts @ h.T  # (5, 3)
    w = mapped[:, 2:]
    jac = (h[None, :2, :2] - (mapped[:, :2] / w)[:, :, None] * h[None, 2:, :2]) / w[:, :, None]  # (5, 2, 2)
    return float(np.max(np.linalg.norm(jac - np.eye(2), ord=2, axis=(1, 2))))

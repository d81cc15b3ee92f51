"""Filtered sampling of the world texture: a mip-map pyramid read with trilinear, anisotropic filtering.

An oblique camera sees the far ground shrunk many times and stretched along the view: sampled point by
point (``cv2.warpPerspective`` with bilinear weights) its texture aliases into noise that crawls from frame
to frame. GPUs avoid that with mip-maps and anisotropic filtering; OpenCV has the pyramid (``cv2.pyrDown``)
and the resampling (``cv2.remap``) but no filtered perspective warp (``INTER_AREA`` is not supported by
``warpPerspective``), so the level choice and the taps are written here:

* each image pixel's footprint on the world texture is given by the Jacobian of the image → world map:
  its longer axis ``ρmax`` and shorter axis ``ρmin`` (world pixels per image pixel);
* ``N = min(ceil(ρmax / ρmin), MAX_ANISOTROPY)`` taps are spread along the longer axis, each read at the
  pyramid level whose texel is ``ρmax / N`` wide (blending the two nearest levels: trilinear);
* a texel never gets larger than the footprint's shorter axis would allow, except beyond MAX_ANISOTROPY,
  where the far ground is blurred rather than aliased.

Coordinates: world pixel centres at integers (as OpenCV); level ``l`` of ``cv2.pyrDown`` has its pixel
centres at world coordinates ``2**l · i + (2**l − 1) / 2``.
"""

from __future__ import annotations

import cv2
import numpy as np

MAX_ANISOTROPY = 4  # taps along the footprint's longer axis (GPUs allow up to 16; 4 keeps rendering fast)
MIN_LEVEL_SIZE = 8  # the pyramid stops before a level gets smaller than this many pixels
FOOTPRINT_STEP = 4  # image pixels between the points where the footprint is worked out exactly
POINTS_ROW = 4096  # sample_points reads its points in rows this long


class MipMap:
    """A texture and its ``cv2.pyrDown`` pyramid, read with :meth:`sample` (a grid) or :meth:`sample_points`."""

    def __init__(self, image: np.ndarray, max_levels: int | None = None) -> None:
        """``max_levels`` caps the pyramid (a texture atlas: coarser levels would blend neighbouring textures)."""
        self.levels = [image]
        while min(self.levels[-1].shape[:2]) >= 2 * MIN_LEVEL_SIZE and len(self.levels) != max_levels:
            self.levels.append(cv2.pyrDown(self.levels[-1], borderType=cv2.BORDER_REFLECT))

    def sample(self, u: np.ndarray, v: np.ndarray, jacobian: np.ndarray) -> np.ndarray:
        """Filtered texture at world positions ``u, v`` (H×W float) whose footprints are ``jacobian``.

        The footprint varies smoothly over the image, so it is given at every FOOTPRINT_STEP-th pixel only
        (``footprint_points``) and interpolated: ``jacobian`` is h×w×2×2, [[du/dx, du/dy], [dv/dx, dv/dy]] of
        the image → world map there. Returns H×W×C float32. Outside the world the texture is mirrored
        (``cv2.BORDER_REFLECT``).
        """
        expected = tuple(-(-side // FOOTPRINT_STEP) for side in u.shape)  # footprint_points of an H×W grid
        if jacobian.shape != (*expected, 2, 2):
            raise ValueError(f"jacobian: expected {expected} x 2 x 2 (every {FOOTPRINT_STEP}th pixel of "
                             f"{u.shape}), got {jacobian.shape}")
        level, spread, taps = self._filter(jacobian)
        size = (u.shape[1], u.shape[0])
        level = cv2.resize(level, size, interpolation=cv2.INTER_LINEAR)
        spread = cv2.resize(spread, size, interpolation=cv2.INTER_LINEAR) if taps > 1 else None
        return self._read(u, v, level, spread, taps)

    def sample_points(self, u: np.ndarray, v: np.ndarray, jacobian: np.ndarray) -> np.ndarray:
        """Filtered texture at N scattered positions ``u, v`` (N,) with their own footprints (N×2×2, as in
        :meth:`sample`): pixels of many small planes, each footprint exact. Returns N×C float32."""
        n = len(u)
        if jacobian.shape != (n, 2, 2):
            raise ValueError(f"jacobian: expected {n} x 2 x 2 (one per point), got {jacobian.shape}")
        if n == 0:
            return np.zeros((0, self.levels[0].shape[2]), np.float32)
        level, spread, taps = self._filter(jacobian)
        # rows of similar level, so that each level reads only the rows it serves (a radix sort on eighths of a level)
        order = np.argsort(np.round(level * 8).astype(np.uint8), kind="stable")
        width = min(n, POINTS_ROW)  # laid out in rows: cv2.remap takes maps under 32767 px a side
        rows = -(-n // width)

        def grid(values: np.ndarray) -> np.ndarray:
            flat = np.zeros((rows * width, *values.shape[1:]), np.float32)
            flat[:n] = values[order]
            return flat.reshape(rows, width, *values.shape[1:])

        read = self._read(grid(u), grid(v), grid(level), grid(spread) if taps > 1 else None, taps)
        out = np.empty((n, read.shape[-1]), np.float32)
        out[order] = read.reshape(rows * width, -1)[:n]
        return out

    def _filter(self, jacobian: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """Pyramid level (…), tap spread (…×2, world px) and tap count of footprints ``jacobian`` (…×2×2)."""
        coarse = jacobian.astype(np.float32)
        along_x, along_y = coarse[..., 0], coarse[..., 1]  # footprint edges (world px)
        len_x, len_y = np.hypot(along_x[..., 0], along_x[..., 1]), np.hypot(along_y[..., 0], along_y[..., 1])
        major = np.where((len_x >= len_y)[..., None], along_x, along_y)
        rho_max, rho_min = np.maximum(len_x, len_y), np.maximum(np.minimum(len_x, len_y), 1e-9)
        taps_needed = np.clip(np.ceil(rho_max / rho_min - 0.5), 1, MAX_ANISOTROPY)  # within 1.5x: one tap
        level = np.clip(np.log2(np.maximum(rho_max / taps_needed, 1.0)), 0.0, len(self.levels) - 1.0)
        spread = major * ((1.0 - 1.0 / taps_needed)[..., None])  # tap centres span the footprint less one texel
        return level, spread, int(taps_needed.max(initial=1))

    def _read(self, u: np.ndarray, v: np.ndarray, level: np.ndarray, spread: np.ndarray | None,
              taps: int) -> np.ndarray:
        """``taps`` reads spread along ``spread`` around ``u, v`` (H×W), each trilinear between the two levels
        around ``level``; H×W×C float32."""
        height, width = self.levels[0].shape[:2]
        positions = []  # per tap: world (x, y), folded into the texture
        for tap in range(taps):
            if spread is None:
                positions.append((fold_reflect(u, width), fold_reflect(v, height)))
                continue
            offset = spread * np.float32((tap + 0.5) / taps - 0.5)
            positions.append((fold_reflect(u + offset[..., 0], width), fold_reflect(v + offset[..., 1], height)))
        out = np.zeros((*u.shape, self.levels[0].shape[2]), np.float32)
        for index, image in enumerate(self.levels):
            weight = np.clip(1.0 - np.abs(level - index), 0.0, 1.0)
            rows = np.flatnonzero(weight.max(axis=1) > 0)
            if not len(rows):
                continue
            band = slice(rows[0], rows[-1] + 1)
            scale = np.float32(2.0**-index)
            acc = np.zeros((band.stop - band.start, *out.shape[1:]), np.float32)
            for x, y in positions:
                map_x, map_y = (x[band] + 0.5) * scale - 0.5, (y[band] + 0.5) * scale - 0.5
                read = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
                acc += read.reshape(acc.shape)
            out[band] += acc * (weight[band] * np.float32(1.0 / taps))[..., None]
        return out


def fold_reflect(coord: np.ndarray, size: int) -> np.ndarray:
    """Coordinates folded into [−0.5, size − 0.5] the way ``cv2.BORDER_REFLECT`` mirrors the texture.

    Far ground lies thousands of texture widths away; ``cv2.remap`` stores its maps in 16-bit fixed point
    and would clip such coordinates, so the mirroring is done here, where it is exact.
    """
    coord = np.asarray(coord, np.float32)
    if coord.size and coord.min() >= -0.5 and coord.max() <= size - 0.5:
        return coord
    folded = np.mod(coord + np.float32(0.5), np.float32(2 * size))
    return np.where(folded >= size, np.float32(2 * size) - folded, folded) - np.float32(0.5)


def footprint_points(grid: np.ndarray) -> np.ndarray:
    """The pixels of an H×W×… grid where :meth:`MipMap.sample` wants the footprint: every FOOTPRINT_STEP-th."""
    return grid[::FOOTPRINT_STEP, ::FOOTPRINT_STEP]


def world_positions(to_world: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World positions (u, v), float32, of the H×W×2 (x, y) image pixels ``grid`` under a 3×3 homography."""
    world = cv2.perspectiveTransform(grid.reshape(-1, 1, 2).astype(np.float32), np.asarray(to_world, np.float64))
    world = world.reshape(grid.shape)
    return world[..., 0], world[..., 1]


def homography_jacobian(to_world: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The H×W×2×2 float32 Jacobian of a 3×3 homography (image → world pixels) at the H×W×2 pixels ``grid``.

    The Jacobian is the same for ``to_world`` and ``−to_world``, so the homography's overall sign does not matter.
    """
    u, v = world_positions(to_world, grid)
    g = np.asarray(to_world, np.float64)
    x, y = grid[..., 0].astype(np.float32), grid[..., 1].astype(np.float32)
    den = np.float32(g[2, 0]) * x + np.float32(g[2, 1]) * y + np.float32(g[2, 2])
    den[np.abs(den) < 1e-12] = 1e-12
    inv = 1.0 / den
    gf = g.astype(np.float32)
    jac = np.empty((*x.shape, 2, 2), np.float32)
    jac[..., 0, 0] = (gf[0, 0] - u * gf[2, 0]) * inv
    jac[..., 0, 1] = (gf[0, 1] - u * gf[2, 1]) * inv
    jac[..., 1, 0] = (gf[1, 0] - v * gf[2, 0]) * inv
    jac[..., 1, 1] = (gf[1, 1] - v * gf[2, 1]) * inv
    return jac

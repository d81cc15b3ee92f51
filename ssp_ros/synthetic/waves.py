"""The moving surface of the world's water: waves and sun glints, drawn per frame over the water's colour.

Real water never looks the same twice: waves travel across it and the sun's reflection breaks into glints
that flash on and off from frame to frame. Waves are a sum of travelling plane waves on the water's plane
(world metres) whose speeds follow deep-water gravity waves (``ω = √(g·k)``); they shade the surface darker
and lighter. Glints are facets: the water's plane is cut into cells ``FACET_M`` wide, each with one point
that, in random time slots (``FLASH_HZ``), catches the sun and flashes; more of them flash where the view
ray, mirrored by the water, points at the sun (a specular lobe, the bright glitter path of real footage).

The labels and the flow stay those of the ground: water is the flat ground plane labelled clutter, and its
pixels move with the camera's ground homography. That is our choice for the flow: the geometric motion of
the water's surface, not of the wave pattern on it (a flow method tracking the waves would see them drift).
So water is the one ground surface whose look changes between frames where its labels and flow do not.

Detail finer than a pixel's footprint would alias into noise on far water, so each wave fades with the ratio
of the footprint to its wavelength, and the glints, once the facets are finer than the footprint, give way
to their mean, an even glitter brightness.
"""

from __future__ import annotations

import cv2
import numpy as np

from ssp_ros.synthetic.sampling import fold_reflect, footprint_points

GRAVITY = 9.81  # m/s², sets the wave speeds
WAVE_TERMS = 5  # travelling waves summed
WAVE_LENGTH_M = (1.0, 8.0)
WAVE_GAIN = 0.10  # relative brightness swing of the waves (std)
FACET_M = 0.5  # side of a glint facet's cell on the water
FACET_RADIUS_M = 0.04  # size of a glint (std of its Gaussian spot)
GLINT_GAIN = 6.0  # a glint mirrors the sun, far brighter than white: spread over a pixel, it still shows
FLASH_HZ = 6.0  # a facet draws whether it glints this often, each at its own times
GLINT_SHARE = 0.08  # share of the facets that glint at the lobe's centre
GLINT_RGB = np.array([255.0, 252.0, 240.0], np.float32)
GLITTER = 0.08  # the glints' mean brightness where their facets are finer than a pixel, at the lobe's centre
LOBE_RAD = 0.3  # width of the specular lobe around the sun's mirror direction (std)
LOBE_FLOOR = 0.25  # the lobe's strength far from the sun's mirror direction (rough water glints everywhere)
FADE = 4.5  # detail fades as exp(−FADE·(footprint / its size)²)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


class WaterSurface:
    """One world's waves and glints: ``draw`` paints them over the water pixels of a rendered frame."""

    def __init__(self, mask: np.ndarray, sun: np.ndarray, gsd_m: float, rng: np.random.Generator) -> None:
        self.mask = mask.astype(np.uint8)
        self.sun = np.asarray(sun, np.float64)
        self.gsd_m = gsd_m
        self.waves = _Waves(rng, WAVE_TERMS, WAVE_LENGTH_M, wind=rng.uniform(0, 2 * np.pi), spread=0.6)
        self.salt = np.uint64(rng.integers(1 << 62))  # the facets' hash seed

    def draw(self, image: np.ndarray, u: np.ndarray, v: np.ndarray, ground: np.ndarray, rays: np.ndarray,
             jacobian: np.ndarray, t: float) -> None:
        """Paint waves and glints at time ``t`` (s) over the water in ``image`` (H×W×3 float32, in place).

        ``u, v``: each pixel's world position (world px, H×W float32); ``ground``: pixels that see the ground;
        ``rays``: their viewing directions in the world (H×W×3, Z down); ``jacobian``: the image → world footprint
        at every FOOTPRINT_STEP-th pixel (``sampling.MipMap.sample``).
        """
        n = self.mask.shape[0]
        on_water = cv2.remap(self.mask, fold_reflect(u, n), fold_reflect(v, n), cv2.INTER_NEAREST,
                             borderMode=cv2.BORDER_REFLECT).astype(bool) & ground
        wet = np.flatnonzero(on_water)
        if not len(wet):
            return
        # what varies slowly over the image is worked out where the footprint is, and interpolated (as MipMap does)
        smooth = self._smooth(footprint_points(u), footprint_points(v), footprint_points(rays), jacobian, t)
        smooth = cv2.resize(smooth, (u.shape[1], u.shape[0]), interpolation=cv2.INTER_LINEAR).reshape(-1, 3)[wet]
        shading, footprint_m, lobe = smooth.T
        position_m = np.stack([u.ravel()[wet], v.ravel()[wet]], axis=1) * np.float32(self.gsd_m)
        sharp = np.exp(np.float32(-FADE / FACET_M**2) * footprint_m**2)
        glint = sharp * self._facets(position_m, footprint_m, lobe, t) + (1.0 - sharp) * np.float32(GLITTER) * lobe
        pixels = image.reshape(-1, 3)  # a view: writing it paints the image
        rgb = pixels[wet] * (1.0 + np.float32(WAVE_GAIN) * shading)[:, None]
        pixels[wet] = rgb + (GLINT_RGB - rgb) * np.minimum(glint, 1.0)[:, None]

    def _smooth(self, u: np.ndarray, v: np.ndarray, rays: np.ndarray, jacobian: np.ndarray, t: float) -> np.ndarray:
        """h×w×3 float32 at the footprint's points: the waves' shading, the footprint (m) and the sun's lobe."""
        footprint_m = np.maximum(np.hypot(jacobian[..., 0, 0], jacobian[..., 1, 0]),
                                 np.hypot(jacobian[..., 0, 1], jacobian[..., 1, 1])) * self.gsd_m
        mirrored = rays * np.array([1.0, 1.0, -1.0])
        cosine = mirrored @ self.sun / np.linalg.norm(mirrored, axis=-1)
        lobe = LOBE_FLOOR + (1.0 - LOBE_FLOOR) * np.exp((cosine - 1.0) / LOBE_RAD**2)
        position_m = np.stack([u, v], axis=-1).reshape(-1, 2).astype(np.float64) * self.gsd_m
        shading = self.waves(position_m, footprint_m.ravel(), t).reshape(u.shape)
        return np.stack([shading, footprint_m, lobe], axis=-1).astype(np.float32)

    def _facets(self, position_m: np.ndarray, footprint_m: np.ndarray, lobe: np.ndarray, t: float) -> np.ndarray:
        """Glint brightness (N float32, 0 and up) at N positions (N×2 m): the spot of their cell's facet, if it
        glints now; the facet's place and times are hashed from its cell, so they hold from frame to frame."""
        cell = np.floor(position_m / np.float32(FACET_M)).astype(np.int64)
        key = self._hash(cell[:, 0], cell[:, 1])
        slot = np.floor(t * FLASH_HZ + _unit(self._hash(key, 3))).astype(np.int64)
        lit = np.flatnonzero(_unit(self._hash(key, slot)) < GLINT_SHARE * lobe)
        key = key[lit]
        point = (cell[lit] + np.stack([_unit(self._hash(key, 1)), _unit(self._hash(key, 2))], axis=1)) * FACET_M
        spread = np.hypot(FACET_RADIUS_M, footprint_m[lit] / 2.0)  # a spot smaller than a pixel dims, not vanishes
        distance2 = np.sum((position_m[lit] - point) ** 2, axis=1)
        glint = np.zeros(len(position_m), np.float32)
        glint[lit] = GLINT_GAIN * (FACET_RADIUS_M / spread) ** 2 * np.exp(-distance2 / (2.0 * spread**2))
        return glint

    def _hash(self, *keys: np.ndarray | int) -> np.ndarray:
        """A well-mixed uint64 per element of the integer ``keys`` (a multiply-xorshift hash, salted per world).

        Hand-rolled because numpy has no stateless random function of a key: hashing a facet's cell gives it the
        same place and times in every frame, in any order of drawing, without a table of all the cells.
        """
        mixed = np.full(np.shape(keys[0]), self.salt, np.uint64)
        for key in keys:
            mixed = (mixed ^ np.asarray(key).astype(np.uint64)) * _GOLDEN
            mixed ^= mixed >> np.uint64(29)
        return mixed


def _unit(hashed: np.ndarray) -> np.ndarray:
    """Hashes → floats uniform in [0, 1)."""
    return (hashed >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)


class _Waves:
    """A sum of travelling plane waves on the water, unit std where none is faded."""

    def __init__(self, rng: np.random.Generator, terms: int, length_m: tuple[float, float], wind: float,
                 spread: float) -> None:
        self.length = np.exp(rng.uniform(*np.log(length_m), terms))  # log-uniform wavelengths
        heading = wind + rng.normal(0.0, spread, terms)
        number = 2 * np.pi / self.length
        self.k = np.stack([np.cos(heading), np.sin(heading)], axis=1) * number[:, None]  # rad/m
        self.omega = np.sqrt(GRAVITY * number)  # rad/s
        self.phase = rng.uniform(0, 2 * np.pi, terms)
        self.norm = 1.0 / np.sqrt(terms / 2.0)

    def __call__(self, position_m: np.ndarray, footprint_m: np.ndarray, t: float) -> np.ndarray:
        """The wave sum at N positions (N×2 m), each wave faded by the footprints (N m)."""
        total = np.zeros(len(position_m))
        for k, omega, phase, length in zip(self.k, self.omega, self.phase, self.length):
            total += np.exp(-FADE * (footprint_m / length) ** 2) * np.cos(position_m @ k - omega * t + phase)
        return total * self.norm

"""Haze and sky for oblique synthetic views.

Haze follows Koschmieder's law: ground at distance d keeps ``T = exp(−β·d)`` of its radiance and takes
``1 − T`` of the airlight colour, with ``β = ln(50) / visibility`` (2 % contrast left at the visibility).

The sky is drawn as seen at infinity: its colour depends only on the viewing direction (a gradient from
the airlight at the horizon to the zenith colour, and soft clouds), never on where the camera is. So the
sky moves between frames with the camera's rotation alone (``K·R_next·R_curᵀ·K⁻¹``), which is the flow
``video.py`` gives it, exactly. Labels: UAVid has no sky class; its eight classes end with "clutter",
everything the other seven are not (the UAVid toolkit's colour table, ``colorTransformer.py`` at
YeLyuUT/UAVidToolKit 500a014, has exactly these eight). So the sky is labelled clutter.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

from ssp_ros.synthetic.config import Atmosphere

CLOUD_TERMS = 14  # sinusoids summed for the cloud field
DETAIL_TERMS = 2  # products of sinusoids for the fine sky detail (Atmosphere.sky_texture)
CLOUD_RGB = np.array([238.0, 240.0, 244.0], np.float32)
SKY_GRADIENT_RAD = 0.35  # elevation over which the sky turns from airlight to zenith colour (1/e)
HORIZON_CLOUD_FADE_RAD = 0.06  # clouds fade into the airlight below this elevation (1/e)


class AtmosphereModel:
    """One world's haze and sky: ``haze(image, distance)`` and ``sky(directions)``; clouds of ``cloud_rgb``."""

    def __init__(self, cfg: Atmosphere, rng: np.random.Generator, cloud_rgb: np.ndarray = CLOUD_RGB) -> None:
        self.cfg = cfg
        self.cloud_rgb = np.asarray(cloud_rgb, np.float32)
        self.beta = np.log(50.0) / cfg.visibility_m if cfg.visibility_m > 0 else 0.0
        self.airlight = np.asarray(cfg.airlight_rgb, np.float32)
        self.zenith = np.asarray(cfg.zenith_rgb, np.float32)
        # Cloud field on (azimuth, elevation): whole azimuth frequencies, so it wraps around the horizon.
        self.az_freq = rng.integers(2, 24, CLOUD_TERMS)
        self.el_freq = rng.uniform(4.0, 30.0, CLOUD_TERMS) * rng.choice([-1.0, 1.0], CLOUD_TERMS)
        self.phase = rng.uniform(0, 2 * np.pi, CLOUD_TERMS)
        self.amplitude = 1.0 / np.sqrt(self.az_freq)
        self.threshold = NormalDist().inv_cdf(1.0 - cfg.cloud_cover) if 0.0 < cfg.cloud_cover < 1.0 else None
        self.detail_freq = rng.uniform(60.0, 160.0, (DETAIL_TERMS, 2)).round()  # whole turns in azimuth: wraps
        self.detail_phase = rng.uniform(0, 2 * np.pi, (DETAIL_TERMS, 2))

    def haze(self, rgb: np.ndarray, distance_m: np.ndarray) -> np.ndarray:
        """``rgb`` (N×3 float32) of ground at ``distance_m`` (N,) from the camera, seen through the haze."""
        if self.beta == 0.0:
            return rgb
        kept = np.exp(-self.beta * distance_m).astype(np.float32)[:, None]
        return rgb * kept + self.airlight * (1.0 - kept)

    def sky(self, directions: np.ndarray) -> np.ndarray:
        """N×3 float32 sky colours for N world directions (X, Y, Z with Z down; any length, pointing up)."""
        d = directions / np.linalg.norm(directions, axis=1, keepdims=True)
        elevation = np.arcsin(np.clip(-d[:, 2], 0.0, 1.0))
        azimuth = np.arctan2(d[:, 1], d[:, 0])
        blend = (1.0 - np.exp(-elevation / SKY_GRADIENT_RAD)).astype(np.float32)[:, None]
        rgb = self.airlight + (self.zenith - self.airlight) * blend
        if self.cfg.sky_texture > 0:
            rgb = rgb + self.cfg.sky_texture * self._detail(azimuth, elevation)[:, None]
        cover = self.cfg.cloud_cover
        if cover <= 0.0:
            return rgb
        field = np.zeros(len(d))
        for a, e, p, amp in zip(self.az_freq, self.el_freq, self.phase, self.amplitude):
            field += amp * np.sin(a * azimuth + e * elevation + p)
        field /= np.sqrt(np.sum(self.amplitude**2) / 2.0)  # unit variance
        density = np.ones(len(d)) if self.threshold is None else np.clip((field - self.threshold) * 1.5, 0.0, 1.0)
        density *= 1.0 - np.exp(-elevation / HORIZON_CLOUD_FADE_RAD)
        shade = (1.0 - 0.12 * np.clip(field - (self.threshold or 0.0), 0.0, 2.0))[:, None]
        cloud = (self.cloud_rgb * shade).astype(np.float32)
        return rgb + (cloud - rgb) * density.astype(np.float32)[:, None]

    def _detail(self, azimuth: np.ndarray, elevation: np.ndarray) -> np.ndarray:
        """Fine, high-contrast detail in [−1, 1] by direction: corners for a keypoint detector to find."""
        field = np.ones(len(azimuth))
        for (fa, fe), (pa, pe) in zip(self.detail_freq, self.detail_phase):
            field *= np.sin(fa * azimuth + pa) + np.sin(fe * elevation + pe)
        return np.tanh(3.0 * field).astype(np.float32)

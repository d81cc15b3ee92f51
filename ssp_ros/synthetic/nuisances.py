"""Per-frame camera artefacts that make a per-frame segmenter flicker: exposure and white-balance drift,
motion blur along the image motion, sensor noise and JPEG compression. They touch the image only;
labels and flow stay exact.
"""

from __future__ import annotations

import cv2
import numpy as np

from ssp_ros.synthetic.config import Nuisances


class NuisanceModel:
    """Draws each frame's artefacts from its own random stream so they do not disturb the world's."""

    def __init__(self, cfg: Nuisances, rng: np.random.Generator) -> None:
        self.cfg, self.rng = cfg, rng
        self.periods = rng.uniform(3.0, 12.0, size=(4, 2))  # exposure, R, G, B: two sinusoids each
        self.phases = rng.uniform(0, 2 * np.pi, size=(4, 2))

    def _drift(self, t: float) -> np.ndarray:
        """Four smooth signals in [−1, 1] at time ``t`` (exposure, then R, G, B)."""
        waves = np.sin(2 * np.pi * t / self.periods + self.phases)
        return 0.6 * waves[:, 0] + 0.4 * waves[:, 1]

    def apply(self, image: np.ndarray, t: float, motion_px: np.ndarray) -> np.ndarray:
        """Return the degraded RGB uint8 image at time ``t``; ``motion_px`` is the image motion (dx, dy) per frame."""
        cfg, rng = self.cfg, self.rng
        out = image.astype(np.float32)
        scale = image.shape[1] / 640.0
        if rng.random() < cfg.motion_blur_prob and cfg.motion_blur_px > 0:
            length = max(cfg.motion_blur_px * scale * rng.uniform(0.4, 1.0), 1.0)
            out = _motion_blur(out, length, float(np.arctan2(motion_px[1], motion_px[0])))
        drift = self._drift(t)
        gains = np.exp(cfg.exposure_drift * drift[0] + cfg.white_balance_drift * drift[1:]).astype(np.float32)
        out *= gains
        if cfg.noise_sigma > 0:
            out += rng.normal(0.0, cfg.noise_sigma * rng.uniform(0.3, 1.0), out.shape).astype(np.float32)
        out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
        if rng.random() < cfg.jpeg_prob:
            quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok:
                out = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        return out


def _motion_blur(image: np.ndarray, length: float, angle: float) -> np.ndarray:
    """Blur with a normalised line kernel of ``length`` pixels along ``angle`` (radians)."""
    size = int(np.ceil(length)) | 1
    kernel = np.zeros((size, size), np.float32)
    c = size // 2
    dx, dy = np.cos(angle) * (length - 1) / 2, np.sin(angle) * (length - 1) / 2
    cv2.line(kernel, (int(round(c - dx)), int(round(c - dy))), (int(round(c + dx)), int(round(c + dy))), 1.0, 1)
    return cv2.filter2D(image, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)

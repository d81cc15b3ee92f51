"""Kinds of sky (clear, overcast, dusk) and the light each casts on the ground, drawn per flight.

Real footage is filmed under every sky; a model that has only seen one blue sky calls an overcast one road.
A kind sets the sky's colours and cloud cover (``AtmosphereModel`` draws it) and the ground's light: a gain
per colour channel on everything under the sky (dimmer under cloud, warmer at dusk), and how deep shadows
are (soft under an overcast sky, where the light comes from everywhere). Shadows are painted into the world
texture, so their depth is known before the world is built; the gain is applied per frame.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ssp_ros.synthetic.atmosphere import CLOUD_RGB
from ssp_ros.synthetic.config import Atmosphere


@dataclass(frozen=True)
class SkyKind:
    """What one kind of sky looks like and how it lights the ground."""

    zenith_rgb: tuple[float, float, float]
    airlight_rgb: tuple[float, float, float]  # the horizon, and the haze
    cloud_rgb: tuple[float, float, float]
    cloud_cover: tuple[float, float]  # drawn per flight in this range
    light_rgb: tuple[float, float, float]  # gain on the ground's colours
    shadow_depth: float  # exponent on the shadows' darkening: 1 = as painted, 0 = no shadows


KINDS = {  # keyed by config.SKY_KINDS, the names a scenario may list
    "clear": SkyKind(zenith_rgb=(62.0, 118.0, 206.0), airlight_rgb=(196.0, 212.0, 228.0),
                     cloud_rgb=(240.0, 242.0, 246.0), cloud_cover=(0.0, 0.2), light_rgb=(1.0, 1.0, 1.0),
                     shadow_depth=1.0),
    "overcast": SkyKind(zenith_rgb=(150.0, 156.0, 166.0), airlight_rgb=(194.0, 196.0, 200.0),
                        cloud_rgb=(182.0, 185.0, 190.0), cloud_cover=(1.0, 1.0), light_rgb=(0.78, 0.8, 0.84),
                        shadow_depth=0.3),
    "dusk": SkyKind(zenith_rgb=(58.0, 70.0, 128.0), airlight_rgb=(232.0, 166.0, 118.0),
                    cloud_rgb=(214.0, 140.0, 128.0), cloud_cover=(0.1, 0.5), light_rgb=(0.9, 0.72, 0.56),
                    shadow_depth=0.8),
}


@dataclass(frozen=True)
class SkyLook:
    """One flight's sky: the atmosphere to draw, its clouds' colour, the light on the ground and shadow depth."""

    atmosphere: Atmosphere
    cloud_rgb: np.ndarray
    light: np.ndarray | None  # RGB gain on the ground, None = unchanged
    shadow_depth: float
    kind: str | None  # None: the atmosphere as configured


def draw_sky(cfg: Atmosphere, rng: np.random.Generator) -> SkyLook:
    """The flight's sky: one of ``cfg.sky_kinds`` (uniformly), or the configured sky when the list is empty."""
    if not cfg.sky_kinds:
        return SkyLook(atmosphere=cfg, cloud_rgb=CLOUD_RGB, light=None, shadow_depth=1.0, kind=None)
    name = cfg.sky_kinds[rng.integers(len(cfg.sky_kinds))]
    kind = KINDS[name]
    atmosphere = dataclasses.replace(cfg, zenith_rgb=kind.zenith_rgb, airlight_rgb=kind.airlight_rgb,
                                     cloud_cover=float(rng.uniform(*kind.cloud_cover)))
    light = np.asarray(kind.light_rgb, np.float32)
    return SkyLook(atmosphere=atmosphere, cloud_rgb=np.asarray(kind.cloud_rgb, np.float32),
                   light=None if np.all(light == 1.0) else light, shadow_depth=kind.shadow_depth, kind=name)

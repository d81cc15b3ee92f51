"""The synthetic scene's configuration: camera flight, atmosphere, world layout and nuisances of a scenario,
and ``SimConfig``, the runtime configuration together with the scenario it is run on.

A scenario file (``config/scenarios/*.yaml``) holds the keys of ``SyntheticConfig`` at its top level
(``load_section(SyntheticConfig, path)``). ``ssp demo``, ``eval``, ``bench``, ``bench-node`` and ``export --int8``
read a whole config file as ``SimConfig`` (``load_sim_config``): the drone's sections plus ``synthetic:``, the
scenario they fly (or calibrate on) by default; the node reads the same file as ``SspConfig`` and skips
``synthetic:``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ssp_ros.config import SspConfig, default_config_path
from ssp_ros.schema import Bounds, check_bounds, check_pair, config_from_dict, read_yaml, require, setting

MAX_PITCH_DEG = 75.0  # forward pitch of the synthetic camera from nadir
MAX_VIEW_DEG = 80.0  # pitch + wobble: the optical axis stays 10° below the horizon
MAX_BUILDING_HEIGHT_M = 100.0  # eaves of the tallest block
MIN_BUILDING_HEIGHT_M = 2.0  # eaves of the lowest block, when buildings are raised at all
ROOF_CLEARANCE_M = 10.0  # the camera flies this far above the highest eaves (a ridge rises up to 6.7 m above them)
SKY_KINDS = ("clear", "overcast", "dusk")  # the looks of ``Atmosphere.sky_kinds`` (skies.py)


@dataclass
class CameraMotion:
    """How the synthetic drone flies: a pinhole camera over a flat world."""

    hfov_deg: float = setting(70.0, "horizontal field of view (deg)", Bounds(0.0, 150.0, open_low=True,
                                                                             open_high=True))
    altitude_m: tuple[float, float] = setting((45.0, 75.0), "altitude oscillates in this range (m; zoom)")
    altitude_period_s: float = setting(14.0, "one climb + descent (s)", Bounds(0.0, open_low=True))
    speed_mps: float = setting(8.0, "mean ground speed (m/s)", Bounds(0.0, 60.0))
    speed_jitter: float = setting(0.3, "relative slow variation of the speed", Bounds(0.0, 1.0, open_high=True))
    turn_rate_dps: float = setting(12.0, "max heading change rate of the flight path (deg/s)", Bounds(0.0, 90.0))
    yaw_offset_deg: float = setting(25.0, "camera yaw swings up to this much around the flight heading (deg)",
                                    Bounds(0.0, 180.0))
    tilt_deg: float = setting(6.0, "max pitch/roll wobble around the mean view (deg; mild perspective)",
                              Bounds(0.0, 20.0))
    pitch_deg: tuple[float, float] = setting((0.0, 0.0), "the camera looks forward, this far from nadir (deg): "
                                             "oscillates in this range; 0 = nadir, 90 - hfov/2·h/w ≈ horizon")
    pitch_period_s: float = setting(20.0, "one swing of the forward pitch through its range (s)",
                                    Bounds(0.0, open_low=True))

    def __post_init__(self) -> None:
        check_pair(self.altitude_m, "altitude_m", 5.0, 500.0)
        check_pair(self.pitch_deg, "pitch_deg", 0.0, MAX_PITCH_DEG)
        check_bounds(self)
        require(self.pitch_deg[1] + self.tilt_deg <= MAX_VIEW_DEG, "tilt_deg",
                f"pitch_deg max {self.pitch_deg[1]:g} + tilt_deg {self.tilt_deg:g} must stay <= {MAX_VIEW_DEG:g}° "
                "from nadir (the optical axis must see the ground)")


@dataclass
class Atmosphere:
    """Haze and sky of the synthetic world: what an oblique camera sees towards the horizon."""

    visibility_m: float = setting(0.0, "meteorological visibility (m): ground this far away keeps 2 % of its "
                                  "contrast (Koschmieder); 0 = clear air", Bounds(0.0))
    airlight_rgb: tuple[float, float, float] = setting((206.0, 214.0, 222.0), "colour of the haze, and of the sky "
                                                        "at the horizon (RGB 0..255)")
    zenith_rgb: tuple[float, float, float] = setting((92.0, 140.0, 205.0), "colour of the sky high above the "
                                                      "horizon (RGB 0..255)")
    cloud_cover: float = setting(0.3, "share of the sky covered by clouds", Bounds(0.0, 1.0))
    sky_texture: float = setting(0.0, "contrast of fine detail in the sky (grey levels; 0 = soft clouds only): broken "
                                 "cloud or a skyline, the stress case for registration", Bounds(0.0, 128.0))
    sky_kinds: tuple[str, ...] = setting((), "each flight draws its sky from this list (clear, overcast, dusk): "
                                         "colours, cloud cover and the light on the ground (dimmer, warmer, softer "
                                         "shadows) replace airlight_rgb, zenith_rgb and cloud_cover; empty = the "
                                         "sky as set above")

    def __post_init__(self) -> None:
        check_bounds(self)
        unknown = sorted(set(self.sky_kinds) - set(SKY_KINDS))
        require(not unknown, "sky_kinds", f"unknown kind(s) {unknown}: expected some of {list(SKY_KINDS)}")
        for key in ("airlight_rgb", "zenith_rgb"):
            value = getattr(self, key)
            require(len(value) == 3 and all(0.0 <= c <= 255.0 for c in value), key,
                    f"expected three values in [0, 255], got {list(value)}")


@dataclass
class WorldLayout:
    """What the procedural world holds. Counts are per square kilometre so they scale with the world."""

    size_m: float = setting(360.0, "side of the square world (m)", Bounds(50.0, 5000.0))
    gsd_m: float = setting(0.08, "ground size of one world-texture pixel (m)", Bounds(0.01, 1.0))
    roads: int = setting(5, "roads crossing the world", Bounds(0))
    buildings_per_km2: float = setting(1400.0, "buildings per km²", Bounds(0))
    tree_clusters_per_km2: float = setting(600.0, "tree clusters per km²", Bounds(0))
    parked_cars_per_km2: float = setting(900.0, "parked cars per km²", Bounds(0))
    moving_cars_per_km2: float = setting(300.0, "moving cars per km²", Bounds(0))
    people_per_km2: float = setting(700.0, "people per km²", Bounds(0))
    clutter_patches_per_km2: float = setting(250.0, "clutter patches per km²", Bounds(0))
    flat_roof_share: float = setting(0.5, "share of flat grey roofs, which look like road from above: the "
                                     "ambiguity we want", Bounds(0.0, 1.0))
    lakes_per_km2: float = setting(0.0, "lakes per km² (water: class clutter, UAVid has no water class)", Bounds(0))
    river_prob: float = setting(0.0, "chance that a river crosses the world (clutter)", Bounds(0.0, 1.0))
    coast_prob: float = setting(0.0, "chance that the sea fills a strip along one edge of the world (clutter)",
                                Bounds(0.0, 1.0))
    bare_ground_share: tuple[float, float] = setting((0.0, 0.0), "share of the world that is bare sand, rock or "
                                                     "dirt (desert, quarry, building site; clutter), drawn per "
                                                     "world in this range")
    town_districts_per_km2: float = setting(0.0, "town districts per km²: a grid of streets lined densely with "
                                            "buildings and parked cars", Bounds(0))
    kerb_parking_share: float = setting(0.0, "share of every road's kerbs lined with rows of parked cars (static "
                                        "car)", Bounds(0.0, 1.0))
    people_group_share: float = setting(0.0, "share of the people who stand or walk in groups of 2 to 6",
                                        Bounds(0.0, 1.0))
    building_height_m: tuple[float, float] = setting((0.0, 0.0), "buildings are blocks with walls, their eaves at a "
                                                     "height drawn in this range (m); [0, 0] = roofs painted on "
                                                     "flat ground")

    def __post_init__(self) -> None:
        check_bounds(self)
        check_pair(self.bare_ground_share, "bare_ground_share", 0.0, 0.9)
        check_pair(self.building_height_m, "building_height_m", 0.0, MAX_BUILDING_HEIGHT_M)
        require(self.building_height_m[1] == 0.0 or self.building_height_m[0] >= MIN_BUILDING_HEIGHT_M,
                "building_height_m", f"expected [0, 0] (flat) or a min >= {MIN_BUILDING_HEIGHT_M:g} m, got "
                f"{list(self.building_height_m)}")
        require(self.size_m / self.gsd_m <= 16384, "size_m",
                 f"world texture would be {self.size_m / self.gsd_m:.0f} px wide (max 16384): raise gsd_m")


@dataclass
class Nuisances:
    """Per-frame camera artefacts; each strength 0 switches it off."""

    exposure_drift: float = setting(0.15, "amplitude of the slow log-gain drift", Bounds(0.0))
    white_balance_drift: float = setting(0.06, "amplitude of the slow per-channel gain drift", Bounds(0.0))
    noise_sigma: float = setting(3.0, "max std of Gaussian sensor noise (grey levels)", Bounds(0.0))
    motion_blur_prob: float = setting(0.15, "share of frames with motion blur along the image motion",
                                      Bounds(0.0, 1.0))
    motion_blur_px: float = setting(6.0, "max blur length in pixels at 640 px width", Bounds(0.0))
    jpeg_prob: float = setting(0.3, "share of frames passed through JPEG", Bounds(0.0, 1.0))
    jpeg_quality: tuple[int, int] = setting((35, 85), "JPEG quality range")
    drop_prob: float = setting(0.02, "share of time steps lost (the next frame comes two steps later)",
                               Bounds(0.0, 0.5, open_high=True))

    def __post_init__(self) -> None:
        check_bounds(self)
        check_pair(self.jpeg_quality, "jpeg_quality", 1, 100)


@dataclass
class Colours:
    """How far each world's materials (grass, trees, soil, asphalt, roofs, water, sand...) stray from the
    standard palette: every material draws its own shift per world, so a model learns shapes and context
    rather than our colours. All 0 = the standard palette."""

    hue_deg: float = setting(0.0, "each material's hue shifts by up to ± this (deg)", Bounds(0.0, 180.0))
    saturation: float = setting(0.0, "each material's saturation is scaled by 1 ± up to this", Bounds(0.0, 1.0,
                                                                                                    open_high=True))
    brightness: float = setting(0.0, "each material's brightness is scaled by 1 ± up to this", Bounds(0.0, 1.0,
                                                                                                     open_high=True))
    texture_contrast: float = setting(0.0, "the world's texture contrast is scaled by 1 ± up to this",
                                      Bounds(0.0, 1.0, open_high=True))

    def __post_init__(self) -> None:
        check_bounds(self)

    @property
    def jitters(self) -> bool:
        """True when any range is open, i.e. each world draws its own palette."""
        return any((self.hue_deg, self.saturation, self.brightness, self.texture_contrast))


@dataclass
class SyntheticConfig:
    """A synthetic aerial video scenario: resolution, flight, world and nuisances."""

    height: int = setting(368, "frame height in pixels", Bounds(16, 4320))
    width: int = setting(640, "frame width in pixels", Bounds(16, 7680))
    fps: float = setting(30.0, "frame rate of the time steps", Bounds(0.0, 240.0, open_low=True))
    camera: CameraMotion = field(default_factory=CameraMotion)
    world: WorldLayout = field(default_factory=WorldLayout)
    nuisances: Nuisances = field(default_factory=Nuisances)
    atmosphere: Atmosphere = field(default_factory=Atmosphere)
    colours: Colours = field(default_factory=Colours)

    def __post_init__(self) -> None:
        check_bounds(self)
        require(self.world.building_height_m[1] + ROOF_CLEARANCE_M <= self.camera.altitude_m[0],
                "world.building_height_m", f"max {self.world.building_height_m[1]:g} m must stay "
                f"{ROOF_CLEARANCE_M:g} m below camera.altitude_m min {self.camera.altitude_m[0]:g} m (the camera "
                "flies above the roofs)")


@dataclass
class SimConfig(SspConfig):
    """The runtime configuration plus the synthetic scenario it is run on (``ssp demo``, eval, bench)."""

    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


def load_sim_config(path: str | Path | None = None) -> SimConfig:
    """Load a whole config file with its ``synthetic:`` section (default: the shipped config/ssp.yaml)."""
    path = default_config_path() if path is None else path
    return config_from_dict(SimConfig, read_yaml(path), str(path))

"""The one configuration schema: typed dataclasses, loaded from YAML and validated strictly.

Every section is a dataclass whose fields are ``setting``s: the default, a description (with its unit),
the allowed ``Bounds`` and whether the value may change while the node runs. That is the one place a
tunable is described: the loader checks the bounds, and the node's ROS parameters (``ros/params.py``),
their descriptors and ``ssp params`` read all three from the field. ``load_config`` turns a YAML file into
``SspConfig``; unknown keys, wrong types, out-of-range values and a keypoint detector the installed OpenCV
lacks raise ``ConfigError`` naming the file and the dotted key. Dataclasses also validate when built in code
(``__post_init__``).

We use stdlib dataclasses plus a small strict converter rather than pydantic so the drone image needs
no extra compiled dependency for what is about a hundred lines.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from ssp_ros.errors import ConfigError
from ssp_ros.resources import share_dir


def require(ok: bool, key: str, message: str) -> None:
    """Raise a ConfigError for ``key`` unless ``ok``; used by the ``__post_init__`` checks that span fields."""
    if not ok:
        raise ConfigError(f"{key}: {message}")


@dataclass(frozen=True)
class Bounds:
    """The allowed interval of a number; either end may be open (the value itself excluded)."""

    low: float = -math.inf
    high: float = math.inf
    open_low: bool = False
    open_high: bool = False

    def contains(self, value: float) -> bool:
        return (self.low < value if self.open_low else self.low <= value) and \
            (value < self.high if self.open_high else value <= self.high)

    @property
    def finite(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    def __str__(self) -> str:
        return f"{'(' if self.open_low else '['}{self.low}, {self.high}{')' if self.open_high else ']'}"


def setting(default: Any, doc: str, bounds: Bounds | None = None, live: bool = False) -> Any:
    """A config field that carries its own documentation: ``doc`` (meaning and unit), ``bounds`` (checked on
    every load, and the range of its ROS parameter) and ``live`` (may change while the node runs). The
    loader, the ROS parameter descriptors and ``ssp params`` all read these; nothing else restates them."""
    return field(default=default, metadata={"doc": doc, "bounds": bounds, "live": live})


def _check(section: object, key: str, bounds: Bounds) -> None:
    value = getattr(section, key)
    if not bounds.contains(value):
        raise ConfigError(f"{key}: must be in {bounds}, got {value}")


def check_bounds(section: object) -> None:
    """ConfigError naming the first field of the dataclass ``section`` whose value is outside its ``bounds``."""
    for f in dataclasses.fields(section):
        if f.metadata.get("bounds") is not None:
            _check(section, f.name, f.metadata["bounds"])


def check_range(section: object, key: str, low: float, high: float = math.inf, *, open_low: bool = False,
                open_high: bool = False) -> None:
    """Require ``section.key`` in [low, high] (either end open by its flag): for schemas whose fields are not
    ``setting``s (the training recipe)."""
    _check(section, key, Bounds(low, high, open_low, open_high))


def check_pair(value: tuple[float, float], key: str, low: float, high: float) -> None:
    """A (min, max) pair inside [low, high] with min <= max."""
    require(low <= value[0] <= value[1] <= high, key, f"expected {low} <= min <= max <= {high}, got {list(value)}")


Backend = Literal["torch", "onnxruntime", "tensorrt"]
BACKENDS: tuple[str, ...] = get_args(Backend)  # the inference runtimes, in the order we recommend trying them
Precision = Literal["fp32", "fp16", "int8"]
PRECISIONS: tuple[str, ...] = get_args(Precision)  # TensorRT engine precisions
Detector = Literal["orb", "akaze", "sift"]
DETECTORS: tuple[str, ...] = get_args(Detector)  # the keypoint detectors registration knows
# Where OpenCV's Python API keeps each detector's factory, first match wins. OpenCV 5 moved AKAZE out of its main
# modules into opencv-contrib's xfeatures2d (opencv/opencv#25292), so opencv-python 5 has no AKAZE at all.
DETECTOR_FACTORIES: dict[str, tuple[str, ...]] = {"orb": ("ORB_create",), "sift": ("SIFT_create",),
                                                  "akaze": ("AKAZE_create", "xfeatures2d.AKAZE_create")}


def _detector_factory(name: str) -> Callable[..., Any] | None:
    import cv2  # here, not at the top: the schema imports without OpenCV

    for path in DETECTOR_FACTORIES[name]:
        found: Any = cv2
        for attr in path.split("."):
            found = getattr(found, attr, None)
        if found is not None:
            return found
    return None


def available_detectors() -> tuple[str, ...]:
    """The detectors of ``DETECTORS`` that the installed OpenCV has."""
    return tuple(name for name in DETECTORS if _detector_factory(name) is not None)


def opencv_detector(name: str) -> Callable[..., Any]:
    """The installed OpenCV's factory of detector ``name`` (e.g. ``cv2.ORB_create``); ConfigError (key
    ``detector``) for a name we do not know or a detector this OpenCV build lacks."""
    require(name in DETECTORS, "detector", f"unknown detector {name!r} (expected one of {', '.join(DETECTORS)})")
    factory = _detector_factory(name)
    if factory is None:
        import cv2

        where = " or ".join(f"cv2.{path}" for path in DETECTOR_FACTORIES[name])
        raise ConfigError(f"detector: {name!r} is not in this OpenCV ({cv2.__version__}: no {where}), which has "
                          f"{', '.join(available_detectors())}" + (
                              "; OpenCV 5 moved AKAZE to opencv-contrib (opencv-contrib-python-headless in place "
                              "of opencv-python-headless)" if name == "akaze" else ""))
    return factory


@dataclass
class ModelConfig:
    """The image model (backbone + UPerNet head) and its class list."""

    backbone: str = setting("mobilenetv3_large_100", "timm model name, built with features_only; "
                            "paper: sam2_hiera_small")
    decoder_channels: int = setting(64, "UPerNet width (64 keeps the shipped fp16 weights under 10 MB); paper: 256",
                                    Bounds(1))
    dataset: str = setting("uavid", "class list: config/datasets/<name>.yaml, or a path to such a file")
    input_size: tuple[int, int] = setting((384, 640), "model input (H, W), multiples of 32; frames are letterboxed "
                                          "to it")
    weights: str | None = setting(None, "whole model (.safetensors/.pt); None = untrained (config/ssp.yaml: the "
                                  "shipped one)")
    backbone_weights: str | None = setting(None, "optional local timm/SAM2 backbone checkpoint")
    pretrained: bool = setting(False, "without weights or backbone_weights: let timm download the backbone's "
                               "pretrained weights (needs the network; offline: an error naming the file to get)")

    def __post_init__(self) -> None:
        h, w = self.input_size
        require(h > 0 and w > 0 and h % 32 == 0 and w % 32 == 0, "input_size",
                 f"expected positive multiples of 32, got {list(self.input_size)}")
        check_bounds(self)


@dataclass
class RegistrationConfig:
    """Global homography between consecutive frames (keypoints + RANSAC)."""

    enabled: bool = setting(True, "False = no registration, the identity homography (a static camera: the SSP "
                            "ablation)")
    detector: Detector = setting("orb", "OpenCV feature detector/descriptor; akaze only where the installed OpenCV "
                                 "has it (4.x; OpenCV 5 moved it to opencv-contrib), else refused at load")
    max_features: int = setting(500, "keypoints per frame (500 at work_width 320: ~3 ms at 736x1280, < 1.5 px "
                                "error)", Bounds(4))
    ratio: float = setting(0.8, "Lowe ratio test for keypoint matches (the reference: 0.8)",
                           Bounds(0.0, 1.0, open_low=True), live=True)
    method: Literal["ransac", "usac"] = setting("usac", "cv2.findHomography robust estimator")
    ransac_threshold_px: float = setting(2.5, "homography inlier threshold in full-resolution pixels (paper: 2.5)",
                                         Bounds(0.0, 50.0, open_low=True), live=True)
    work_width: int = setting(320, "registration runs on a grey image downscaled to this width (px)", Bounds(32))
    min_inliers: int = setting(20, "fewer homography inliers -> registration failed -> propagation starts over "
                               "(a homography needs 4)", Bounds(4, 10_000), live=True)
    min_inlier_ratio: float = setting(0.15, "inliers / matches below this -> registration failed",
                                      Bounds(0.0, 1.0), live=True)
    max_scale_change: float = setting(1.5, "per-frame zoom beyond this factor (or below its inverse) -> "
                                      "registration failed", Bounds(1.0, 10.0, open_low=True), live=True)
    ignore_sky: bool = setting(True, "no keypoints in the sky band of oblique views (found from the image: "
                               "ssp_ros/sky_band.py): the sky does not move with the ground")

    def __post_init__(self) -> None:
        opencv_detector(self.detector)
        check_bounds(self)


@dataclass
class PropagationConfig:
    """When the previous fused state is used and when it is thrown away."""

    enabled: bool = setting(True, "fuse with the previous frame (False = plain per-frame image model)", live=True)
    max_time_gap_s: float = setting(0.5, "a larger gap between stamps starts over (s)",
                                    Bounds(0.0, 60.0, open_low=True), live=True)
    reset_on_backwards_time: bool = setting(True, "a stamp older than the previous one starts over (False: the "
                                            "frame is skipped)", live=True)

    def __post_init__(self) -> None:
        check_bounds(self)


@dataclass
class RuntimeConfig:
    """Which inference runtime runs the model, and where its exported graphs or engines are."""

    backend: Backend = setting("torch", "inference runtime: torch, onnxruntime or tensorrt (the drone)")
    device: str = setting("cpu", "cpu, cuda or cuda:N (onnxruntime: CUDA provider; tensorrt: always a GPU)")
    export_dir: str | None = setting(None, "folder written by `ssp export` (onnxruntime, tensorrt); relative to "
                                     "here or share/; empty = none")
    precision: Precision = setting("fp16", "tensorrt: which engines of export_dir to load")
    threads: int = setting(0, "onnxruntime intra-op threads on CPU; 0 = the runtime's default (all cores)",
                           Bounds(0))

    def __post_init__(self) -> None:
        require(self.device == "cpu" or re.fullmatch(r"cuda(:\d+)?", self.device) is not None, "device",
                f"expected 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        require(self.backend == "torch" or bool(self.export_dir), "export_dir",
                f"backend '{self.backend}' runs exported graphs: set runtime.export_dir to a folder written by "
                "`ssp export` (e.g. models/ssp_export)")
        require(self.backend != "tensorrt" or self.device != "cpu", "device",
                "backend 'tensorrt' runs on a GPU: set runtime.device to 'cuda' or 'cuda:N'")
        check_bounds(self)

    @property
    def device_index(self) -> int:
        """The GPU index of ``device`` ("cuda" → 0); 0 on CPU."""
        return int(self.device.partition(":")[2] or 0)


MAX_PIXELS_4K = 4096 * 2160  # DCI 4K, which also holds UHD (3840 x 2160)
MAX_PIXELS_CAP = 8192 * 8192  # the largest frame the node can be told to take (below Pillow's bomb warning)


@dataclass
class NodeConfig:
    """The ROS 2 node's topics and stream policy."""

    image_topic: str = setting("image", "input topic name before remapping")
    input_compressed: bool = setting(False, "subscribe to sensor_msgs/CompressedImage instead of Image")
    reliable: bool = setting(False, "reliable QoS for the input; False = sensor-data QoS (best effort, keep last 1)")
    max_age_ms: float = setting(500.0, "drop frames whose header stamp is older than this (ms); 0 keeps all",
                                Bounds(0.0, 60_000.0), live=True)
    max_future_ms: float = setting(1000.0, "drop frames stamped more than this ahead of the node's clock (ms): one "
                                   "bad stamp must not hold up the frames after it; raise it for a camera on "
                                   "another, unsynchronised clock", Bounds(0.0, 86_400_000.0, open_low=True),
                                   live=True)
    max_pixels: int = setting(MAX_PIXELS_4K, "largest input frame in pixels (width x height; the default fits "
                              "DCI 4K); a compressed image's header is checked before it is decoded",
                              Bounds(1, MAX_PIXELS_CAP), live=True)
    publish_similarity: bool = setting(False, "also publish ~/similarity (weight of the previous frame x 255)")
    diagnostics_period_s: float = setting(1.0, "period of /diagnostics updates (s)", Bounds(0.05, 60.0))

    def __post_init__(self) -> None:
        require(bool(self.image_topic), "image_topic", "must not be empty")
        check_bounds(self)


MAX_PITCH_DEG = 75.0  # forward pitch of the synthetic camera from nadir
MAX_VIEW_DEG = 80.0  # pitch + wobble: the optical axis stays 10° below the horizon


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

    def __post_init__(self) -> None:
        check_bounds(self)
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

    def __post_init__(self) -> None:
        check_bounds(self)
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
class SyntheticConfig:
    """A synthetic aerial video scenario: resolution, flight, world and nuisances."""

    height: int = setting(368, "frame height in pixels", Bounds(16, 4320))
    width: int = setting(640, "frame width in pixels", Bounds(16, 7680))
    fps: float = setting(30.0, "frame rate of the time steps", Bounds(0.0, 240.0, open_low=True))
    camera: CameraMotion = field(default_factory=CameraMotion)
    world: WorldLayout = field(default_factory=WorldLayout)
    nuisances: Nuisances = field(default_factory=Nuisances)
    atmosphere: Atmosphere = field(default_factory=Atmosphere)

    def __post_init__(self) -> None:
        check_bounds(self)


@dataclass
class SspConfig:
    """The whole runtime configuration (config/ssp.yaml)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    propagation: PropagationConfig = field(default_factory=PropagationConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    node: NodeConfig = field(default_factory=NodeConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


T = TypeVar("T")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML value to ``tp`` or raise ConfigError naming ``key``. Handles the types our schema uses."""
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping (section), got {value!r}")
        return _build(tp, value, key)
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(value, inner, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {list(args)}, got {value!r}")
        return value
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]: a list of any length
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{key}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(tp)
    if ok is None:
        raise TypeError(f"config schema uses unsupported type {tp!r} at {key}")
    if not ok:
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    return float(value) if tp is float else value


def _build(cls: type[T], data: dict, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping: unknown keys and bad values raise ConfigError with dotted keys."""
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    dotted = (prefix + ".") if prefix else ""
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (valid keys: {', '.join(names)})"
            raise ConfigError(f"{dotted}{key}: unknown key{hint}")
        kwargs[key] = _convert(value, hints[key], dotted + key)
    try:
        return cls(**kwargs)
    except ConfigError as err:
        raise ConfigError(f"{dotted}{err}") from None


def config_from_dict(cls: type[T], data: dict | None, source: str = "<dict>") -> T:
    """Build ``cls`` from a plain mapping; errors are prefixed with ``source`` (usually a file name)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return _build(cls, data)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file; a missing file or a syntax error raises ConfigError naming the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file ({err.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from None


def load_config(path: str | Path | None = None) -> SspConfig:
    """Load the whole runtime configuration from YAML (default: the shipped config/ssp.yaml)."""
    if path is None:
        path = share_dir() / "config" / "ssp.yaml"
    return config_from_dict(SspConfig, read_yaml(path), str(path))


def load_section(cls: type[T], path: str | Path) -> T:
    """Load one section's dataclass from a YAML file whose top level holds that section's keys."""
    return config_from_dict(cls, read_yaml(path), str(path))


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    """Nested YAML data as ``{"section.key": value}`` (how ROS parameters and recipe diffs name keys)."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def to_dict(config: Any) -> dict:
    """A dataclass config as plain YAML-ready data (tuples become lists), to save next to each run."""
    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value
    return plain(dataclasses.asdict(config))

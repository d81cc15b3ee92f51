"""The one configuration schema: typed dataclasses, loaded from YAML and validated strictly.

Every section is a dataclass with a comment on each default. ``load_config`` turns a YAML file into
``SspConfig``; unknown keys, wrong types and out-of-range values raise ``ConfigError`` naming the file
and the dotted key. Dataclasses also validate when built in code (``__post_init__``).

We use stdlib dataclasses plus a small strict converter rather than pydantic so the drone image needs
no extra compiled dependency for what is about a hundred lines.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from ssp_ros.errors import ConfigError
from ssp_ros.resources import share_dir


def require(ok: bool, key: str, message: str) -> None:
    """Raise a ConfigError for ``key`` unless ``ok``; used by the ``__post_init__`` range checks."""
    if not ok:
        raise ConfigError(f"{key}: {message}")


def check_range(section: object, key: str, low: float, high: float = math.inf, *, open_low: bool = False,
        open_high: bool = False) -> None:
    """Require ``section.key`` in [low, high] (either end made open by its flag); the error names the key."""
    value = getattr(section, key)
    ok = (low < value if open_low else low <= value) and (value < high if open_high else value <= high)
    if not ok:
        left, right = "(" if open_low else "[", ")" if open_high else "]"
        raise ConfigError(f"{key}: must be in {left}{low}, {high}{right}, got {value}")


def check_pair(value: tuple[float, float], key: str, low: float, high: float) -> None:
    """A (min, max) pair inside [low, high] with min <= max."""
    require(low <= value[0] <= value[1] <= high, key, f"expected {low} <= min <= max <= {high}, got {list(value)}")


@dataclass
class ModelConfig:
    """The image model (backbone + UPerNet head) and its class list."""

    backbone: str = "mobilenetv3_large_100"  # timm model name, built with features_only; paper: sam2_hiera_small
    decoder_channels: int = 64  # UPerNet width (64 keeps the shipped fp16 weights under 10 MB); paper: 256
    dataset: str = "uavid"  # class list: config/datasets/<name>.yaml, or a path to such a file
    input_size: tuple[int, int] = (384, 640)  # model input (H, W), multiples of 32; frames are letterboxed to it
    weights: str | None = None  # whole model (.safetensors/.pt); None = untrained (config/ssp.yaml: the shipped one)
    backbone_weights: str | None = None  # optional local timm/SAM2 backbone checkpoint

    def __post_init__(self) -> None:
        h, w = self.input_size
        require(h > 0 and w > 0 and h % 32 == 0 and w % 32 == 0, "input_size",
                 f"expected positive multiples of 32, got {list(self.input_size)}")
        check_range(self, "decoder_channels", 1)


@dataclass
class RegistrationConfig:
    """Global homography between consecutive frames (keypoints + RANSAC)."""

    enabled: bool = True  # False = no registration, the identity homography (a static camera: the SSP ablation)
    detector: Literal["orb", "akaze", "sift"] = "orb"  # OpenCV feature detector/descriptor
    max_features: int = 500  # keypoints per frame (500 at work_width 320: ~3 ms at 736×1280, < 1.5 px error)
    ratio: float = 0.8  # Lowe ratio test, as in the reference
    method: Literal["ransac", "usac"] = "usac"  # cv2.findHomography robust estimator
    ransac_threshold_px: float = 2.5  # inlier threshold in full-resolution pixels (paper: 2.5)
    work_width: int = 320  # registration runs on a grey image downscaled to this width
    min_inliers: int = 20  # fewer inliers -> registration failed -> propagation resets
    min_inlier_ratio: float = 0.15  # inliers / matches below this -> failed
    max_scale_change: float = 1.5  # per-frame zoom beyond this factor (or below its inverse) -> failed

    def __post_init__(self) -> None:
        check_range(self, "max_features", 4)
        check_range(self, "ratio", 0.0, 1.0, open_low=True)
        check_range(self, "ransac_threshold_px", 0.0, open_low=True)
        check_range(self, "work_width", 32)
        check_range(self, "min_inliers", 4)  # a homography needs 4 correspondences
        check_range(self, "min_inlier_ratio", 0.0, 1.0)
        check_range(self, "max_scale_change", 1.0, open_low=True)


@dataclass
class PropagationConfig:
    """When the previous fused state is used and when it is thrown away."""

    enabled: bool = True  # False = plain per-frame image model
    max_time_gap_s: float = 0.5  # a larger gap between stamps resets the state
    reset_on_backwards_time: bool = True  # a stamp older than the previous one resets (else: frame skipped)

    def __post_init__(self) -> None:
        check_range(self, "max_time_gap_s", 0.0, open_low=True)


@dataclass
class RuntimeConfig:
    """Which inference runtime runs the model, and where its exported graphs or engines are."""

    backend: Literal["torch", "onnxruntime", "tensorrt"] = "torch"  # the drone uses tensorrt
    device: str = "cpu"  # "cpu", "cuda" or "cuda:N" (onnxruntime: CUDA provider; tensorrt: always a GPU)
    export_dir: str | None = None  # folder written by `ssp export` (onnxruntime, tensorrt); relative to here or share/
    precision: Literal["fp32", "fp16", "int8"] = "fp16"  # tensorrt: which engines of export_dir to load
    threads: int = 0  # onnxruntime intra-op threads on CPU; 0 = the runtime's default (all cores)

    def __post_init__(self) -> None:
        require(self.device == "cpu" or re.fullmatch(r"cuda(:\d+)?", self.device) is not None, "device",
                f"expected 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        require(self.backend == "torch" or bool(self.export_dir), "export_dir",
                f"backend '{self.backend}' runs exported graphs: set runtime.export_dir to a folder written by "
                "`ssp export` (e.g. models/ssp_export)")
        require(self.backend != "tensorrt" or self.device != "cpu", "device",
                "backend 'tensorrt' runs on a GPU: set runtime.device to 'cuda' or 'cuda:N'")
        check_range(self, "threads", 0)

    @property
    def device_index(self) -> int:
        """The GPU index of ``device`` ("cuda" → 0); 0 on CPU."""
        return int(self.device.partition(":")[2] or 0)


@dataclass
class NodeConfig:
    """The ROS 2 node's topics and stream policy."""

    image_topic: str = "image"  # input topic (remap it in the launch file)
    input_compressed: bool = False  # subscribe to sensor_msgs/CompressedImage instead of Image
    reliable: bool = False  # False = sensor-data QoS (best effort, keep last 1)
    max_age_ms: float = 500.0  # drop frames whose header stamp is older than this; 0 = keep all
    publish_similarity: bool = False  # also publish ~/similarity
    diagnostics_period_s: float = 1.0  # /diagnostics rate

    def __post_init__(self) -> None:
        require(bool(self.image_topic), "image_topic", "must not be empty")
        check_range(self, "max_age_ms", 0.0)
        check_range(self, "diagnostics_period_s", 0.0, open_low=True)


@dataclass
class CameraMotion:
    """How the synthetic drone flies: a pinhole camera over a flat world."""

    hfov_deg: float = 70.0  # horizontal field of view
    altitude_m: tuple[float, float] = (45.0, 75.0)  # altitude oscillates in this range (zoom)
    altitude_period_s: float = 14.0  # one climb + descent
    speed_mps: float = 8.0  # mean ground speed
    speed_jitter: float = 0.3  # relative slow variation of the speed
    turn_rate_dps: float = 12.0  # max heading change rate of the flight path
    yaw_offset_deg: float = 25.0  # camera yaw swings up to this much around the flight heading
    tilt_deg: float = 6.0  # max pitch/roll away from nadir (mild perspective)

    def __post_init__(self) -> None:
        check_range(self, "hfov_deg", 0.0, 150.0, open_low=True, open_high=True)
        check_pair(self.altitude_m, "altitude_m", 5.0, 500.0)
        check_range(self, "altitude_period_s", 0.0, open_low=True)
        check_range(self, "speed_mps", 0.0, 60.0)
        check_range(self, "speed_jitter", 0.0, 1.0, open_high=True)
        check_range(self, "turn_rate_dps", 0.0, 90.0)
        check_range(self, "yaw_offset_deg", 0.0, 180.0)
        check_range(self, "tilt_deg", 0.0, 20.0)


@dataclass
class WorldLayout:
    """What the procedural world holds. Counts are per square kilometre so they scale with the world."""

    size_m: float = 360.0  # side of the square world
    gsd_m: float = 0.08  # ground size of one world-texture pixel
    roads: int = 5  # roads crossing the world
    buildings_per_km2: float = 1400.0
    tree_clusters_per_km2: float = 600.0
    parked_cars_per_km2: float = 900.0
    moving_cars_per_km2: float = 300.0
    people_per_km2: float = 700.0
    clutter_patches_per_km2: float = 250.0
    flat_roof_share: float = 0.5  # flat grey roofs look like road from above: the ambiguity we want

    def __post_init__(self) -> None:
        check_range(self, "size_m", 50.0, 5000.0)
        check_range(self, "gsd_m", 0.01, 1.0)
        require(self.size_m / self.gsd_m <= 16384, "size_m",
                 f"world texture would be {self.size_m / self.gsd_m:.0f} px wide (max 16384): raise gsd_m")
        for name in ("roads", "buildings_per_km2", "tree_clusters_per_km2", "parked_cars_per_km2",
                     "moving_cars_per_km2", "people_per_km2", "clutter_patches_per_km2"):
            check_range(self, name, 0)
        check_range(self, "flat_roof_share", 0.0, 1.0)


@dataclass
class Nuisances:
    """Per-frame camera artefacts; each strength 0 switches it off."""

    exposure_drift: float = 0.15  # amplitude of the slow log-gain drift
    white_balance_drift: float = 0.06  # amplitude of the slow per-channel gain drift
    noise_sigma: float = 3.0  # max std of Gaussian sensor noise (grey levels)
    motion_blur_prob: float = 0.15  # share of frames with motion blur along the image motion
    motion_blur_px: float = 6.0  # max blur length in pixels at 640 px width
    jpeg_prob: float = 0.3  # share of frames passed through JPEG
    jpeg_quality: tuple[int, int] = (35, 85)  # JPEG quality range
    drop_prob: float = 0.02  # share of time steps lost (the next frame comes two steps later)

    def __post_init__(self) -> None:
        for name in ("exposure_drift", "white_balance_drift", "noise_sigma", "motion_blur_px"):
            check_range(self, name, 0.0)
        for name in ("motion_blur_prob", "jpeg_prob"):
            check_range(self, name, 0.0, 1.0)
        check_range(self, "drop_prob", 0.0, 0.5, open_high=True)
        check_pair(self.jpeg_quality, "jpeg_quality", 1, 100)


@dataclass
class SyntheticConfig:
    """A synthetic aerial video scenario: resolution, flight, world and nuisances."""

    height: int = 368  # frame height in pixels
    width: int = 640  # frame width in pixels
    fps: float = 30.0  # frame rate of the time steps
    camera: CameraMotion = field(default_factory=CameraMotion)
    world: WorldLayout = field(default_factory=WorldLayout)
    nuisances: Nuisances = field(default_factory=Nuisances)

    def __post_init__(self) -> None:
        check_range(self, "height", 16, 4320)
        check_range(self, "width", 16, 7680)
        check_range(self, "fps", 0.0, 240.0, open_low=True)


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


def to_dict(config: Any) -> dict:
    """A dataclass config as plain YAML-ready data (tuples become lists), to save next to each run."""
    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value
    return plain(dataclasses.asdict(config))

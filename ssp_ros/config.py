"""The drone's configuration: the runtime sections (model, registration, propagation, runtime, node) as
dataclasses of ``setting`` fields (``schema.py``), loaded from YAML and validated strictly.

Each field is the one place a tunable is described: the loader checks its bounds, and the node's ROS parameters
(``ros/params.py``), their descriptors and ``ssp params`` read all three from the field. ``load_config`` turns
a YAML file into ``SspConfig``; unknown keys, wrong types, out-of-range values and a keypoint detector the
installed OpenCV lacks raise ``ConfigError`` naming the file and the dotted key. Dataclasses also validate
when built in code (``__post_init__``). The synthetic scenario a config file may carry for the offline tools
is not the drone's: ``synthetic/config.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from ssp_ros.errors import ConfigError
from ssp_ros.resources import share_dir
from ssp_ros.schema import Bounds, check_bounds, config_from_dict, read_yaml, require, setting

Runtime = Literal["torch", "onnxruntime", "tensorrt"]
RUNTIMES: tuple[str, ...] = get_args(Runtime)  # the inference runtimes, in the order we recommend trying them
Backend = Literal["auto", Runtime]  # auto: torch where installed, else onnxruntime (backends/choice.py)
BACKENDS: tuple[str, ...] = get_args(Backend)
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


def gpu_index(device: str) -> int:
    """The GPU index of a ``runtime.device`` value ("cuda" → 0, "cuda:1" → 1); 0 for "cpu"."""
    return int(device.partition(":")[2] or 0)


@dataclass
class RuntimeConfig:
    """Which inference runtime runs the model, and where its exported graphs or engines are."""

    backend: Backend = setting("auto", "inference runtime: torch, onnxruntime, tensorrt (the drone), or auto: "
                               "torch where installed, else onnxruntime on export_dir (an export of model.weights)")
    device: str = setting("cpu", "cpu, cuda or cuda:N (onnxruntime: CUDA provider; tensorrt: always a GPU)")
    export_dir: str | None = setting(None, "folder written by `ssp export` (onnxruntime, tensorrt); relative to "
                                     "here or share/; empty = none")
    precision: Precision = setting("fp16", "tensorrt: which engines of export_dir to load")
    threads: int = setting(0, "onnxruntime intra-op threads on CPU; 0 = the runtime's default (all cores)",
                           Bounds(0))

    def __post_init__(self) -> None:
        require(self.device == "cpu" or re.fullmatch(r"cuda(:\d+)?", self.device) is not None, "device",
                f"expected 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        require(self.backend in ("auto", "torch") or bool(self.export_dir), "export_dir",
                f"backend '{self.backend}' runs exported graphs: set runtime.export_dir to a folder written by "
                "`ssp export` (e.g. models/ssp_export)")
        require(self.backend != "tensorrt" or self.device != "cpu", "device",
                "backend 'tensorrt' runs on a GPU: set runtime.device to 'cuda' or 'cuda:N'")
        check_bounds(self)

    @property
    def device_index(self) -> int:
        """The GPU index of ``device`` ("cuda" → 0); 0 on CPU."""
        return gpu_index(self.device)


@dataclass
class StabiliserConfig:
    """SSP over another segmenter (``ssp stabilise``, the node's stabiliser mode): its own similarity model and how
    a hard label becomes class probabilities."""

    model: str = setting("models/ssp_stabiliser", "folder written by `ssp export-stabiliser` (appearance encoder + "
                         "similarity head); relative to here or share/")
    input_size: tuple[int, int] = setting((384, 640), "(H, W) the frame is letterboxed to for the similarity and the "
                                          "fused state (multiples of 4); the labels keep the frame's own size")
    confidence: float = setting(0.9, "a hard label's probability for its class (the rest is shared by the others)",
                                Bounds(0.0, 1.0, open_low=True))
    keep_ratio: float = setting(0.55, "where the current frame leads with a pixel's label, the label is replaced "
                                "by the fused best class when the fused state gives it less than this share of that "
                                "class's probability; higher replaces more flicker and risks more accuracy",
                                Bounds(0.0, 1.0, open_low=True))

    def __post_init__(self) -> None:
        require(all(side >= 16 and side % 4 == 0 for side in self.input_size), "input_size",
                f"expected (H, W), multiples of 4 and at least 16, got {list(self.input_size)}")
        require(bool(self.model), "model", "must not be empty")
        check_bounds(self)


NodeMode = Literal["segment", "stabilise"]
MaskInput = Literal["labels", "probabilities", "logits"]
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
    mode: NodeMode = setting("segment", "segment: our image model segments the camera; stabilise: another "
                             "segmenter's masks (mask_topic) are made temporally consistent")
    segmenter: str | None = setting(None, "segment mode: a YAML of your ONNX segmenter (as for `ssp stabilise "
                                    "--segmenter`), run in the node and stabilised instead of our image model; "
                                    "relative to here or share/; empty = our image model")
    mask_topic: str = setting("masks", "stabilise mode: the other segmenter's output topic before remapping, "
                              "paired with the camera image of exactly its header stamp")
    mask_input: MaskInput = setting("labels", "stabilise mode: what mask_topic carries: labels (mono8 or mono16 "
                                    "class ids, 255 (and 65535 in mono16) = unknown where K <= 255), or "
                                    "probabilities / logits (32FC<K> images, one channel per class, any size)")
    classes: str | None = setting(None, "stabilise mode: the other segmenter's class list, config/datasets/<name>"
                                  ".yaml or a path to such a file; empty = model.dataset (or label_info_topic)")
    label_info_topic: str | None = setting(None, "stabilise mode: the other segmenter's vision_msgs/LabelInfo "
                                           "topic (transient local) before remapping, whose class_map gives the "
                                           "class list instead of classes; pairs wait for it, counted; empty = "
                                           "classes")
    pair_wait_ms: float = setting(500.0, "stabilise mode: how long an image or mask waits for its partner "
                                  "(same stamp) before it is dropped (ms)", Bounds(0.0, 60_000.0, open_low=True))
    pair_hold: int = setting(32, "stabilise mode: at most this many images (and masks) wait for their partner; "
                             "beyond it the oldest stamp is dropped, so it caps the wait too: keep it above the "
                             "camera rate x pair_wait_ms (30 fps x 0.5 s = 15)", Bounds(1, 1000))

    def __post_init__(self) -> None:
        require(bool(self.image_topic), "image_topic", "must not be empty")
        require(bool(self.mask_topic), "mask_topic", "must not be empty")
        require(not (self.segmenter and self.mode == "stabilise"), "segmenter",
                "stabilise mode takes the masks of mask_topic; a segmenter YAML runs in segment mode")
        require(not (self.label_info_topic and self.classes), "label_info_topic",
                f"the class list comes from one place: label_info_topic ({self.label_info_topic}) or classes "
                f"({self.classes}), not both")
        require(not self.label_info_topic or self.mode == "stabilise", "label_info_topic",
                "is read in stabilise mode only (segment mode's classes are its model's)")
        check_bounds(self)

@dataclass
class SspConfig:
    """The drone's whole configuration: config/ssp.yaml less its ``synthetic:`` scenario (``load_config``)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    propagation: PropagationConfig = field(default_factory=PropagationConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    node: NodeConfig = field(default_factory=NodeConfig)
    stabiliser: StabiliserConfig = field(default_factory=StabiliserConfig)


# Sections a config file may hold for the offline tools, which the node leaves unread: ``synthetic`` is the
# scenario ``ssp demo``, eval and bench fly (SimConfig, ssp_ros/synthetic/config.py).
OFFLINE_SECTIONS = ("synthetic",)


def default_config_path() -> Path:
    """The shipped config/ssp.yaml."""
    return share_dir() / "config" / "ssp.yaml"


def load_config(path: str | Path | None = None) -> SspConfig:
    """Load the drone's configuration from YAML (default: the shipped config/ssp.yaml). ``OFFLINE_SECTIONS``
    are skipped unread, so one file serves the node and ``ssp demo``; any other unknown key is refused."""
    path = default_config_path() if path is None else path
    data = read_yaml(path)
    if isinstance(data, dict):
        data = {key: value for key, value in data.items() if key not in OFFLINE_SECTIONS}
    return config_from_dict(SspConfig, data, str(path))

"""A drone team's own segmenter, exported to ONNX, run on ONNX Runtime (``--segmenter`` of ``ssp stabilise``,
``ssp demo`` and ``ssp replay``).

A small YAML says how to feed it and what it returns (``SegmenterSpec``)::

    model: road_seg.onnx          # relative to this file
    input_size: [512, 512]        # H, W of the model input; frames are resized to it (stretched)
    mean: [0.485, 0.456, 0.406]   # the input is (RGB / 255 − mean) / std, 1×3×H×W float32
    std: [0.229, 0.224, 0.225]
    output: logits                # logits | probabilities | labels
    output_name: ""               # which output; empty: the first
    classes: ""                   # a class list (dataset name or YAML as in config/datasets/); empty: numbered
    fp16: true                    # on a GPU with TensorRT: FP16 engines

It runs where ``runtime.device`` says: on the CPU, or on a GPU with ONNX Runtime's TensorRT provider where the
installed ONNX Runtime has it (the Jetson's onnxruntime-gpu; engines built on first use and cached, see
``engine_cache_dir``), else its CUDA provider.

The model is checked against the YAML when it loads (one image input of 3 channels and, where the graph fixes it,
of ``input_size``; the named output of the rank its kind has, as many classes as the class list), and then run once
on a blank input to check what it really returns (a class axis the graph leaves open included), so a mismatch is
one sentence naming the file before any frame is read or any output written, not a wrong mask or a failure halfway.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from ssp_ros.backends.onnx_backend import import_onnxruntime, open_session, providers_for, session_options
from ssp_ros.classes import ClassSet, load_class_set, numbered_class_set
from ssp_ros.config import gpu_index
from ssp_ros.errors import SspError
from ssp_ros.schema import Bounds, check_bounds, load_section, require, setting

OutputKind = Literal["logits", "probabilities", "labels"]
TENSORRT = "TensorrtExecutionProvider"
LOG = logging.getLogger(__name__)


def provider_name(provider: str | tuple[str, dict]) -> str:
    """The name of an ONNX Runtime provider entry (a name, or a name with options)."""
    return provider if isinstance(provider, str) else provider[0]


def segmenter_providers(device: str, available: list[str], fp16: bool,
                        cache: Callable[[], Path]) -> list[str | tuple[str, dict]]:
    """ONNX Runtime execution providers for a user's segmenter on ``device`` (``runtime.device``): the CPU; on a
    GPU, TensorRT first where this ONNX Runtime has its provider (engines cached in ``cache()``, built FP16 with
    ``fp16``), then CUDA (``providers_for``: an error naming the fix if this ONNX Runtime has no CUDA), then the
    CPU for what neither takes."""
    cuda = providers_for(device, available)
    if device == "cpu" or TENSORRT not in available:
        return cuda
    folder = cache()
    options = {"device_id": gpu_index(device), "trt_fp16_enable": fp16,
               "trt_engine_cache_enable": True, "trt_engine_cache_path": str(folder)}
    return [(TENSORRT, options), *cuda]


def engine_cache_dir(model: Path, ort_version: str) -> Path:
    """Where ONNX Runtime's TensorRT provider keeps the engines it builds for ``model``: a folder per model file
    (its SHA-256), ONNX Runtime and TensorRT version under ``$XDG_CACHE_HOME/ssp_ros`` (else ``~/.cache``). The
    provider keys its engines by graph and shapes but not by the versions that built them, so an upgrade starts a
    new folder instead of loading an engine the new TensorRT cannot run. Made on first use."""
    digest = hashlib.sha256(model.read_bytes()).hexdigest()[:16]
    try:
        import tensorrt  # noqa: PLC0415 - only on a GPU, and only to name the cache folder

        trt_version = tensorrt.__version__
    except ImportError:
        trt_version = "unknown"
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ssp_ros" / "segmenter_engines"
    folder = root / f"{model.stem}-{digest}-ort{ort_version}-trt{trt_version}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SspError(f"{folder}: cannot make the TensorRT engine cache for {model.name}: {err}") from None
    return folder


@dataclass
class SegmenterSpec:
    """How to run an ONNX segmenter: its file, input size and normalisation, and what its output is."""

    model: str = setting("", "the ONNX file, relative to the YAML")
    input_size: tuple[int, int] = setting((512, 512), "(H, W) of the model input; frames are resized to it")
    mean: tuple[float, float, float] = setting((0.485, 0.456, 0.406), "per-channel mean of RGB / 255")
    std: tuple[float, float, float] = setting((0.229, 0.224, 0.225), "per-channel std of RGB / 255")
    output: OutputKind = setting("logits", "logits or probabilities (1×K×h×w) or labels (1×h×w or 1×1×h×w)")
    output_name: str = setting("", "the output to read; empty: the model's first")
    classes: str = setting("", "class list (dataset name or YAML path); empty: numbered classes")
    threads: int = setting(0, "ONNX Runtime intra-op threads; 0 = all cores", Bounds(0))
    fp16: bool = setting(True, "on a GPU with ONNX Runtime's TensorRT provider: let TensorRT build FP16 engines")

    def __post_init__(self) -> None:
        require(bool(self.model), "model", "the ONNX file is not set")
        require(all(v > 0 for v in self.input_size), "input_size", f"must be positive, got {self.input_size}")
        require(all(v > 0 for v in self.std), "std", f"must be positive, got {self.std}")
        check_bounds(self)


class OnnxSegmenter:
    """The segmenter of a ``SegmenterSpec`` YAML: ``segmenter(frame)`` → K×h×w scores (float32) or h×w labels."""

    def __init__(self, spec_path: str | Path, device: str = "cpu") -> None:
        ort = import_onnxruntime()
        self.spec_path = Path(spec_path)
        self.spec = spec = load_section(SegmenterSpec, self.spec_path)
        self.model = (self.spec_path.parent / spec.model).resolve()
        if not self.model.is_file():
            raise SspError(f"{self.spec_path}: model: {self.model} not found")
        try:
            providers = segmenter_providers(device, ort.get_available_providers(), spec.fp16,
                                            lambda: engine_cache_dir(self.model, ort.__version__))
        except SspError as err:
            raise SspError(f"{self.spec_path}: {err}") from None
        self.session = open_session(ort, self.model, session_options(ort, spec.threads), providers)
        self.providers = self.session.get_providers()
        wanted = provider_name(providers[0])
        if wanted not in self.providers:  # ONNX Runtime falls back without an error when a provider cannot load
            LOG.warning("%s: ONNX Runtime could not start %s (its libraries?); it runs on %s", self.model, wanted,
                        ", ".join(self.providers))
        inputs = self.session.get_inputs()
        image = len(inputs) == 1 and len(inputs[0].shape) == 4
        if not image or isinstance(inputs[0].shape[1], int) and inputs[0].shape[1] != 3:
            raise SspError(f"{self.model}: expected one image input N×3×H×W, got "
                           f"{[(i.name, i.shape) for i in inputs]}")
        fixed = inputs[0].shape[2:]
        if all(isinstance(v, int) for v in fixed) and tuple(fixed) != tuple(spec.input_size):
            raise SspError(f"{self.spec_path}: input_size {list(spec.input_size)}, but {self.model.name} takes "
                           f"{fixed[0]}x{fixed[1]} images")
        self.input_name = inputs[0].name
        outputs = {o.name: o.shape for o in self.session.get_outputs()}
        self.output_name = spec.output_name or next(iter(outputs))
        if self.output_name not in outputs:
            raise SspError(f"{self.spec_path}: output_name {self.output_name!r} is not an output of {self.model.name} "
                           f"(outputs: {', '.join(outputs)})")
        shape = outputs[self.output_name]
        ranks = (3, 4) if spec.output == "labels" else (4,)
        if len(shape) not in ranks:
            raise SspError(f"{self.spec_path}: output {self.output_name!r} of {self.model.name} has shape {shape}; "
                           f"{spec.output} are {' or '.join(f'rank {r}' for r in ranks)}")
        declared = shape[1] if spec.output != "labels" and isinstance(shape[1], int) else None
        self.classes = self._classes(declared)
        self.num_classes = self.classes.num_classes
        try:
            self(np.zeros((*spec.input_size, 3), np.uint8))
        except SspError as err:
            raise SspError(f"{self.spec_path}: on a blank input, {err}") from None

    def _classes(self, declared: int | None) -> ClassSet:
        if self.spec.classes:
            classes = load_class_set(self.spec.classes)
            if declared is not None and declared != classes.num_classes:
                raise SspError(f"{self.spec_path}: output {self.output_name!r} of {self.model.name} has {declared} "
                               f"classes, the class list {self.spec.classes!r} {classes.num_classes}")
            return classes
        if declared is None:
            raise SspError(f"{self.spec_path}: classes: set the class list (output {self.output_name!r} does not say "
                           "how many classes there are)")
        return numbered_class_set(declared)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """One RGB frame (H×W×3 uint8) → K×h×w float32 scores at the model's resolution, or class ids (uint8 or
        uint16) at the frame's size."""
        h, w = self.spec.input_size
        x = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA if frame.shape[0] > h else cv2.INTER_LINEAR)
        x = (x.astype(np.float32) / 255.0 - np.asarray(self.spec.mean, np.float32)) / np.asarray(self.spec.std,
                                                                                                  np.float32)
        (out,) = self.session.run([self.output_name], {self.input_name: x.transpose(2, 0, 1)[None]})
        out = np.asarray(out)[0]
        if self.spec.output == "labels":
            out = out[0] if out.ndim == 3 else out
            if out.ndim != 2 or out.dtype.kind not in "iu":
                raise SspError(f"{self.model}: output {self.output_name!r} gave {out.dtype} {out.shape}, not integer "
                               "class ids (output: labels)")
            labels = out.astype(np.uint8 if self.num_classes <= 256 else np.uint16)
            return cv2.resize(labels, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_NEAREST)
        if out.ndim != 3 or out.shape[0] != self.num_classes:
            raise SspError(f"{self.model}: output {self.output_name!r} gave shape {out.shape}, expected "
                           f"{self.num_classes}×h×w {self.spec.output}")
        return out.astype(np.float32, copy=False)

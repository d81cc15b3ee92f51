"""The ONNX Runtime backend: runs an exported folder (``ssp export``) on the CPU or with CUDA.

Imports numpy, OpenCV and onnxruntime only (no torch). On CPU the previous frame's state is a pair of numpy
arrays, warped with OpenCV (``cpu_warp.py``) and blended by ``blend.onnx``; with the CUDA provider the
fusion graph warps on the GPU, and ONNX Runtime copies the state in and out per call, which is fine for
evaluation on a laptop GPU. The drone keeps its state on the device with the TensorRT backend.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ssp_ros.backends.cpu_warp import StateWarper, use_cpu_warp
from ssp_ros.backends.export_info import (
    BLEND_INPUTS,
    FUSION_INPUTS,
    SEGMENTER_INPUTS,
    ExportInfo,
    GraphInfo,
    load_export_info,
)
from ssp_ros.backends.int8_cpu import mismatch, this_cpu
from ssp_ros.backends.postprocess import labels_from_logits, similarity_image
from ssp_ros.config import RuntimeConfig, gpu_index
from ssp_ros.errors import SspError
from ssp_ros.resources import resolve_data_path

LOG = logging.getLogger(__name__)


def import_onnxruntime():  # noqa: ANN202 - the module
    """The onnxruntime module; where it is not installed, an SspError saying what to install."""
    try:
        import onnxruntime
    except ImportError:
        raise SspError("the onnxruntime package is not installed (runtime.backend 'onnxruntime' and ssp stabilise "
                       "--segmenter run on it): pip install onnxruntime (or onnxruntime-gpu)") from None
    return onnxruntime


def session_options(ort, threads: int):  # noqa: ANN001, ANN201 - onnxruntime's module and SessionOptions
    """Options for a session that runs beside others, one after the other: ``threads`` intra-op threads (0: all
    cores), all optimisations, and no spin-waiting after a run."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Sessions run one after the other, each with its own thread pool: threads that spin-wait after a run would
    # steal the cores from the next session (measured: segmenter 28 → 53 ms at 368x640 on 2 cores when the fusion
    # session's threads spin). Registration's OpenCV threads compete too.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def open_session(ort, path: Path, options, providers: list):  # noqa: ANN001, ANN201 - onnxruntime types
    """An InferenceSession of ``path``; a file ONNX Runtime cannot load is an SspError naming it."""
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as err:  # noqa: BLE001 - onnxruntime's pybind errors (InvalidProtobuf, …) derive from Exception
        raise SspError(f"{path}: ONNX Runtime cannot load it: {err}") from None


def providers_for(device: str, available: list[str]) -> list[str | tuple[str, dict]]:
    """ONNX Runtime execution providers for ``device``: CUDA first (on its GPU index) when asked for, CPU last."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in available:
        raise SspError(f"runtime.device '{device}': this onnxruntime has no CUDAExecutionProvider "
                       f"(available: {', '.join(available)}); install onnxruntime-gpu or use device 'cpu'")
    index = gpu_index(device)
    return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]


class OnnxRuntimeBackend:
    """Runs ``segmenter.onnx`` and the fusion of an exported folder with ONNX Runtime.

    ``cpu_warp`` (default: on the CPU, with an OpenCV that warps at float precision) warps the previous state
    with OpenCV and runs ``blend.onnx``; otherwise ``fusion.onnx`` warps in the graph.
    """

    name = "onnxruntime"

    def __init__(self, info: ExportInfo, device: str = "cpu", threads: int = 0, cpu_warp: bool | None = None) -> None:
        ort = import_onnxruntime()
        self.info = info
        self.input_size = info.input_size
        self.num_classes = info.num_classes
        options = session_options(ort, threads)
        providers = providers_for(device, ort.get_available_providers())
        if device == "cpu" and info.raw.get("precision", {}).get("segmenter") == "int8":
            problem = mismatch(info.raw.get("calibration", {}), this_cpu())
            if problem:
                LOG.warning("%s: %s", info.graph("segmenter").file, problem)
        self._segmenter = self._session(ort, info.graph("segmenter"), options, providers)
        self._warper = StateWarper() if use_cpu_warp(cpu_warp, device == "cpu") else None
        self._fusion = self._session(ort, info.graph("fusion" if self._warper is None else "blend"), options,
                                     providers)

    @staticmethod
    def _session(ort, graph: GraphInfo, options, providers):  # noqa: ANN001, ANN205 - onnxruntime types
        session = open_session(ort, graph.file, options, providers)
        names = [i.name for i in session.get_inputs()]
        if sorted(names) != sorted(graph.inputs):
            raise SspError(f"{graph.file}: inputs {names} differ from export.json {sorted(graph.inputs)}: re-export")
        return session

    @classmethod
    def from_config(cls, runtime: RuntimeConfig) -> OnnxRuntimeBackend:
        """The backend for ``runtime.export_dir`` (relative paths: working folder, then the package share)."""
        folder = resolve_data_path(runtime.export_dir, "runtime.export_dir",
                                   "exported model folder (write one with ssp export)")
        return cls(load_export_info(folder), runtime.device, runtime.threads)

    def segment(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)
        logits, feats = self._segmenter.run(None, {SEGMENTER_INPUTS[0]: x})
        return logits, feats

    def fuse(self, cur_logits: np.ndarray, cur_feats: np.ndarray, prev_logits: np.ndarray, prev_feats: np.ndarray,
             to_previous: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._warper is not None:
            warped = self._warper(prev_logits, prev_feats, to_previous)
            feeds = dict(zip(BLEND_INPUTS, (cur_logits, cur_feats, *warped)))
        else:
            h = np.asarray(to_previous, dtype=np.float32).reshape(1, 3, 3)
            feeds = dict(zip(FUSION_INPUTS, (cur_logits, cur_feats, prev_logits, prev_feats, h)))
        fused, s = self._fusion.run(None, feeds)
        return fused, s

    def labels(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return labels_from_logits(logits, self.input_size)

    def similarity(self, s: np.ndarray) -> np.ndarray:
        return similarity_image(s, self.input_size)

    def synchronize(self) -> None:
        """A no-op: ``InferenceSession.run`` returns its outputs as host arrays, so the work is done."""

    def close(self) -> None:
        """Nothing to free explicitly: the sessions go with the last reference to the backend."""

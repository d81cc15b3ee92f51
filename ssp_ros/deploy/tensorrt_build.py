"""Build the TensorRT engines of an exported model folder: ``ssp build-engine --onnx DIR --fp16``.

The segmenter and fusion graphs of the folder (``GRAPHS`` in ``backends/export_info.py``) become engines beside
them, each with a sidecar keyed by the ONNX hash, TensorRT version, GPU and precision (``backends/engine_cache.py``).
The builder parses each ONNX graph (reporting every parser error), limits the workspace, reuses a timing cache
kept in the folder (one per TensorRT version and GPU) so rebuilds skip most kernel timing, and for INT8
calibrates the segmenter with entropy calibration over a folder of frames (``calibration.py``), caching the
calibration table.

Targets TensorRT 8.6 (JetPack 6.0) through 10.x (JetPack 6.1/6.2 ship 10.3) through the Python API, the range
of ``SUPPORTED_TENSORRT`` (``backends/tensorrt_common.py``; TensorRT 11 is refused there, before a build starts);
``tensorrt`` and ``pycuda`` are imported inside the functions that need them, so this module imports without them.
The fusion graph is built in FP32 at every precision (``FP32_GRAPHS``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ssp_ros.backends.engine_cache import (
    EngineKey,
    calibration_cache_path,
    engine_path,
    engine_precision,
    timing_cache_path,
    write_engine,
)
from ssp_ros.backends.export_info import GRAPHS, SEGMENTER_INPUTS, ExportInfo, load_export_info
from ssp_ros.backends.tensorrt_common import (
    concrete_shape,
    cuda_context,
    detect_platform,
    require_tensorrt,
    tensorrt_version,
    trt_logger,
)
from ssp_ros.config import PRECISIONS
from ssp_ros.errors import SspError

if TYPE_CHECKING:  # numpy and OpenCV load only when a build needs frames, so `ssp --help` stays quick
    from ssp_ros.deploy.calibration import CalibrationSet

Progress = Callable[[str], None]


def _network_flags(trt: ModuleType) -> int:
    # TensorRT 8.6 parses ONNX only into explicit-batch networks; 10.x is always explicit batch and
    # deprecates the flag
    if tensorrt_version(trt) >= (10, 0):
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)


def parse_onnx(trt: ModuleType, builder: Any, onnx: Path) -> tuple[Any, Any]:
    """(network, parser) for an ONNX file; an error listing every parser error if it does not parse.
    The parser is returned because the network may refer to weights it owns until the build is done."""
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, trt_logger(trt))
    if not parser.parse_from_file(str(onnx)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise SspError(f"{onnx}: TensorRT {trt.__version__} cannot parse this graph ({len(errors)} error(s)):\n  "
                       + "\n  ".join(errors))
    return network, parser


def make_calibrator(trt: ModuleType, cuda: ModuleType, frames: CalibrationSet, cache: Path,
                    progress: Progress) -> Any:
    """An ``IInt8EntropyCalibrator2`` feeding ``frames`` batch by batch through one device buffer, with its
    calibration table at ``cache`` (a ``CalibrationTable``: reused only if a complete calibration wrote it).
    The class is defined here because its base class exists only once tensorrt is imported.

    TensorRT's Python bindings print and swallow what a calibrator method raises, and take ``get_batch``
    returning None (its only way to stop) as the end of the data, after which they still hand the table to
    ``write_calibration_cache``. So every method catches its own errors: the first is kept in ``error`` (naming
    the batch's frames), ``get_batch`` answers None from then on, no table is kept, and ``failure()`` (called
    by ``build_engines`` after the build) turns it into one SspError.
    """
    from ssp_ros.deploy.calibration import CalibrationTable

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.table = CalibrationTable(cache, len(frames))
            self.batches = frames.batches()
            self.device = cuda.mem_alloc(frames.batch_nbytes)
            self.done = 0  # batches handed to TensorRT
            self.reused: bytes | None = None  # the table read back instead of calibrating
            self.written = False
            self.error: SspError | None = None

        def _fail(self, what: str, err: BaseException) -> None:
            if self.error is None:
                self.error = SspError(f"{what}: {err}")
                self.error.__cause__ = err

        def get_batch_size(self) -> int:
            return frames.batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.error is not None or self.done >= len(frames):
                return None
            index = self.done
            try:
                batch = next(self.batches)
                cuda.memcpy_htod(self.device, batch)
                self.done += 1
                if self.done % 50 == 0 or self.done == len(frames):
                    progress(f"  calibration batch {self.done}/{len(frames)}")
            except Exception as err:  # noqa: BLE001 - kept for failure(): TensorRT would print and swallow it
                files = ", ".join(str(path) for path in frames.batch_files(index))
                self._fail(f"batch {index + 1}/{len(frames)} ({files})", err)
                return None
            return [int(self.device)]

        def read_calibration_cache(self) -> bytes | None:
            try:
                self.reused = self.table.read()
            except Exception as err:  # noqa: BLE001 - as in get_batch
                self._fail(f"reading {cache}", err)
                return None
            if self.reused is not None:
                progress(f"  using calibration table {cache} (from all {len(frames)} batches)")
            return self.reused

        def write_calibration_cache(self, table: Any) -> None:
            if self.error is not None:
                return  # never keep the table of a calibration that failed
            try:
                data = bytes(table)
                if self.reused is not None and self.done == 0 and data == self.reused:
                    return  # TensorRT handing back the table it read
                self.table.write(data, self.done)
                self.written = True
            except Exception as err:  # noqa: BLE001 - as in get_batch
                self._fail(f"writing {cache}", err)

        def failure(self) -> SspError | None:
            """What went wrong, if anything: an error kept by a method, or a table neither reused nor made from
            every batch (TensorRT stopped calibrating early)."""
            if self.error is None and self.reused is None and not (self.written and self.done == len(frames)):
                self.error = SspError(f"TensorRT ended calibration after {self.done} of {len(frames)} batches "
                                      "without keeping a table (see its errors above)")
            return self.error

        def release(self) -> None:
            """Free the device buffer (with the build's CUDA context current)."""
            self.device.free()

    return EntropyCalibrator()


class TimingCache:
    """The builder's timing cache, loaded from and saved to the export folder, shared by both builds."""

    def __init__(self, path: Path, config: Any, progress: Progress) -> None:
        self.path = path
        data = path.read_bytes() if path.is_file() else b""
        self.cache = config.create_timing_cache(data)
        if data and not config.set_timing_cache(self.cache, False):
            progress(f"{path}: timing cache rejected by this TensorRT/GPU; starting a new one")
            self.cache = config.create_timing_cache(b"")

    def attach(self, config: Any) -> None:
        """Use (and extend) this cache in a builder config."""
        if not config.set_timing_cache(self.cache, False):
            raise SspError(f"{self.path}: TensorRT refused the timing cache; delete the file and build again")

    def save(self) -> None:
        self.path.write_bytes(self.cache.serialize())


@dataclass(frozen=True)
class BuildOptions:
    """What ``ssp build-engine`` was asked for."""

    precision: str = "fp16"  # run precision: "fp32", "fp16" or "int8" (INT8 applies to the segmenter only)
    workspace_mb: int = 1024  # TensorRT's scratch memory limit while building and running
    device_index: int = 0  # GPU to build on (engines are tied to its model)
    calib_dir: Path | None = None  # INT8: folder of frames (png/jpg) to calibrate with
    calib_frames: int = 500  # INT8: at most this many frames, evenly spaced over the folder


def _calibration_set(info: ExportInfo, options: BuildOptions) -> CalibrationSet | None:
    from ssp_ros.deploy.calibration import CalibrationSet

    if options.precision != "int8":
        if options.calib_dir is not None:
            raise SspError("--calib is only used with --int8")
        return None
    if options.calib_dir is None:
        raise SspError("--int8 needs --calib DIR: a folder of frames like those the drone will see")
    # an explicit-batch engine takes exactly its input shape, so each calibration batch is one input
    # tensor: the export's batch size (1, also for a dynamic-batch export, see concrete_shape)
    where = f"{info.folder / 'export.json'} graphs.segmenter.inputs.{SEGMENTER_INPUTS[0]}"
    if SEGMENTER_INPUTS[0] not in info.graph("segmenter").inputs:
        raise SspError(f"{where}: missing; re-export with `ssp export`")
    batch = concrete_shape(info.graph("segmenter").inputs[SEGMENTER_INPUTS[0]], where)[0]
    return CalibrationSet(options.calib_dir, info.input_size, batch_size=batch, limit=options.calib_frames)


# Graphs whose arithmetic stays FP32 at every engine precision. The fusion graph turns the homography into a
# sampling grid (cell coordinates up to the map's width, where FP16 steps by 0.125-0.25 cells), decides which
# cells came from inside the previous frame with a margin of 1/1000 of a cell, and blends the recursive state
# that the next frame reads back; in FP16 each of these errs, and the errors feed the next frame (measured in
# test/tools/fp16_warp_drift.py, figures in models/README.md "TensorRT FP16 and the warp"). The whole graph
# rather than the warp's layers: per-layer precision needs layer names that the exporter does not promise and
# is deprecated since TensorRT 10.12, and without a GPU here the cost of the similarity head in FP32 could not
# be measured, so the safe choice was taken. Its engine keeps the run precision's name (fusion.fp16.engine).
FP32_GRAPHS = frozenset({"fusion"})


def builder_config(trt: ModuleType, builder: Any, precision: str, workspace_mb: int, graph: str | None = None) -> Any:
    """A builder config with the workspace limit and the precision flags of an engine precision; a graph of
    ``FP32_GRAPHS`` gets no reduced-precision flag, so TensorRT builds all its layers in FP32."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if graph in FP32_GRAPHS:
        return config
    if precision in ("fp16", "int8"):
        # INT8 engines keep FP16 enabled so that layers without an INT8 kernel fall back to FP16, not FP32
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    return config


def fix_dynamic_batch(builder: Any, network: Any, config: Any, info: ExportInfo, graph: str, int8: bool) -> None:
    """Give a dynamic-batch graph an optimisation profile with batch 1 (and use it for calibration)."""
    recorded = info.graph(graph).inputs
    profile = None
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        if any(d < 0 for d in tensor.shape):
            if tensor.name not in recorded:
                raise SspError(f"{info.graph(graph).file}: input '{tensor.name}' is not in export.json; re-export")
            shape = concrete_shape(recorded[tensor.name], f"{info.graph(graph).file} input '{tensor.name}'")
            profile = profile or builder.create_optimization_profile()
            profile.set_shape(tensor.name, shape, shape, shape)
    if profile is not None:
        config.add_optimization_profile(profile)
        if int8:
            config.set_calibration_profile(profile)


def build_engines(folder: str | Path, options: BuildOptions, progress: Progress = print) -> list[Path]:
    """Build the segmenter and fusion engines of an export folder and write them with their sidecars.

    INT8 applies to the segmenter only; the fusion graph is not quantised (its engine, named fp16, is built in
    FP32 at every precision: ``FP32_GRAPHS``) because its output is the
    recursive state (fused logits feed the next frame, so quantisation error would compound frame after
    frame) and because a folder of frames cannot provide representative (current, previous, homography)
    inputs to calibrate it with: that would need the whole pipeline, registration included, at build time.
    """
    if options.precision not in PRECISIONS:
        raise SspError(f"precision '{options.precision}': expected one of {', '.join(PRECISIONS)}")
    if options.workspace_mb < 1:
        raise SspError(f"--workspace-mb must be >= 1, got {options.workspace_mb}")
    info = load_export_info(folder)
    _refuse_quantized(info)
    _refuse_compact(info)
    frames = _calibration_set(info, options)
    trt, cuda = require_tensorrt()
    with cuda_context(cuda, options.device_index) as device:
        # every TensorRT and pycuda object of the build lives in _build_graphs, so all are released before
        # the context is destroyed
        return _build_graphs(trt, cuda, device, info, options, frames, progress)


def _refuse_quantized(info: ExportInfo) -> None:
    """Engines are built from FP32 graphs (TensorRT calibrates its own INT8): a folder whose segmenter
    ``ssp export --int8`` already quantized is refused, with what to do instead."""
    quantized = info.raw.get("precision", {}).get("segmenter", "fp32")
    if quantized == "fp32":
        return
    scheme = info.raw.get("calibration", {}).get("scheme", "unknown")
    hint = (" (this symmetric QDQ graph is TensorRT's explicit quantization: `trtexec --onnx=segmenter.onnx "
            "--int8` builds it)" if scheme == "s8s8" else " (the u8s8 scheme is for ONNX Runtime only)")
    raise SspError(f"{info.folder / 'export.json'}: the segmenter was quantized to {quantized} by `ssp export "
                   f"--int8` (scheme {scheme}){hint}; ssp build-engine builds from an FP32 export and calibrates "
                   "INT8 itself: re-export without --int8, then `ssp build-engine --int8 --calib DIR`")


def _refuse_compact(info: ExportInfo) -> None:
    """Engines are built from a plain export: a compact one (``ssp export --compact``, weights behind ``Cast``
    nodes, BatchNorm unfolded) is a build path TensorRT has not been measured on here (``deploy/compact.py``)."""
    if info.raw.get("compact"):
        raise SspError(f"{info.folder / 'export.json'}: a compact export (`ssp export --compact`, float16 weight "
                       "storage for ONNX Runtime); ssp build-engine builds from a plain export: run `ssp export "
                       "--out DIR` without --compact, then `ssp build-engine --onnx DIR`")


def _build_graphs(trt: ModuleType, cuda: ModuleType, device: Any, info: ExportInfo, options: BuildOptions,
                  frames: CalibrationSet | None, progress: Progress) -> list[Path]:
    if frames is not None and not hasattr(trt, "IInt8EntropyCalibrator2"):
        raise SspError(f"TensorRT {trt.__version__} has no INT8 entropy calibrator (implicit quantisation was "
                       "removed); build --fp16 engines instead")
    platform = detect_platform(trt, device)
    progress(f"building {options.precision} engines of {info.folder} with TensorRT {platform.tensorrt_version} "
             f"on {platform.gpu_name} (sm {platform.compute_capability})")
    logger = trt_logger(trt)
    trt.init_libnvinfer_plugins(logger, "")
    builder = trt.Builder(logger)
    timing: TimingCache | None = None
    written = []
    for graph in GRAPHS:
        precision = engine_precision(graph, options.precision)
        calibrated = frames if precision == "int8" else None
        key = EngineKey.for_graph(info, graph, precision, platform,
                                  calibrated.sha256() if calibrated is not None else None)
        config = builder_config(trt, builder, precision, options.workspace_mb, graph)
        if timing is None:
            timing = TimingCache(timing_cache_path(info.folder, platform), config, progress)
        timing.attach(config)
        calibrator = None
        if calibrated is not None:
            progress(f"  calibrating {graph} on {calibrated.frames_used} frames of {calibrated.folder}")
            calibrator = make_calibrator(trt, cuda, calibrated, calibration_cache_path(info.folder, key), progress)
            config.int8_calibrator = calibrator
        onnx = info.graph(graph).file
        network, _parser = parse_onnx(trt, builder, onnx)
        fix_dynamic_batch(builder, network, config, info, graph, calibrated is not None)
        progress(f"  building {graph} ({precision}) from {onnx.name}")
        start = time.perf_counter()
        try:
            serialized = builder.build_serialized_network(network, config)
        finally:
            if calibrator is not None:
                calibrator.release()
        if calibrator is not None and (failure := calibrator.failure()) is not None:
            calibrator.table.discard()
            raise SspError(f"INT8 calibration of {graph} failed, so no engine was written and no calibration table "
                           f"kept: {failure}") from failure.__cause__
        if serialized is None:
            raise SspError(f"{onnx}: TensorRT could not build a {precision} engine (see the TensorRT errors "
                           "above; a larger --workspace-mb may help)")
        build: dict[str, Any] = {"workspace_mb": options.workspace_mb, "seconds": round(time.perf_counter() - start, 1)}
        if calibrated is not None:
            build["calibration"] = {"folder": str(calibrated.folder), "frames": calibrated.frames_used,
                                    "table": "calibrated" if calibrator.reused is None else "reused"}
        path = write_engine(engine_path(info.folder, graph, precision), bytes(serialized), key, build)
        progress(f"  wrote {path} ({path.stat().st_size / 2**20:.1f} MiB, {build['seconds']} s)")
        written.append(path)
    if timing is not None:
        timing.save()
    return written

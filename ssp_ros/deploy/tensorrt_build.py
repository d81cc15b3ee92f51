"""Build the TensorRT engines of an exported model folder: ``ssp build-engine --onnx DIR --fp16``.

Both graphs of the folder (``backends/export_info.py``) become engines beside them, each with a sidecar keyed by
the ONNX hash, TensorRT version, GPU and precision (``backends/engine_cache.py``). The builder parses each ONNX
graph (reporting every parser error), limits the workspace, reuses a timing cache kept in the folder (one
per TensorRT version and GPU) so rebuilds skip most kernel timing, and for INT8 calibrates the segmenter
with entropy calibration over a folder of frames (``calibration.py``), caching the calibration table.

Targets TensorRT 8.5/8.6 (JetPack 5) and 10.x (JetPack 6) through the Python API; ``tensorrt`` and
``pycuda`` are imported inside the functions that need them, so this module imports without them.
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
    # TensorRT 8.x parses ONNX only into explicit-batch networks; 10.x is always explicit batch and
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
    """An ``IInt8EntropyCalibrator2`` feeding ``frames`` batch by batch through one device buffer, reading
    and writing the calibration table at ``cache``. The class is defined here because its base class
    exists only once tensorrt is imported.

    TensorRT swallows exceptions raised inside ``get_batch``, so a failure (an unreadable frame) is kept
    in ``error`` and ends calibration; ``build_engines`` raises it after the build.
    """

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batches = frames.batches()
            self.device = cuda.mem_alloc(frames.batch_nbytes)
            self.done = 0
            self.error: Exception | None = None

        def get_batch_size(self) -> int:
            return frames.batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            try:
                batch = next(self.batches, None)
            except Exception as err:  # noqa: BLE001 - re-raised by build_engines; TensorRT would hide it
                self.error = err
                return None
            if batch is None:
                return None
            cuda.memcpy_htod(self.device, batch)
            self.done += 1
            if self.done % 50 == 0 or self.done == len(frames):
                progress(f"  calibration batch {self.done}/{len(frames)}")
            return [int(self.device)]

        def read_calibration_cache(self) -> bytes | None:
            if cache.is_file():
                progress(f"  using calibration table {cache}")
                return cache.read_bytes()
            return None

        def write_calibration_cache(self, table: Any) -> None:
            cache.write_bytes(table)

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


def builder_config(trt: ModuleType, builder: Any, precision: str, workspace_mb: int) -> Any:
    """A builder config with the workspace limit and the precision flags of an engine precision."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
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

    INT8 applies to the segmenter only; the fusion graph is built in FP16 because its output is the
    recursive state (fused logits feed the next frame, so quantisation error would compound frame after
    frame) and because a folder of frames cannot provide representative (current, previous, homography)
    inputs to calibrate it with: that would need the whole pipeline, registration included, at build time.
    """
    if options.precision not in PRECISIONS:
        raise SspError(f"precision '{options.precision}': expected one of {', '.join(PRECISIONS)}")
    if options.workspace_mb < 1:
        raise SspError(f"--workspace-mb must be >= 1, got {options.workspace_mb}")
    info = load_export_info(folder)
    frames = _calibration_set(info, options)
    trt, cuda = require_tensorrt()
    with cuda_context(cuda, options.device_index) as device:
        # every TensorRT and pycuda object of the build lives in _build_graphs, so all are released before
        # the context is destroyed
        return _build_graphs(trt, cuda, device, info, options, frames, progress)


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
        config = builder_config(trt, builder, precision, options.workspace_mb)
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
        serialized = builder.build_serialized_network(network, config)
        if calibrator is not None and calibrator.error is not None:
            raise SspError(f"INT8 calibration of {graph} failed: {calibrator.error}")
        if serialized is None:
            raise SspError(f"{onnx}: TensorRT could not build a {precision} engine (see the TensorRT errors "
                           "above; a larger --workspace-mb may help)")
        build: dict[str, Any] = {"workspace_mb": options.workspace_mb, "seconds": round(time.perf_counter() - start, 1)}
        if calibrated is not None:
            build["calibration"] = {"folder": str(calibrated.folder), "frames": calibrated.frames_used}
        path = write_engine(engine_path(info.folder, graph, precision), bytes(serialized), key, build)
        progress(f"  wrote {path} ({path.stat().st_size / 2**20:.1f} MiB, {build['seconds']} s)")
        written.append(path)
    if timing is not None:
        timing.save()
    return written

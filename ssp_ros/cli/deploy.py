"""The deployment wing on the command line: ``ssp export`` and ``ssp build-engine``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ssp_ros.cli.args import size
from ssp_ros.errors import SspError


def cmd_export(args: argparse.Namespace) -> int:
    """Export the configured (or --weights) model to the ONNX graphs of the deployment runtimes."""
    import dataclasses

    from ssp_ros.backends.export_info import load_export_info
    from ssp_ros.config import load_config
    from ssp_ros.deploy.export import export_config

    model_cfg = load_config(args.config).model
    if args.weights is not None:
        model_cfg = dataclasses.replace(model_cfg, weights=str(args.weights))
    if args.size is not None:
        model_cfg = dataclasses.replace(model_cfg, input_size=args.size)
    info = load_export_info(export_config(model_cfg, args.out, dynamic_batch=args.dynamic_batch))
    for graph in info.graphs.values():
        print(f"{graph.file}: {', '.join(f'{k} {v}' for k, v in graph.inputs.items())} -> "
              f"{', '.join(f'{k} {v}' for k, v in graph.outputs.items())}")
    print(f"wrote {args.out}/export.json (opset {info.opset}, {info.num_classes} classes, input "
          f"{info.input_size[0]}x{info.input_size[1]}); use it with runtime.backend: onnxruntime and "
          f"runtime.export_dir: {args.out}, or `ssp build-engine --onnx {args.out} --fp16` on the drone")
    return 0


def cmd_build_engine(args: argparse.Namespace) -> int:
    """Build the TensorRT engines of ``args.onnx`` (an ``ssp export`` folder) on this machine's GPU."""
    from ssp_ros.deploy.tensorrt_build import BuildOptions, build_engines

    if args.calib_frames < 1:
        raise SspError(f"--calib-frames must be >= 1, got {args.calib_frames}")
    options = BuildOptions(precision=args.precision, workspace_mb=args.workspace_mb, device_index=args.device,
                           calib_dir=args.calib, calib_frames=args.calib_frames)
    start = time.perf_counter()
    written = build_engines(args.onnx, options)
    print(f"built {len(written)} engines in {time.perf_counter() - start:.0f} s; run them with runtime.backend: "
          f"tensorrt, runtime.export_dir: {args.onnx}, runtime.precision: {args.precision}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``ssp export`` and ``ssp build-engine``."""
    export = sub.add_parser("export", help="export the model to two ONNX graphs (segmenter, fusion) + export.json")
    export.add_argument("--out", type=Path, required=True, help="output folder, e.g. models/ssp_export")
    export.add_argument("--config", type=Path, help="ssp_ros config YAML (default: the shipped config/ssp.yaml)")
    export.add_argument("--weights", type=Path, help="model weights, overriding the config's model.weights")
    export.add_argument("--size", type=size, help="model input HxW, multiples of 32 (default: model.input_size)")
    export.add_argument("--dynamic-batch", action="store_true", help="dynamic batch dimension (default static 1)")
    export.set_defaults(func=cmd_export)

    parser = sub.add_parser("build-engine", help="build TensorRT engines for an exported model folder")
    parser.add_argument("--onnx", type=Path, required=True, help="folder written by `ssp export`")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--fp32", dest="precision", action="store_const", const="fp32", help="FP32 engines")
    precision.add_argument("--fp16", dest="precision", action="store_const", const="fp16",
                           help="FP16 engines (the default)")
    precision.add_argument("--int8", dest="precision", action="store_const", const="int8",
                           help="INT8 segmenter (calibrated with --calib) + FP16 fusion")
    parser.add_argument("--calib", type=Path, help="--int8: folder of frames (png/jpg) to calibrate with")
    parser.add_argument("--calib-frames", type=int, default=500,
                        help="--int8: use at most this many frames, evenly spaced (default 500)")
    parser.add_argument("--workspace-mb", type=int, default=1024, help="TensorRT workspace limit in MiB (default 1024)")
    parser.add_argument("--device", type=int, default=0, help="GPU index to build on (default 0)")
    parser.set_defaults(func=cmd_build_engine, precision="fp16")

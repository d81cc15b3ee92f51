"""Every plan of the matrix, one node process each, into one report: frames, exports and the settings."""

from __future__ import annotations

import dataclasses
import datetime
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ssp_ros.backends.export_info import load_export_info
from ssp_ros.config import SspConfig
from ssp_ros.errors import SspError
from ssp_ros.eval.bench import input_size_for
from ssp_ros.synthetic import SyntheticVideo
from ssp_ros.synthetic.config import SimConfig, SyntheticConfig
from ssp_ros.tools.node_bench.node_process import default_domain, write_node_config
from ssp_ros.tools.node_bench.plan import CAMERA_TOPIC, MASK_TOPIC, RunPlan
from ssp_ros.tools.node_bench.report import machine_info, summary_line
from ssp_ros.tools.node_bench.run import run_once
from ssp_ros.tools.node_bench.run_numbers import RSS_LIMIT_MB

LOOP_FRAMES = 60  # synthetic frames rendered per size, played forward then backward (no jump, no reset)
MIDDLEWARE_ENV = ("FASTDDS_BUILTIN_TRANSPORTS", "FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE",
                  "RMW_FASTRTPS_USE_QOS_FROM_XML", "RMW_FASTRTPS_PUBLICATION_MODE")  # what the node inherits


def export_folders(given: Sequence[Path], needed: Sequence[tuple[int, int]], backend: str, cfg: SspConfig,
                   scratch: Path) -> dict[tuple[int, int], Path | None]:
    """Model input size → export folder: a ``given`` folder exported at that size, else (onnxruntime) a fresh
    export of ``cfg.model`` into ``scratch`` (ONNX graphs have a static input size: one export per size)."""
    if backend == "torch":
        return {size: None for size in needed}
    by_size: dict[tuple[int, int], Path] = {}
    for folder in given:
        by_size.setdefault(tuple(load_export_info(folder).input_size), folder.resolve())  # type: ignore[arg-type]
    out: dict[tuple[int, int], Path | None] = {}
    for size in needed:
        if size in by_size:
            out[size] = by_size[size]
        elif backend == "onnxruntime":
            from ssp_ros.deploy.export import export_config  # needs torch: the bench exports what it measures

            model = dataclasses.replace(cfg.model, input_size=size)
            out[size] = export_config(model, scratch / f"export_{size[0]}x{size[1]}").resolve()
        else:
            have = ", ".join(f"{h}x{w}" for h, w in by_size) or "none given"
            raise SspError(f"--export-dir: backend {backend} needs a folder exported (and built) at input "
                           f"{size[0]}x{size[1]}; have {have}")
    return out


def run_node_bench(cfg: SimConfig, plans: Sequence[RunPlan], *, backend: str = "onnxruntime",
                   export_dirs: Sequence[Path] = (), warmup_s: float = 5.0, input_size: tuple[int, int] | None = None,
                   threads: int | None = None, domain: int | None = None, scenario: SyntheticConfig | None = None,
                   seed: int = 2000, rss_limit_mb: float = RSS_LIMIT_MB, reliable: bool | None = None,
                   progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every plan, one node process each; a run that fails is recorded with its error and the rest go on.
    ``reliable``: the node's ``node.reliable`` (and the camera's QoS); None keeps ``cfg``'s."""
    domain = default_domain() if domain is None else domain
    scenario = cfg.synthetic if scenario is None else scenario
    say = progress or (lambda _: None)
    report: dict[str, Any] = {
        "tool": "ssp bench-node",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {"backend": backend, "warmup_s": warmup_s, "input_size": None if input_size is None
                     else list(input_size), "threads": cfg.runtime.threads if threads is None else threads,
                     "domain_id": domain, "seed": seed, "loop_frames": LOOP_FRAMES, "rss_limit_mb": rss_limit_mb,
                     "max_age_ms": cfg.node.max_age_ms, "camera_topic": CAMERA_TOPIC, "mask_topic": MASK_TOPIC,
                     "input_qos": "reliable" if (cfg.node.reliable if reliable is None else reliable)
                     else "best effort",
                     "middleware_env": {k: os.environ[k] for k in MIDDLEWARE_ENV if k in os.environ},
                     "latency": "mask arrival (wall clock, this process) - header stamp (wall clock when sent)"},
        "runs": []}
    inputs = {plan.frame_size: input_size or input_size_for(plan.frame_size) for plan in plans}
    with tempfile.TemporaryDirectory(prefix="ssp-bench-node-") as tmp:
        scratch = Path(tmp)
        exports = export_folders(export_dirs, sorted(set(inputs.values())), backend, cfg, scratch)
        frames: dict[tuple[int, int], list[np.ndarray]] = {}
        for i, plan in enumerate(plans):
            size = plan.frame_size
            export = exports[inputs[size]]
            record: dict[str, Any] = {**dataclasses.asdict(plan), "frame_size": list(size),
                                      "input_size": list(inputs[size]), "backend": backend,
                                      "export_dir": None if export is None else str(export), "warmup_s": warmup_s}
            say(f"[{i + 1}/{len(plans)}] {plan.kind} run: {plan.transport}, {size[0]}x{size[1]}, "
                f"{plan.rate_hz:g} Hz for {plan.duration_s:g} s")
            try:
                if size not in frames:
                    video = SyntheticVideo(dataclasses.replace(scenario, height=size[0], width=size[1]),
                                           LOOP_FRAMES, seed)
                    frames[size] = [f.image for f in video]
                config = write_node_config(cfg, scratch / f"ssp_{i}.yaml", inputs[size], backend, export, threads,
                                           reliable)
                record.update(run_once(plan, config, frames[size], domain, warmup_s, rss_limit_mb, scratch))
            except SspError as err:
                record["error"] = str(err)
            report["runs"].append(record)
            say(summary_line(record))
    report["summary"] = [summary_line(r) for r in report["runs"]]
    return report

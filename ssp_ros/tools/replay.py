"""``ssp replay``: run the node's processing over a ROS 2 bag, write the results into a new bag, report.

The input topic goes through the same ``StreamProcessor`` as the node (conversion, pipeline, output
messages with the input header). The new bag holds the input topic and ``/ssp/mask``, ``/ssp/overlay``,
``/ssp/confidence`` (and ``/ssp/similarity`` with ``node.publish_similarity``) on the input's bag time
stamps. Modes:

- ``deterministic``: every frame is processed, whatever it costs (same bag, same output);
- ``realtime``: frames arrive at their bag time stamps and meet the node's policy: one worker, a
  newest-frame slot (a frame still waiting when a newer one arrives is dropped), ``node.max_age_ms``
  checked when a frame's turn comes; processing time is the measured latency of each frame.

With ``--segmenter`` (a YAML of the user's ONNX segmenter, ``backends/external.py``) each frame goes through that
segmenter and the stabiliser over it instead (``ssp_ros/segmenter_pipeline.py``): ``/ssp/mask`` holds the
stabilised labels and ``/ssp/overlay`` shows them (there is no confidence or similarity), and the report scores the
segmenter's own labels beside them (``input_segmenter``). Without it the report scores the image model's own
masks beside SSP's (``image_model``): the same pass keeps the segmenter's mask before fusion, so both are measured
on the same frames at no second inference.

The report (``report.json``, ``report.md``, ``tc_over_time.png``) gives frames, skipped frames with
reasons, resets after the stream's start, TC and the label-free change rate (DIS optical flow between consecutive
outputs), each model's share of pixels per class, mIoU when labels are given (a topic of mono8 class-id images, a
folder of ``<stamp_ns>.png``, or by default the ``labels`` topic beside the image topic when the bag has one, as
``ssp synth --bag`` writes), latency percentiles (with registration's own time in its thread) and FPS, and what
the weights were trained on: without labels TC and the change rate say how steady the masks are, not whether they
are right.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.highlevel import AnyReader, AnyReaderError
from tqdm import tqdm

from ssp_ros import segmenter_pipeline
from ssp_ros.backends import make_backend
from ssp_ros.classes import ClassSet, load_class_set
from ssp_ros.config import SspConfig
from ssp_ros.errors import SspError
from ssp_ros.eval.flow import DISFlow
from ssp_ros.eval.metrics import SequenceMetrics
from ssp_ros.eval.provenance import trained_on, trained_on_line
from ssp_ros.eval.registration_health import resets_after_start
from ssp_ros.eval.report import cell, class_share_table, plot_tc_over_time
from ssp_ros.io import read_png
from ssp_ros.pipeline import STAGES, Pipeline
from ssp_ros.ros.images import MessageError, image_pixels, stamp_ns
from ssp_ros.ros.stream import OUTPUTS, SUPERSEDED, StreamOutput, StreamProcessor
from ssp_ros.segmenter_pipeline import SegmenterPipeline, SegmenterResult
from ssp_ros.tools.bag import IMAGE, BagWriter, labels_topic_beside, open_bag, records, topic_connections

MODES = ("deterministic", "realtime")
CORRUPT = "corrupt record"  # bytes that do not deserialise to the topic's type
OUTPUT_NAMESPACE = "/ssp"
PERCENTILES = (50, 90, 99)


@dataclass
class Labels:
    """Ground-truth class ids by header stamp (ns), and where they came from."""

    source: str | None = None
    by_stamp: dict[int, np.ndarray] = field(default_factory=dict)
    problems: dict[str, int] = field(default_factory=dict)  # labels that could not be used, by reason


def _labels_from_topic(reader: AnyReader, bag: Path, topic: str) -> Labels:
    labels = Labels(source=f"topic {topic}")
    for record in records(reader, topic_connections(reader, topic, bag, (IMAGE,)), bag):
        try:
            msg = reader.deserialize(record.raw, record.connection.msgtype)
            pixels = image_pixels(msg)
            if pixels.ndim != 2 or pixels.dtype != np.uint8:
                raise MessageError("not mono8", f"labels on {topic} must be mono8 class ids, got {msg.encoding}")
            labels.by_stamp[stamp_ns(msg.header)] = pixels
        except AnyReaderError:
            labels.problems[CORRUPT] = labels.problems.get(CORRUPT, 0) + 1
        except MessageError as err:
            labels.problems[err.reason] = labels.problems.get(err.reason, 0) + 1
    return labels


def _labels_from_folder(folder: Path) -> Labels:
    files = sorted(p for p in folder.glob("*.png") if p.stem.isdigit())
    if not files:
        raise SspError(f"{folder}: no label PNGs named <stamp_ns>.png in this folder")
    return Labels(source=f"folder {folder}", by_stamp={int(p.stem): read_png(p, color=False) for p in files})


def load_labels(reader: AnyReader, bag: Path, topic: str, labels: str | None) -> Labels:
    """Labels from ``labels`` (a folder of ``<stamp_ns>.png`` or a topic); None: the topic beside ``topic``
    if the bag has it, else no labels."""
    if labels is None:
        beside = labels_topic_beside(topic)
        has_it = any(c.topic == beside and c.msgtype == IMAGE for c in reader.connections)
        return _labels_from_topic(reader, bag, beside) if has_it else Labels()
    if Path(labels).is_dir():
        return _labels_from_folder(Path(labels))
    return _labels_from_topic(reader, bag, labels)


class Scorer:
    """TC and the label-free change rate with DIS flow between consecutive frames, class shares, and mIoU/flicker
    where labels exist, for each of the named masks of a frame (the output, and the image model's or, with
    ``--segmenter``, the segmenter's own). Lags one frame, because a frame's forward flow needs the next frame."""

    def __init__(self, classes: ClassSet, labels: Labels, names: tuple[str, ...] = ("output",)) -> None:
        self.classes, self.labels = classes, labels
        self.metrics = {name: SequenceMetrics(classes.num_classes, classes.ignore_index, vc_lengths=())  # VC: demo
                        for name in names}
        self.flow = DISFlow()
        self.labelled = 0
        self._previous: tuple[np.ndarray, dict[str, np.ndarray], np.ndarray | None] | None = None

    def _truth(self, stamp: int, mask: np.ndarray) -> np.ndarray | None:
        truth = self.labels.by_stamp.get(stamp)
        if truth is None:
            return None
        known = (truth < self.classes.num_classes) | (truth == self.classes.ignore_index)
        problem = "size differs from the image" if truth.shape != mask.shape else (
            "unknown class ids" if not known.all() else "")
        if problem:
            self.labels.problems[problem] = self.labels.problems.get(problem, 0) + 1
            return None
        self.labelled += 1
        return truth

    def add(self, frame: np.ndarray, masks: dict[str, np.ndarray], stamp: int) -> None:
        """Score the previous frame's masks against this frame (TC and change rate by flow; mIoU where labelled),
        then keep this one's (``masks``: name → H×W class ids, one per name)."""
        truth = self._truth(stamp, masks["output"])
        if self._previous is not None:
            prev_frame, prev_masks, prev_truth = self._previous
            flow, valid = self.flow(prev_frame, frame) if prev_frame.shape == frame.shape else (None, None)
            for name, metrics in self.metrics.items():
                metrics.add(prev_masks[name], prev_truth, flow, valid)
        self._previous = (frame, masks, truth)

    def report(self) -> dict[str, dict]:
        """Score the last masks; each name's metrics' report."""
        if self._previous is not None:
            for name, metrics in self.metrics.items():
                metrics.add(self._previous[1][name], self._previous[2])
            self._previous = None
        return {name: metrics.report() for name, metrics in self.metrics.items()}


def _percentiles(values: list[float]) -> dict[str, float]:
    result = {f"p{p}": round(float(np.percentile(values, p)), 2) for p in PERCENTILES}
    return {**result, "max": round(float(max(values)), 2)}


class _Run:
    """The state of one replay: processor, output bag, scorer and the numbers for the report."""

    def __init__(self, processor: StreamProcessor, bag: BagWriter, scorer: Scorer, stages: tuple[str, ...],
                 outputs: frozenset[str]) -> None:
        self.processor, self.bag, self.scorer, self.outputs = processor, bag, scorer, outputs
        self.stage_ms: dict[str, list[float]] = {stage: [] for stage in (*stages, "total")}
        self.registration_ms: list[float] = []  # registration's own time, in its thread
        self.call_ms: list[float] = []  # conversion + pipeline + output messages, per output
        self.end_to_end_ms: list[float] = []  # realtime: arrival → output, including the wait in the slot
        self.size: list[int] | None = None

    def process(self, msg: Any, time_ns: int, now: float | None = None) -> float:
        """Process one message and write its outputs at ``time_ns``; returns the time it took (s)."""
        start = time.perf_counter()
        outcome = self.processor.process(msg, now=now, outputs=self.outputs)
        elapsed = time.perf_counter() - start
        if isinstance(outcome, StreamOutput):
            self._write(outcome, time_ns, 1000.0 * elapsed)
        return elapsed

    def _write(self, out: StreamOutput, time_ns: int, call_ms: float) -> None:
        for name in OUTPUTS:
            msg = getattr(out, name)
            if msg is not None:
                self.bag.write(f"{OUTPUT_NAMESPACE}/{name}", time_ns, msg)
        if self.call_ms:  # the first call includes one-off warm-up costs
            for stage, values in self.stage_ms.items():
                values.append(out.result.timings_ms.get(stage, 0.0))
            if out.result.registration_ms is not None:
                self.registration_ms.append(out.result.registration_ms)
        self.call_ms.append(call_ms)
        self.size = self.size or list(out.frame.shape[:2])
        masks = {"output": out.result.mask}
        if isinstance(out.result, SegmenterResult):
            masks["input"] = out.result.input_mask
        else:
            masks["image"] = out.result.image_mask
        self.scorer.add(out.frame, masks, out.stamp_ns)


class _Realtime:
    """The node's policy on the bag's clock: one worker, a newest-frame slot, measured processing times."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.busy_until = -np.inf
        self.waiting: tuple[Any, int] | None = None

    def _start(self, msg: Any, time_ns: int, start: float) -> None:
        outputs = self.run.processor.outputs
        elapsed = self.run.process(msg, time_ns, now=start)
        self.busy_until = start + elapsed
        if self.run.processor.outputs > outputs:
            self.run.end_to_end_ms.append(1000.0 * (self.busy_until - time_ns * 1e-9))

    def arrive(self, msg: Any, time_ns: int) -> None:
        """A message arrives at bag time ``time_ns``: start it, keep it in the slot, or drop the one waiting."""
        arrival = time_ns * 1e-9
        if self.waiting is not None and self.busy_until <= arrival:
            waiting, self.waiting = self.waiting, None
            self._start(*waiting, self.busy_until)
        if arrival >= self.busy_until:
            self._start(msg, time_ns, arrival)
            return
        if self.waiting is not None:
            self.run.processor.skip(SUPERSEDED, "a newer frame arrived while the worker was busy",
                                    self.waiting[1])
        self.waiting = (msg, time_ns)

    def finish(self) -> None:
        """Process the frame still waiting in the slot."""
        if self.waiting is not None:
            waiting, self.waiting = self.waiting, None
            self._start(*waiting, max(self.busy_until, waiting[1] * 1e-9))


def run_replay(cfg: SspConfig, in_bag: Path, out_bag: Path, topic: str = "/camera/image_raw",
               mode: str = "deterministic", labels: str | None = None, report_dir: Path | None = None,
               overwrite: bool = False, progress: bool = True, segmenter: Path | None = None) -> dict:
    """Replay ``topic`` of ``in_bag`` through the pipeline (or the ONNX segmenter of the YAML ``segmenter`` and
    the stabiliser over it) into ``out_bag``; writes the report into ``report_dir`` (default: ``<out_bag>_report``
    beside it) and returns it."""
    if mode not in MODES:
        raise SspError(f"--mode: expected one of {', '.join(MODES)}, got {mode!r}")
    in_bag, out_bag = Path(in_bag), Path(out_bag)
    if out_bag.resolve() == in_bag.resolve():
        raise SspError(f"{out_bag}: the output bag would replace the input bag; choose another --out")
    report_dir = report_dir or out_bag.with_name(f"{out_bag.stem}_report")
    pipeline, classes, about = _pipeline(cfg, segmenter)
    stabilised = isinstance(pipeline, SegmenterPipeline)
    outputs = segmenter_pipeline.OUTPUTS if stabilised else frozenset(OUTPUTS)
    if not cfg.node.publish_similarity:
        outputs -= {"similarity"}
    started = time.perf_counter()
    with open_bag(in_bag) as reader:
        connections = topic_connections(reader, topic, in_bag)
        truth = load_labels(reader, in_bag, topic, labels)
        with BagWriter(out_bag, overwrite) as bag:
            processor = StreamProcessor(pipeline, classes, bag.messages, cfg.node)
            scorer = Scorer(classes, truth, ("output", "input") if stabilised else ("output", "image"))
            run = _Run(processor, bag, scorer, segmenter_pipeline.STAGES if stabilised else STAGES, outputs)
            realtime = _Realtime(run) if mode == "realtime" else None
            messages = 0
            total = sum(c.msgcount for c in connections)
            for record in tqdm(records(reader, connections, in_bag), total=total, desc="replay", unit="msg",
                               disable=not progress):
                messages += 1
                try:
                    msg = reader.deserialize(record.raw, record.connection.msgtype)
                except AnyReaderError as err:
                    processor.skip(CORRUPT, f"{topic} record at bag time {record.time_ns} ns: {err}")
                    continue
                bag.write_raw(topic, record.connection.msgtype, record.time_ns, record.raw)
                if realtime is None:
                    run.process(msg, record.time_ns)
                else:
                    realtime.arrive(msg, record.time_ns)
            if realtime is not None:
                realtime.finish()
    report = _report(about, classes, in_bag, out_bag, topic, mode, messages, run, truth, time.perf_counter() - started)
    report["report_dir"] = str(report_dir)
    _write_report(report_dir, report)
    return report


def _pipeline(cfg: SspConfig, segmenter: Path | None) -> tuple[Pipeline | SegmenterPipeline, ClassSet, dict]:
    """What processes the frames, its classes, and what the report says of it: our model's pipeline, or the
    segmenter of the YAML ``segmenter`` and the stabiliser over it (checked against its YAML before any bag opens)."""
    if segmenter is not None:
        pipeline = SegmenterPipeline(cfg, segmenter)
        about = {"segmenter": str(segmenter), "segmenter_output": pipeline.segmenter.spec.output}
        return pipeline, pipeline.classes, about
    classes = load_class_set(cfg.model.dataset)
    backend = make_backend(cfg, classes.num_classes)
    value = trained_on(cfg.model.weights, cfg.runtime.export_dir)
    about = {"backend": backend.name, "weights": cfg.model.weights, "trained_on": value,
             "trained_on_line": trained_on_line(value, untrained=cfg.model.weights is None)}
    return Pipeline(cfg, backend, keep_image_mask=True), classes, about


def _scores(scores: dict) -> dict:
    """The report's metrics of one scored mask."""
    return {key: scores[key] for key in ("miou", "tc", "flicker", "change_rate", "iou_per_class", "class_share",
                                         "tc_per_pair")}


def _report(about: dict, classes: ClassSet, in_bag: Path, out_bag: Path, topic: str, mode: str, messages: int,
            run: _Run, truth: Labels, wall_s: float) -> dict:
    scores = run.scorer.report()
    latency = {stage: _percentiles(v) for stage, v in run.stage_ms.items() if v}
    median_total = latency.get("total", {}).get("p50")
    report = {
        "input": str(in_bag), "topic": topic, "output": str(out_bag), "mode": mode, **about,
        "classes": list(classes.names), "size": run.size,
        "messages": messages, "frames_out": run.processor.outputs,
        "skipped": dict(sorted(run.processor.skipped.items())),
        "last_problem": dict(sorted(run.processor.last_problem.items())),
        "resets": resets_after_start(run.processor.pipeline.propagator.resets),
        "labels": truth.source, "labelled_frames": run.scorer.labelled, "label_problems": truth.problems,
        **_scores(scores["output"]),
        "input_segmenter": _scores(scores["input"]) if "input" in scores else None,
        "image_model": _scores(scores["image"]) if "image" in scores else None,
        "latency_ms": latency,
        "registration_thread_ms": _percentiles(run.registration_ms) if run.registration_ms else None,
        "end_to_end_ms": _percentiles(run.end_to_end_ms) if run.end_to_end_ms else None,
        "fps": {"pipeline": round(1000.0 / median_total, 2) if median_total else None,
                "processing": round(1000.0 * len(run.call_ms) / sum(run.call_ms), 2) if run.call_ms else None},
        "wall_s": round(wall_s, 2),
        "output_topics": [f"{OUTPUT_NAMESPACE}/{name}" for name in OUTPUTS if name in run.outputs],
    }
    return report


def _markdown(report: dict) -> str:
    skipped = [f"| {reason} | {n} | {report['last_problem'].get(reason, '')} |"
               for reason, n in report["skipped"].items()] or ["| – | 0 | |"]
    resets = ", ".join(f"{reason}: {n}" for reason, n in report["resets"].items()) or "none"
    stages = list(report["latency_ms"])
    thread = report["registration_thread_ms"]
    lat = ["| | " + " | ".join(stages) + (" | registration, in its own thread |" if thread else " |"),
           "|---" * (len(stages) + 1 + bool(thread)) + "|"]
    for p in (*(f"p{p}" for p in PERCENTILES), "max"):
        lat.append(f"| {p} | " + " | ".join(cell(report["latency_ms"][s][p]) for s in stages)
                   + (f" | {cell(thread[p])} |" if thread else " |"))
    labels = (f"labels: {report['labels']} ({report['labelled_frames']} frames)" if report["labels"]
              else "no labels (mIoU needs --labels)")
    what = (f"segmenter {report['segmenter']} ({report['segmenter_output']}), stabilised" if "segmenter" in report
            else f"backend {report['backend']}, weights {report['weights']}")
    models = _models(report)
    unlabelled = [] if report["labelled_frames"] else [
        "No labels: TC and the change rate say how steady the masks are, not whether they are right: a steady wrong "
        "class scores as well as a right one. Judge the classes by the class shares below and by /ssp/overlay.", ""]
    return "\n".join([
        f"# ssp replay: {report['input']} {report['topic']}", "",
        f"Mode {report['mode']}, {what}; {labels}. "
        f"Output bag: {report['output']} ({', '.join(report['output_topics'])}).", "",
        *([report["trained_on_line"], ""] if "trained_on_line" in report else []), *unlabelled,
        "| messages | frames out | FPS (pipeline) | FPS (processing) |", "|---|---|---|---|",
        f"| {report['messages']} | {report['frames_out']} | {cell(report['fps']['pipeline'])} | "
        f"{cell(report['fps']['processing'])} |", "",
        "| | mIoU | TC | flicker | change rate |", "|---|---|---|---|---|",
        *(f"| {name} | {cell(m['miou'])} | {cell(m['tc'])} | {cell(m['flicker'])} | {cell(m['change_rate'])} |"
          for name, m in models.items()), "",
        "TC and the change rate (label-free flicker: the share of flow-tracked pixels whose class changes between "
        "frames) use DIS optical flow between consecutive frames; TC alone rewards over-smoothing, read it next to "
        "mIoU.", "",
        "Share of pixels per class (percent):", "",
        *class_share_table(report["classes"], {name: m["class_share"] for name, m in models.items()}), "",
        f"Resets after the stream's start: {resets}.", "",
        "Skipped messages:", "", "| reason | count | last detail |", "|---|---|---|", *skipped, "",
        "Latency per stage (ms):", "", *lat, "",
    ])


def _models(report: dict) -> dict[str, dict]:
    """The scored masks by their name in the report: the input segmenter and the stabilised labels, or the image
    model and SSP (the output's metrics are the report's own)."""
    if report["input_segmenter"] is not None:
        return {"input segmenter": report["input_segmenter"], "stabilised": report}
    return {"image model": report["image_model"], "SSP": report}


def _write_report(folder: Path, report: dict) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SspError(f"{folder}: cannot create the report folder ({err.strerror})") from None
    (folder / "report.json").write_text(json.dumps(report, indent=2))
    (folder / "report.md").write_text(_markdown(report))
    plot_tc_over_time(folder / "tc_over_time.png", {
        name if m["tc"] is None else f"{name} (TC {m['tc']:.1f})": m["tc_per_pair"]
        for name, m in _models(report).items()})

"""The training recipe schema: typed dataclasses with a comment on each default, loaded strictly from YAML.

``load_train_config(path)`` reads a recipe such as ``config/train/default.yaml``; unknown keys, wrong types
and out-of-range values raise ``ConfigError`` naming the file and the dotted key, exactly as the runtime
configuration does (the same converter, ``ssp_ros.config.config_from_dict``). The resolved recipe is saved
as YAML next to each run's checkpoints (``to_dict``) and inside each checkpoint, where resuming compares it
(``RESUME_FREE_KEYS`` may differ).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from ssp_ros.config import ModelConfig
from ssp_ros.eval.flow import FlowName
from ssp_ros.resources import resolve_resource
from ssp_ros.schema import check_range, config_from_dict, load_section, read_yaml, require
from ssp_ros.synthetic.config import SyntheticConfig


@dataclass
class DataConfig:
    """Training frames: synthetic drone video generated in memory (the default) or a real data set on disk
    (``source``; layouts in ssp_train/datasets.py), and how frames pair up and are augmented."""

    source: Literal["synthetic", "uavid", "ruralscapes"] = "synthetic"  # where frames come from
    root: str | None = None  # real data sets: the folder holding the data set (required for them, unused otherwise)
    split: str = "train"  # real data sets: uavid train|val, ruralscapes train|test
    scenario: str | None = None  # synthetic: scenario YAML (path, or a name in config/scenarios/); None = `synthetic`
    synthetic: SyntheticConfig | None = None  # synthetic: inline scenario (keys of SyntheticConfig); None = default
    scenarios: tuple[str, ...] = ()  # synthetic: a mix of scenario files instead of one: the sequences are dealt
    # over them in turn (sequence i gets scenarios[i % n]; name one twice for a larger share) and validation runs
    # val_frames of each scenario once
    frame_size: tuple[int, int] | None = (384, 640)  # (H, W): synthetic frames are generated at it, real frames
    # resized to it (paper, UAVid: 1080×1920); None keeps the scenario's / the files' size
    sequences: int = 6  # synthetic: training sequences, one world and flight each
    first_seed: int = 1000  # synthetic: sequence i uses seed first_seed + i
    frames_per_sequence: int = 400  # synthetic: frames per sequence (~23 ms each at 384×640, + ~5 s world)
    frame_gap: tuple[int, int] = (1, 2)  # SSP pairs (k − gap, k), gap drawn uniformly from [min, max] (paper: 2)
    hflip: bool = True  # random horizontal flips (all frames of a clip flip together)
    jitter: tuple[float, float, float] = (0.0, 0.0, 0.0)  # brightness, contrast, saturation strengths s: factors
    # drawn from [1 − s, 1 + s] once per clip, the same for all its frames; 0 = off
    val_seed: int = 999  # synthetic: seed of the held-out validation sequence
    val_frames: int = 60  # synthetic: validation frames (mIoU, TC of image model vs SSP after each stage); 0 = none
    flow: FlowName = "dis"  # real video: flow estimator of the TC and KD losses
    # (synthetic video has exact flow)
    flow_weights: str | None = None  # real video: local RAFT weights file (raft, raft_small)
    flow_cache: str | None = None  # real video: `ssp flow-cache` folder, read (and filled) by training; None = on
    # the fly

    def __post_init__(self) -> None:
        synthetic = self.source == "synthetic"
        require(synthetic == (self.root is None), "root",
                "set it to the data set's folder" if not synthetic else "only real data sets (source) have a root")
        require(synthetic or (self.scenario is None and self.synthetic is None), "scenario",
                f"'scenario' and 'synthetic' describe generated video; source is '{self.source}'")
        require(synthetic or self.val_frames == 0, "val_frames",
                f"validation during training runs on synthetic video only; with source '{self.source}' set it to 0 "
                "(evaluate on the real validation split afterwards)")
        require(self.scenario is None or self.synthetic is None, "scenario",
                 "set either 'scenario' (a file) or 'synthetic' (inline), not both")
        require(not self.scenarios or (synthetic and self.scenario is None and self.synthetic is None), "scenarios",
                "a mix of scenario files replaces 'scenario' and 'synthetic' (set one of the three), and needs "
                "source 'synthetic'")
        require(len(self.scenarios) <= self.sequences, "scenarios",
                f"{len(self.scenarios)} scenarios need at least as many sequences (got {self.sequences})")
        require(self.flow == "dis" or self.flow_weights is not None, "flow_weights",
                f"flow '{self.flow}' needs a local weights file (no downloads at run time)")
        if self.frame_size is not None:
            h, w = self.frame_size
            require(16 <= h <= 4320 and 16 <= w <= 7680, "frame_size", f"expected 16..4320 × 16..7680, got {[h, w]}")
        check_range(self, "sequences", 1)
        check_range(self, "frames_per_sequence", 2)
        require(1 <= self.frame_gap[0] <= self.frame_gap[1], "frame_gap",
                 f"expected 1 <= min <= max, got {list(self.frame_gap)}")
        require(not synthetic or self.frame_gap[1] < self.frames_per_sequence, "frame_gap",
                 f"max gap {self.frame_gap[1]} needs more than {self.frames_per_sequence} frames per sequence")
        require(all(0.0 <= s < 1.0 for s in self.jitter), "jitter",
                f"strengths must be in [0, 1), got {list(self.jitter)}")
        check_range(self, "val_frames", 0)
        require(self.val_frames == 0 or self.val_seed not in self.seeds(), "val_seed",
                 f"{self.val_seed} is also a training seed (first_seed {self.first_seed}, {self.sequences} sequences)")

    def seeds(self) -> list[int]:
        """The training sequences' seeds."""
        return list(range(self.first_seed, self.first_seed + self.sequences))

    def resolve_scenario(self) -> SyntheticConfig:
        """The scenario the frames are generated from: file or inline or default (the first of a mix), with
        ``frame_size`` applied."""
        return self.resolve_scenarios()[0][1]

    def resolve_scenarios(self) -> list[tuple[str, SyntheticConfig]]:
        """(name, scenario) of each scenario the frames come from, with ``frame_size`` applied: the mix, or one."""
        if self.scenarios:
            found = [(Path(name).stem, load_section(SyntheticConfig, resolve_resource(name, "config/scenarios")))
                     for name in self.scenarios]
        elif self.scenario is not None:
            found = [(Path(self.scenario).stem,
                      load_section(SyntheticConfig, resolve_resource(self.scenario, "config/scenarios")))]
        else:
            found = [("inline" if self.synthetic else "default", self.synthetic or SyntheticConfig())]
        if self.frame_size is not None:
            found = [(name, replace(cfg, height=self.frame_size[0], width=self.frame_size[1])) for name, cfg in found]
        return found

    def sequence_plan(self) -> list[tuple[SyntheticConfig, int]]:
        """(scenario, seed) of each training sequence: seeds in order, scenarios dealt in turn."""
        scenarios = [cfg for _, cfg in self.resolve_scenarios()]
        return [(scenarios[i % len(scenarios)], seed) for i, seed in enumerate(self.seeds())]


@dataclass
class ImageStageConfig:
    """Stage 1: the image model (backbone + UPerNet) trained with cross-entropy on single labelled frames."""

    steps: int = 900  # optimiser steps; 0 = skip the stage (then model.weights should hold a trained model)
    batch_size: int = 8  # frames per step and process (the effective batch is × accumulate × processes)
    accumulate: int = 1  # micro-batches whose gradients add up to one optimiser step
    crop_size: int = 256  # random square crops (multiple of 32); 0 = whole frames
    lr: float = 1e-3  # peak AdamW learning rate (from scratch; the paper fine-tunes pretrained Hiera at 5e-5)
    weight_decay: float = 0.05  # AdamW weight decay (not on biases and norm weights), as the paper
    warmup_steps: int = 50  # linear warm-up, then cosine decay
    final_lr_ratio: float = 0.01  # the cosine ends at lr × this
    tc_weight: float = 0.0  # λ of the paper's TC loss on frame pairs (exact or estimated flow; paper: 0.5);
    # 0 = cross-entropy on single frames

    def __post_init__(self) -> None:
        _stage_checks(self)
        check_range(self, "lr", 0.0, open_low=True)
        check_range(self, "tc_weight", 0.0)


@dataclass
class SspStageConfig:
    """Stage 2: the similarity head on frame pairs (non-recursive, as in the paper) or short clips."""

    steps: int = 300  # optimiser steps; 0 = skip the stage
    batch_size: int = 8  # pairs (or clips) per step and process (the effective batch is × accumulate × processes)
    accumulate: int = 1  # micro-batches whose gradients add up to one optimiser step
    unroll: int = 1  # fusion steps per clip: 1 = the paper's pairs; n > 1 = clips of n + 1 frames where each
    # fused output is the next step's previous state, as at run time (the head then learns to trust it)
    tc_weight: float = 0.5  # λ of the temporal-consistency loss on the fused outputs (paper: 0.5); 0 = CE only
    movers_weight: float = 0.0  # extra cross-entropy weight on pixels the true camera motion does not explain (a
    # moving car and the trail a warp of the previous state leaves): each counts 1 + this; 0 = plain CE (paper)
    crop_size: int = 256  # the same random square crop of both frames (multiple of 32); 0 = whole frames
    lr: float = 1e-3  # peak learning rate of the similarity head
    lr_image: float = 0.0  # learning rate of the image model; 0 = frozen (eval mode, no gradients)
    weight_decay: float = 0.05  # AdamW weight decay (not on biases and norm weights)
    warmup_steps: int = 20  # linear warm-up, then cosine decay
    final_lr_ratio: float = 0.01  # the cosine ends at lr × this
    # ablations (config/train/ablation.yaml); the defaults are the paper's SSP
    similarity: Literal["learned", "pooled", "fixed", "cosine"] = "learned"  # the paper's head, the same head at
    # stride 8 (a quarter of its cost), one learned blend weight, or sigmoid(a·cos(features) + b)
    similarity_inputs: tuple[Literal["entropy", "validity"], ...] = ()  # extra inputs of the learned head
    registration: bool = True  # False = the identity homography between frames (camera assumed static)

    def __post_init__(self) -> None:
        _stage_checks(self)
        check_range(self, "lr", 0.0, open_low=True)
        check_range(self, "lr_image", 0.0)
        check_range(self, "unroll", 1, 8)
        check_range(self, "tc_weight", 0.0)
        check_range(self, "movers_weight", 0.0)
        require(self.similarity in ("learned", "pooled") or not self.similarity_inputs, "similarity_inputs",
                f"extra inputs need a learned head (learned, pooled), not similarity '{self.similarity}'")


@dataclass
class KdStageConfig:
    """Stage 3, KD-SSP: the whole student SSP model distilled from a larger teacher's logits on frame pairs
    (``L = KL(P_k, T^c_k) + prev_weight·KL(P_{k−1}, T^c_{k−1}) + tc_weight·L_tc``, fused teacher targets T^c
    from bidirectional flow and the occlusion mask). It starts from the model the earlier stages left."""

    steps: int = 0  # optimiser steps; 0 = skip the stage
    teacher: str | None = None  # teacher weights (image-model or SSP file; its metadata names the architecture)
    cache: str = "out/train/teacher_logits"  # teacher logits on disk: <cache>/<teacher hash>/<frame>.npz
    batch_size: int = 8  # pairs per step and process (the effective batch is × accumulate × processes)
    accumulate: int = 1  # micro-batches whose gradients add up to one optimiser step
    crop_size: int = 256  # the same random square crop of both frames (multiple of 32); 0 = whole frames
    temperature: float = 2.0  # softmax temperature of teacher targets and student (paper: 2)
    prev_weight: float = 1.0  # weight of the KL term on frame k − gap (the reference: 1.0)
    tc_weight: float = 0.5  # λ_kd of the TC loss on the fused output; 0 = distillation only
    lr: float = 1e-3  # peak learning rate of the similarity head
    lr_image: float = 2e-4  # learning rate of the student image model; 0 = frozen (then P_{k−1} has no gradient)
    weight_decay: float = 0.05  # AdamW weight decay (not on biases and norm weights)
    warmup_steps: int = 20  # linear warm-up, then cosine decay
    final_lr_ratio: float = 0.01  # the cosine ends at lr × this

    def __post_init__(self) -> None:
        _stage_checks(self)
        require(self.steps == 0 or self.teacher is not None, "teacher",
                "the KD stage needs the teacher's weights (train one with config/train/teacher.yaml)")
        require(bool(self.cache), "cache", "must not be empty")
        check_range(self, "temperature", 0.0, open_low=True)
        check_range(self, "prev_weight", 0.0)
        check_range(self, "tc_weight", 0.0)
        check_range(self, "lr", 0.0, open_low=True)
        check_range(self, "lr_image", 0.0)


@dataclass
class StabiliserStageConfig:
    """The stabiliser's own similarity model (appearance encoder + similarity head, ``ssp_ros.models.appearance``)
    on frame pairs: the SSP target (does the warped previous cell keep its class?) plus the cross-entropy of
    fusing simulated input segmenters' outputs with it (``ssp_train.input_segmenters``). Needs no image model."""

    steps: int = 0  # optimiser steps; 0 = skip the stage
    channels: int = 16  # C: the encoder's stride-4 feature channels (the head's width follows)
    batch_size: int = 8  # pairs per step and process
    accumulate: int = 1  # micro-batches whose gradients add up to one optimiser step
    crop_size: int = 256  # the same random square crop of both frames (multiple of 32); 0 = whole frames
    fusion_weight: float = 0.5  # weight of the fused cross-entropy next to the SSP target's binary cross-entropy
    movers_weight: float = 0.0  # extra weight of both terms on cells the true camera motion does not explain (moving
    # objects and what they uncover): a cell counts 1 + this × its share of such pixels; 0 = every cell alike
    lr: float = 3e-3  # peak AdamW learning rate (from scratch)
    weight_decay: float = 0.05  # AdamW weight decay (not on biases and norm weights)
    warmup_steps: int = 50  # linear warm-up, then cosine decay
    final_lr_ratio: float = 0.01  # the cosine ends at lr × this

    def __post_init__(self) -> None:
        _stage_checks(self)
        check_range(self, "channels", 2, 256)
        check_range(self, "fusion_weight", 0.0)
        check_range(self, "movers_weight", 0.0)
        check_range(self, "lr", 0.0, open_low=True)


def _stage_checks(stage: ImageStageConfig | SspStageConfig | KdStageConfig | StabiliserStageConfig) -> None:
    check_range(stage, "steps", 0)
    check_range(stage, "batch_size", 1)
    check_range(stage, "accumulate", 1)
    require(stage.crop_size >= 0 and stage.crop_size % 32 == 0, "crop_size",
             f"expected 0 (whole frames) or a positive multiple of 32, got {stage.crop_size}")
    check_range(stage, "weight_decay", 0.0)
    check_range(stage, "warmup_steps", 0)
    check_range(stage, "final_lr_ratio", 0.0, 1.0)


@dataclass
class OutputConfig:
    """Where a run writes: checkpoints, the resolved recipe, logs, and the final SSP weights."""

    dir: str = "runs/ssp_default"  # checkpoints, config.yaml, train_log.jsonl, segmenter.safetensors
    weights: str = "models/ssp_default.safetensors"  # final weights (fp16 parameters)
    model: Literal["ssp", "image", "stabiliser"] = "ssp"  # what the final weights hold: the SSP model, the image
    # model alone (a KD teacher: then the ssp and kd stages must be skipped), or the stabiliser's similarity model
    # (then only the stabiliser stage runs)
    max_weights_mb: float = 10.0  # refuse to start if the fp16 weights would be larger (MB = 10⁶ bytes); 0 = no limit
    checkpoint_every: int = 200  # steps between checkpoints (the last step always gets one)
    log_every: int = 25  # steps between log lines (the progress bar shows the running loss every step)
    resume: bool = False  # continue each stage from its checkpoint in `dir` (same recipe and process count)
    progress: bool = True  # tqdm progress bars

    def __post_init__(self) -> None:
        require(bool(self.dir), "dir", "must not be empty")
        require(self.weights.endswith(".safetensors"), "weights", f"must end in .safetensors, got {self.weights!r}")
        check_range(self, "max_weights_mb", 0.0)
        check_range(self, "checkpoint_every", 1)
        check_range(self, "log_every", 1)


@dataclass
class ComputeConfig:
    """Where the steps run. Several processes (data parallel, DDP) are started by ``torchrun``, not here."""

    device: str = "auto"  # "auto" (CUDA when available, else CPU), "cpu" or "cuda"; under torchrun each process
    # takes cuda:LOCAL_RANK. Processes talk over NCCL on CUDA, gloo on CPU
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast dtype of forward passes; fp16 adds gradient
    # scaling and needs CUDA; bf16 also runs on CPU
    num_workers: int = 0  # DataLoader worker processes per training process (0 = load in the training process)

    def __post_init__(self) -> None:
        require(re.fullmatch(r"auto|cpu|cuda", self.device) is not None, "device",
                f"expected 'auto', 'cpu' or 'cuda', got {self.device!r}")
        check_range(self, "num_workers", 0)


@dataclass
class TrainConfig:
    """A whole training recipe (config/train/*.yaml)."""

    model: ModelConfig = field(default_factory=ModelConfig)  # the model to train (model.weights = start from)
    data: DataConfig = field(default_factory=DataConfig)
    image: ImageStageConfig = field(default_factory=ImageStageConfig)
    ssp: SspStageConfig = field(default_factory=SspStageConfig)
    kd: KdStageConfig = field(default_factory=KdStageConfig)  # KD-SSP after the ssp stage (steps 0 = skipped)
    stabiliser: StabiliserStageConfig = field(default_factory=StabiliserStageConfig)  # output.model: stabiliser
    output: OutputConfig = field(default_factory=OutputConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    num_threads: int = 2  # torch.set_num_threads (per process)
    seed: int = 0  # torch / sampling seed (the video itself depends on data.first_seed only)

    def __post_init__(self) -> None:
        check_range(self, "num_threads", 1)
        require(self.output.model == "ssp" or (self.ssp.steps == 0 and self.kd.steps == 0), "output.model",
                "'image' saves the image model alone: set ssp.steps and kd.steps to 0 (their training would be lost)")
        stabiliser = self.output.model == "stabiliser"
        require(not stabiliser or self.image.steps == self.ssp.steps == self.kd.steps == 0, "output.model",
                "'stabiliser' trains the stabiliser's own model alone: set image.steps, ssp.steps and kd.steps to 0")
        require(stabiliser or self.stabiliser.steps == 0, "stabiliser.steps",
                "the stabiliser stage runs only with output.model: stabiliser (its model is saved alone)")


# Keys that may change when a run resumes from a checkpoint (how it runs, not what it trains).
RESUME_FREE_KEYS = frozenset({"output.resume", "output.progress", "output.log_every", "output.checkpoint_every",
                              "compute.device", "compute.num_workers", "num_threads"})


def load_train_config(path: str | Path) -> TrainConfig:
    """Read a training recipe; errors name the file and the dotted key."""
    return config_from_dict(TrainConfig, read_yaml(path), str(path))

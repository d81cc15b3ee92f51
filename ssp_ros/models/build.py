"""Factories from the typed config: ``build_segmenter`` / ``build_ssp``, and ``MODEL_BUILDERS`` by kind.

The input normalisation comes from timm's pretrained config of the backbone (what its checkpoints were
trained with). ``cfg.weights`` (the whole model) is loaded when set and makes ``cfg.backbone_weights``
redundant; otherwise ``cfg.backbone_weights`` initialises the backbone, or, without it, timm's pretrained
weights when ``cfg.pretrained`` (downloaded; offline an error says which file to get).
"""

from __future__ import annotations

from collections.abc import Callable

from timm.models import get_pretrained_cfg
from torch import nn

from ssp_ros.config import ModelConfig
from ssp_ros.models.segmenter import Segmenter
from ssp_ros.models.similarity_head import build_similarity
from ssp_ros.models.ssp import SSP
from ssp_ros.models.weights import load_weights, read_weights_metadata

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # fallback when timm has no pretrained config for the backbone
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalisation(backbone: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` of 0..1 RGB that timm's pretrained weights for ``backbone`` expect."""
    cfg = get_pretrained_cfg(backbone)
    if cfg is None:
        return IMAGENET_MEAN, IMAGENET_STD
    return tuple(cfg.mean or IMAGENET_MEAN), tuple(cfg.std or IMAGENET_STD)


def _segmenter(cfg: ModelConfig, num_classes: int, with_weights: bool) -> Segmenter:
    """The image model; its backbone initialised from ``cfg`` unless ``cfg.weights`` will overwrite it."""
    mean, std = normalisation(cfg.backbone)
    init = with_weights and cfg.weights is None
    checkpoint = cfg.backbone_weights if init else None
    pretrained = init and checkpoint is None and cfg.pretrained
    return Segmenter(cfg.backbone, num_classes, cfg.decoder_channels, mean, std, checkpoint, pretrained)


def build_segmenter(cfg: ModelConfig, num_classes: int, with_weights: bool = True) -> Segmenter:
    """The image model of ``cfg``; with ``with_weights``, ``cfg.weights`` / ``cfg.backbone_weights`` loaded."""
    model = _segmenter(cfg, num_classes, with_weights)
    if with_weights and cfg.weights is not None:
        load_weights(model, cfg.weights)
    return model


def build_ssp(cfg: ModelConfig, num_classes: int, with_weights: bool = True, similarity: str = "learned",
              similarity_inputs: tuple[str, ...] = ()) -> SSP:
    """Image model + similarity module of ``cfg``; with ``with_weights``, ``cfg.weights`` (SSP weights) or
    ``cfg.backbone_weights`` loaded.

    The similarity module is ``similarity`` / ``similarity_inputs`` (the paper's head by default), except when
    SSP weights are loaded: a weights file records its similarity module (the ablations train others), and
    that one is built.
    """
    load_whole = with_weights and cfg.weights is not None
    if load_whole:
        meta = read_weights_metadata(cfg.weights)
        if meta.get("kind") == "ssp":
            similarity = meta.get("similarity", "learned")
            similarity_inputs = tuple(meta.get("similarity_inputs", ()))
    segmenter = _segmenter(cfg, num_classes, with_weights)
    model = SSP(segmenter, build_similarity(similarity, segmenter.feature_channels, similarity_inputs))
    if load_whole:
        load_weights(model, cfg.weights)
    return model


MODEL_BUILDERS: dict[str, Callable[..., nn.Module]] = {"segmenter": build_segmenter, "ssp": build_ssp}

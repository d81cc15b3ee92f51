"""The encoder: any timm model built with ``features_only``, cut to the four levels at strides 4, 8, 16 and 32.

The backbone *reports* its widths and strides (read from timm's ``feature_info``), and the heads are built
from those numbers, so swapping ``mobilenetv3_large_100`` for ``resnet18`` or ``sam2_hiera_small`` edits no
constant. Weights start random (``pretrained=False``: no network); a local timm or SAM2 checkpoint can be
loaded on top.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import timm
import torch
from torch import nn

from ssp_ros.errors import SspError
from ssp_ros.models.weights import describe_key_mismatch, read_state_dict

LOG = logging.getLogger(__name__)

REDUCTIONS = (4, 8, 16, 32)  # the feature pyramid the heads expect, finest first

# An original SAM2 checkpoint (``sam2_hiera_s.pt``) keeps the Hiera trunk under ``image_encoder.trunk.`` and
# names the MLP layers differently from timm's Hiera.
_SAM2_TRUNK_PREFIX = "image_encoder.trunk."
_SAM2_RENAMES = ((re.compile(r"\.mlp\.layers\.0\."), ".mlp.fc1."), (re.compile(r"\.mlp\.layers\.1\."), ".mlp.fc2."))


def _pick_levels(name: str, reductions: list[int]) -> list[int]:
    """Positions of the levels with reductions 4, 8, 16, 32 (the deepest one when timm reports a stride twice)."""
    picked = []
    for wanted in REDUCTIONS:
        matches = [i for i, r in enumerate(reductions) if r == wanted]
        if not matches:
            raise SspError(f"backbone '{name}' has no feature level at stride {wanted} (timm reports strides "
                           f"{reductions}); the UPerNet head needs strides {list(REDUCTIONS)}")
        picked.append(matches[-1])
    return picked


def _to_timm_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Checkpoint keys in timm's naming: strip DDP's ``module.``, keep only a SAM2 checkpoint's Hiera trunk."""
    if any(k.startswith(_SAM2_TRUNK_PREFIX) for k in state):
        renamed = {}
        for key, value in state.items():
            if not key.startswith(_SAM2_TRUNK_PREFIX):
                continue  # SAM2's neck, prompt encoder, mask decoder and memory modules: not ours
            key = key[len(_SAM2_TRUNK_PREFIX):]
            for pattern, replacement in _SAM2_RENAMES:
                key = pattern.sub(replacement, key)
            renamed[key] = value
        state = renamed
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def pretrained_source(name: str) -> str:
    """Where timm gets ``name``'s pretrained weights: a Hugging Face model page, else the checkpoint's URL."""
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is not None and cfg.hf_hub_id:
        return f"model.safetensors of https://huggingface.co/{cfg.hf_hub_id}"
    if cfg is not None and cfg.url:
        return cfg.url
    return f"timm's pretrained weights of '{name}'"


def _create(name: str, pretrained: bool, out_indices: tuple[int, ...]) -> nn.Module:
    """timm's feature extractor; with ``pretrained``, a failed download (offline) is one ``SspError``."""
    try:
        return timm.create_model(name, pretrained=pretrained, features_only=True, out_indices=out_indices)
    except OSError as err:  # huggingface_hub's LocalEntryNotFoundError and urllib's URLError are OSErrors
        if not pretrained:
            raise
        raise SspError(f"backbone '{name}': model.pretrained is set but its weights cannot be downloaded "
                       f"({type(err).__name__}); download {pretrained_source(name)} and set "
                       "model.backbone_weights to the file's local path") from None


class Backbone(nn.Module):
    """A timm feature extractor returning four maps, at strides ``reductions`` with widths ``channels``.

    ``pretrained`` lets timm download its pretrained weights (``model.pretrained``; default off: no network).
    ``forward(x)``: N×3×H×W normalised image → list of 4 tensors N×channels[i]×H/reductions[i]×W/reductions[i].
    """

    def __init__(self, name: str, checkpoint: str | Path | None = None, pretrained: bool = False) -> None:
        super().__init__()
        self.name = name
        try:
            with torch.device("meta"):  # probe: what levels does timm offer? (meta: no memory, no init cost)
                probe = timm.create_model(name, pretrained=False, features_only=True)
        except RuntimeError as err:
            if "Unknown model" not in str(err):
                raise
            raise SspError(f"unknown timm backbone '{name}' (see timm.list_models())") from None
        levels = _pick_levels(name, probe.feature_info.reduction())
        out_indices = tuple(probe.feature_info.out_indices[i] for i in levels)
        self.body = _create(name, pretrained, out_indices)
        self.channels: list[int] = list(self.body.feature_info.channels())
        self.reductions: list[int] = list(self.body.feature_info.reduction())
        if self.reductions != list(REDUCTIONS):  # timm kept other levels than asked: refuse rather than mis-wire
            raise SspError(f"backbone '{name}': asked timm for strides {list(REDUCTIONS)}, got {self.reductions}")
        cfg = getattr(self.body, "pretrained_cfg", None) or {}
        self.mean: tuple[float, ...] = tuple(cfg.get("mean", (0.485, 0.456, 0.406)))  # of 0..1 RGB, as timm
        self.std: tuple[float, ...] = tuple(cfg.get("std", (0.229, 0.224, 0.225)))
        if checkpoint is not None:
            self.load_checkpoint(checkpoint)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body(x))

    def load_checkpoint(self, path: str | Path) -> None:
        """Load a timm or SAM2 checkpoint (``.safetensors`` or ``.pt``/``.pth``, possibly under a ``model`` or
        ``state_dict`` key) into the feature extractor.

        Keys that ``features_only`` drops (classifier, final norm, SAM2's decoders) are ignored; any missing
        or shape-mismatched backbone key raises ``SspError`` listing the first few.
        """
        state, _ = read_state_dict(path)
        state = _to_timm_keys(state)
        own = self.body.state_dict()
        # timm's FeatureGetterNet (Hiera, ViTs) keeps the wrapped model under ``model.``
        if own and all(k.startswith("model.") for k in own) and not any(k.startswith("model.") for k in state):
            state = {"model." + k: v for k, v in state.items()}
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        mismatched = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
                      for k, v in own.items() if k in state and state[k].shape != v.shape]
        if missing or mismatched:
            raise SspError(f"{path}: not a checkpoint of backbone '{self.name}': "
                           + describe_key_mismatch(missing, unexpected, mismatched))
        if unexpected:
            LOG.info("%s: ignored %d keys the feature extractor does not use (e.g. %s)",
                     path, len(unexpected), ", ".join(unexpected[:3]))
        self.body.load_state_dict({k: state[k].to(v.dtype) for k, v in own.items()})

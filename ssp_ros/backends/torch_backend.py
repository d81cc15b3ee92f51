"""The torch backend: eager PyTorch on CPU or CUDA, the reference for the exported runtimes."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from ssp_ros.backends.cpu_warp import StateWarper, use_cpu_warp
from ssp_ros.config import ModelConfig
from ssp_ros.models import SSP, build_ssp
from ssp_ros.resources import resolve_data_path


def resolve_weights(cfg: ModelConfig) -> ModelConfig:
    """``cfg`` with a relative ``weights`` path resolved against the working folder, then the package's
    share folder (where ``models/`` is installed), so ``models/ssp_default.safetensors`` works anywhere."""
    if cfg.weights is None:
        return cfg
    return dataclasses.replace(cfg, weights=str(resolve_data_path(cfg.weights, "model.weights", "model weights file")))


class TorchBackend:
    """Runs an ``SSP`` model (segmenter + similarity head) with torch, state kept on ``device``.

    ``cpu_warp`` (default: on the CPU, with an OpenCV that warps at float precision) warps the previous state
    with OpenCV (``cpu_warp.py``, faster than torch's CPU ``grid_sample``) before the similarity head;
    otherwise ``grid_sample`` warps it.
    """

    name = "torch"

    def __init__(self, model: SSP, input_size: tuple[int, int], device: str = "cpu",
                 cpu_warp: bool | None = None) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self._warper = StateWarper() if use_cpu_warp(cpu_warp, self.device.type == "cpu") else None
        # the fusion step: without the warp after an OpenCV warp, else with grid_sample inside
        step = model.warp_fusion_step() if self._warper is None else model.fusion_step()
        self.fusion = step.to(self.device).eval()
        self.input_size = input_size
        self.num_classes = model.segmenter.num_classes

    @classmethod
    def from_config(cls, model_cfg: ModelConfig, num_classes: int, device: str = "cpu") -> TorchBackend:
        model = build_ssp(resolve_weights(model_cfg), num_classes)
        return cls(model, model_cfg.input_size, device)

    @torch.inference_mode()
    def segment(self, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(image).to(self.device).permute(2, 0, 1)[None].float()
        return self.model.segmenter(x)

    @torch.inference_mode()
    def fuse(self, cur_logits: torch.Tensor, cur_feats: torch.Tensor, prev_logits: torch.Tensor,
             prev_feats: torch.Tensor, to_previous: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        if self._warper is not None:
            warped = self._warper(prev_logits.numpy(), prev_feats.numpy(), to_previous)
            return self.fusion(cur_logits, cur_feats, *(torch.from_numpy(a) for a in warped))
        h = torch.as_tensor(to_previous, dtype=torch.float32, device=self.device)[None]
        fused, s, _ = self.fusion(cur_logits, cur_feats, prev_logits, prev_feats, h)
        return fused, s

    def _upsample(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)

    @torch.inference_mode()
    def labels(self, logits: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        probs = self._upsample(logits).softmax(dim=1)[0]
        confidence, ids = probs.max(dim=0)
        return (ids.to(torch.uint8).cpu().numpy(),
                (confidence * 255.0 + 0.5).to(torch.uint8).cpu().numpy())

    @torch.inference_mode()
    def similarity(self, s: torch.Tensor) -> np.ndarray:
        return (self._upsample(s)[0, 0] * 255.0 + 0.5).clamp(0, 255).to(torch.uint8).cpu().numpy()

    def synchronize(self) -> None:
        """Wait for the kernels queued on a CUDA device (a no-op on the CPU, where calls return when done)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def close(self) -> None:
        """Nothing to free explicitly: the model's memory goes with the last reference to the backend."""

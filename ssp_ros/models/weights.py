"""Whole-model weights: safetensors with metadata, and careful loading with errors the user can act on.

A weights file records what it was trained for (``kind``: "segmenter" or "ssp", ``backbone``, ``num_classes``,
``decoder_channels``) so that loading it into a model built from a different config fails with a sentence
("weights were trained for backbone resnet18, config says mobilenetv3_large_100") instead of a wall of
missing keys. Parameters may be stored as float16 (half the file, for shipping); buffers (BatchNorm
statistics, the input normalisation) stay float32. ``.pt``/``.pth`` files are read with
``torch.load(weights_only=True)`` only: no pickled code is ever run.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssp_ros.errors import SspError

FORMAT = "ssp_ros.weights/1"  # written into every file we save
CHECKED_KEYS = ("backbone", "num_classes", "decoder_channels", "similarity", "similarity_inputs")  # must match
TORCH_SUFFIXES = (".pt", ".pth")
_LIST_LIMIT = 5  # how many offending keys an error message names


def describe_key_mismatch(missing: list[str], unexpected: list[str], mismatched: list[str]) -> str:
    """One sentence naming the first few missing, unexpected and shape-mismatched keys."""
    parts = []
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape-mismatched", mismatched)):
        if keys:
            more = f", ... ({len(keys) - _LIST_LIMIT} more)" if len(keys) > _LIST_LIMIT else ""
            listed = ", ".join(keys[:_LIST_LIMIT])
            parts.append(f"{len(keys)} {what} key{'s' if len(keys) > 1 else ''} ({listed}{more})")
    return "; ".join(parts) if parts else "keys match"


def _decode_metadata(raw: dict[str, str] | None) -> dict[str, Any]:
    """safetensors metadata is str -> str; we store JSON values. Foreign files keep their plain strings."""
    out: dict[str, Any] = {}
    for key, value in (raw or {}).items():
        try:
            out[key] = json.loads(value)
        except (TypeError, ValueError):
            out[key] = value
    return out


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a loaded ``.pt``: a plain state dict, or one under ``state_dict``/``model``/``model_state``."""
    if not isinstance(obj, dict):
        raise SspError(f"{path}: expected a state dict (a mapping of names to tensors), found {type(obj).__name__}")
    for key in ("state_dict", "model", "model_state"):
        inner = obj.get(key)
        if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            return inner
    odd = [k for k, v in obj.items() if not isinstance(v, torch.Tensor) and k != "metadata"]
    if odd:
        raise SspError(f"{path}: not a state dict: entries {', '.join(map(str, odd[:_LIST_LIMIT]))} are not tensors")
    return {k: v for k, v in obj.items() if k != "metadata"}


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(tensors, metadata)`` of a ``.safetensors`` or ``.pt``/``.pth`` file, on the CPU.

    Raises ``SspError`` naming the path for a missing, unreadable, corrupt or non-tensor file.
    """
    path = Path(path)
    if not path.is_file():
        raise SspError(f"{path}: weights file not found")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                metadata = _decode_metadata(f.metadata())
                names = f.keys()
                tensors = {name: f.get_tensor(name) for name in names}
        except Exception as err:  # noqa: BLE001 - safetensors raises several types for a damaged file
            raise SspError(f"{path}: corrupt or unreadable safetensors file ({type(err).__name__}: {err})") from None
        return tensors, metadata
    if suffix in TORCH_SUFFIXES:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - unpickling errors come in many types
            pickled = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
            if pickled:
                raise SspError(f"{path}: holds a pickled object ({pickled.group(1)}), not only tensors; files are "
                               "read with torch.load(weights_only=True): re-save with "
                               "torch.save(model.state_dict())") from None
            raise SspError(f"{path}: corrupt or unreadable torch file ({type(err).__name__}: {err})") from None
        metadata = obj.get("metadata") if isinstance(obj, dict) else None
        return _unwrap(obj, path), dict(metadata) if isinstance(metadata, dict) else {}
    raise SspError(f"{path}: unknown weights format '{suffix}' (expected .safetensors, .pt or .pth)")


def read_weights_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of a weights file (empty for a bare ``.pt`` state dict), e.g. to build the matching model."""
    path = Path(path)
    if path.suffix.lower() == ".safetensors" and path.is_file():
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                return _decode_metadata(f.metadata())
        except Exception as err:  # noqa: BLE001 - see read_state_dict
            raise SspError(f"{path}: corrupt or unreadable safetensors file ({type(err).__name__}: {err})") from None
    return read_state_dict(path)[1]


def _describe(model: nn.Module) -> dict[str, Any]:
    describe = getattr(model, "describe", None)
    return dict(describe()) if callable(describe) else {}


def save_weights(model: nn.Module, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s state dict to a ``.safetensors`` file (atomically) and return its path.

    The model's own description (kind, backbone, num_classes, decoder_channels) is recorded; ``metadata``
    adds JSON-serialisable entries (dataset, class names, training run...) and may repeat the description,
    which must then agree with the model. ``metadata["fp16"] = True`` stores the parameters as float16.
    """
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise SspError(f"{path}: weights are saved as .safetensors (got '{path.suffix}')")
    meta = _describe(model)
    for key, value in (metadata or {}).items():
        if key in meta and meta[key] != value:
            raise SspError(f"{path}: metadata says {key}={value!r} but the model has {key}={meta[key]!r}")
        meta[key] = value
    fp16 = bool(meta.get("fp16", False))
    meta["fp16"] = fp16
    meta["format"] = FORMAT
    params = {name for name, _ in model.named_parameters()}
    tensors = {}
    for name, value in model.state_dict().items():
        value = value.detach().to("cpu")
        if fp16 and name in params and value.is_floating_point():
            value = value.to(torch.float16)
        tensors[name] = value.contiguous().clone()  # clone: safetensors refuses tensors that share memory
    try:
        encoded = {key: json.dumps(value) for key, value in meta.items()}
    except TypeError as err:
        raise SspError(f"{path}: metadata must be JSON-serialisable ({err})") from None
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        save_file(tensors, str(tmp), metadata=encoded)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise SspError(f"{path}: cannot write weights ({err.strerror or err})") from None
    return path


def load_weights(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load a ``.safetensors`` or ``.pt``/``.pth`` file into ``model`` (in place) and return the file's metadata.

    Checks, each failing with ``SspError`` naming ``path``: the file exists and is readable; its metadata
    (when it has any) matches the model's backbone, num_classes and decoder_channels; every key is present
    with the right shape (the first few offenders are listed). float16-stored weights load into float32
    models. SSP weights load into a bare ``Segmenter`` (the similarity head is dropped); image-model weights
    must be loaded into ``ssp.segmenter`` explicitly, since the similarity head would stay untrained.
    """
    tensors, meta = read_state_dict(path)
    want = _describe(model)
    file_kind, model_kind = meta.get("kind"), want.get("kind")
    if file_kind == "ssp" and model_kind == "segmenter":
        tensors = {k[len("segmenter."):]: v for k, v in tensors.items() if k.startswith("segmenter.")}
    elif file_kind == "segmenter" and model_kind == "ssp":
        raise SspError(f"{path}: holds image-model (segmenter) weights but the model is SSP: load them into "
                       "model.segmenter (the similarity head then starts untrained)")
    elif file_kind is not None and model_kind is not None and file_kind != model_kind:
        raise SspError(f"{path}: weights are of kind '{file_kind}', the model is '{model_kind}'")
    differences = [f"{key} {meta[key]}, config says {want[key]}"
                   for key in CHECKED_KEYS if key in meta and key in want and meta[key] != want[key]]
    if differences:
        raise SspError(f"{path}: weights were trained for {'; '.join(differences)}")
    own = model.state_dict()
    missing = [k for k in own if k not in tensors]
    unexpected = [k for k in tensors if k not in own]
    mismatched = [f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(v.shape)}"
                  for k, v in own.items() if k in tensors and tensors[k].shape != v.shape]
    if missing or unexpected or mismatched:
        mismatch = describe_key_mismatch(missing, unexpected, mismatched)
        raise SspError(f"{path}: weights do not fit the model: {mismatch}")
    model.load_state_dict({k: tensors[k].to(v.dtype) for k, v in own.items()})
    return meta

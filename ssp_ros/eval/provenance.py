"""What a model was trained on, said in the reports of unlabelled video (``ssp demo --input``, ``ssp replay``).

On a user's own footage there are no labels: TC and the change rate say how steady the masks are, never whether
they are right, and SSP makes a wrong class steady as readily as a right one. So the reports say what the weights
saw in training, from the ``trained_on`` that ``ssp train`` writes into the weights file's metadata (or that
``ssp export`` copies into ``export.json``). Our shipped model has seen synthetic worlds only, and says so.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from ssp_ros.errors import SspError
from ssp_ros.resources import resolve_data_path

SYNTHETIC = "ssp_ros.synthetic"  # ``trained_on`` of weights trained on the synthetic worlds (ssp_train)
HEADER_LIMIT = 100_000_000  # bytes: safetensors' own cap on the JSON header


def safetensors_metadata(path: Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file (str → str), read from its header without torch.

    The format is an 8-byte little-endian header length, then the header as JSON (safetensors' spec); the base
    install, which runs the export on ONNX Runtime, has no safetensors package, and only these few bytes are
    needed."""
    try:
        with path.open("rb") as f:
            size = struct.unpack("<Q", f.read(8))[0]
            if size > HEADER_LIMIT:
                raise ValueError(f"header of {size} bytes")
            header = json.loads(f.read(size))
    except (OSError, struct.error, ValueError) as err:
        raise SspError(f"{path}: not a readable safetensors file ({err})") from None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return metadata if isinstance(metadata, dict) else {}


def _json_or_plain(value: str) -> object:
    """ssp_train stores metadata values as JSON; a foreign file's plain string stays as it is."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def _found(path: str | None) -> Path | None:
    """``path`` resolved as the config resolves it (here, else under the share dir); None when it is not there."""
    try:
        return None if path is None else resolve_data_path(path, "", "")
    except SspError:
        return None


def trained_on(weights: str | None, export_dir: str | None = None) -> str | None:
    """What the model was trained on: the weights file's ``trained_on`` (a ``.safetensors`` file), else the export
    folder's (``export.json``); None when neither says (or neither is there: the report then says it is not
    recorded rather than failing after the run)."""
    path = _found(weights)
    if path is not None and path.suffix.lower() == ".safetensors":
        value = safetensors_metadata(path).get("trained_on")
        if value is not None:
            return str(_json_or_plain(value))
    folder = _found(export_dir)
    if folder is not None and (folder / "export.json").is_file():
        value = json.loads((folder / "export.json").read_text()).get("trained_on")
        return str(value) if value is not None else None
    return None


def trained_on_line(value: str | None, untrained: bool = False) -> str:
    """The report's sentence on what the model was trained on, with what that means on real footage."""
    if untrained:
        return "Trained on: nothing (model.weights is not set): an untrained model's classes mean nothing."
    if value is None:
        return ("Trained on: not recorded in the weights: check that its classes fit this footage before trusting "
                "them; TC and the change rate cannot tell.")
    if value == SYNTHETIC:
        return ("Trained on: synthetic worlds only (ssp_ros.synthetic): its classes on real footage are not "
                "reliable, and TC and the change rate cannot tell a steady wrong class from a right one; "
                "`ssp stabilise` steadies your own segmenter instead.")
    return f"Trained on: {value}."

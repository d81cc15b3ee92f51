"""Where the package's data files (config/, models/, launch/) live, however it was installed.

A source checkout or ``pip install -e`` keeps them beside the ``ssp_ros`` package; ``pip install`` and
``colcon build`` install them as data files under ``<prefix>/share/ssp_ros``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ssp_ros.errors import SspError

_SOURCE_ROOT = Path(__file__).resolve().parent.parent


def share_dir() -> Path:
    """The directory that holds ``config/``; the source tree wins over an installed copy."""
    candidates = [_SOURCE_ROOT, Path(sys.prefix) / "share" / "ssp_ros"]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory("ssp_ros")))
    except Exception:  # noqa: BLE001 - ament_index is optional; any failure means "not a ROS install"
        pass
    for root in candidates:
        if (root / "config" / "ssp.yaml").is_file():
            return root
    raise SspError(f"ssp_ros data files not found (looked for config/ssp.yaml in {', '.join(map(str, candidates))})")


def resolve_resource(name_or_path: str | Path, folder: str, suffix: str = ".yaml") -> Path:
    """A path as given if it exists, else ``<share>/<folder>/<name><suffix>``.

    ``folder`` is relative to the share dir, e.g. ``config/datasets`` for a dataset name.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    candidate = share_dir() / folder / f"{name_or_path}{suffix}"
    if candidate.is_file():
        return candidate
    known = sorted(p.stem for p in (share_dir() / folder).glob(f"*{suffix}"))
    raise SspError(f"{name_or_path}: no such file, and not a known name in {folder}/ (known: {', '.join(known)})")


def resolve_data_path(path: str | Path, key: str, what: str) -> Path:
    """``path`` as given if it exists (relative to the working folder), else under the share dir, where
    ``models/`` is installed; so ``models/...`` in config/ssp.yaml works from anywhere. The error names
    the config ``key`` and ``what`` was looked for."""
    given = Path(path)
    if given.exists():
        return given
    installed = share_dir() / given
    if not given.is_absolute() and installed.exists():
        return installed
    raise SspError(f"{path}: {what} not found ({key}; looked here and in {share_dir()})")

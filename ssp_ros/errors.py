"""The project's one error type, so callers catch our failures without catching everyone's; and the error for a
missing optional package, which names the extra that installs it."""

import importlib.util
import sys


class SspError(Exception):
    """A failure the user can act on: the message names the file, key, topic or value at fault."""


class ConfigError(SspError):
    """A configuration file or value is invalid."""


class FrameError(SspError, ValueError):
    """A camera frame that cannot be processed (wrong type, shape, dtype or size): the caller counts it and goes
    on. Also a ValueError, as numpy and OpenCV callers expect for a malformed array."""


def package_installed(module: str) -> bool:
    """Whether the top-level package ``module`` is there to import: found, not imported (importing torch takes
    seconds). ``find_spec`` raises ValueError for a module already imported without a spec: it is there."""
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:
        return sys.modules.get(module) is not None


def require_package(module: str, extra: str, what: str) -> None:
    """Raise an ``SspError`` saying that ``what`` needs ``module`` and which extra of ssp_ros installs it, when
    ``module`` cannot be imported here (checked before work starts, not minutes into it)."""
    if not package_installed(module):
        raise SspError(f"{what} needs the {module} package: pip install 'ssp_ros[{extra}]' (in a clone of the "
                       f"repository: pip install -e '.[{extra}]')")

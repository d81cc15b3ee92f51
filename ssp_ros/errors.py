"""The project's one error type, so callers catch our failures without catching everyone's."""


class SspError(Exception):
    """A failure the user can act on: the message names the file, key, topic or value at fault."""


class ConfigError(SspError):
    """A configuration file or value is invalid."""


class FrameError(SspError, ValueError):
    """A camera frame that cannot be processed (wrong type, shape, dtype or size): the caller counts it and goes
    on. Also a ValueError, as numpy and OpenCV callers expect for a malformed array."""

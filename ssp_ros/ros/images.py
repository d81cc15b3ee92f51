"""ROS image messages ⇄ numpy frames, without ROS: the conversions the node and bag replay share.

Messages are read by duck typing (``encoding``, ``height``, ``width``, ``step``, ``is_bigendian``, ``data``
for sensor_msgs/Image; ``format``, ``data`` for CompressedImage; ``header.stamp.sec/nanosec``), so the same
code takes rclpy messages on the drone and rosbags messages in replay and tests. Every problem raises
``MessageError`` with a short ``reason`` (for counters) and a message naming the encoding or field.

16-bit images are stretched to 8 bits per frame (min → 0, max → 255), as image viewers show them: a
12-bit sensor in a 16-bit container would be nearly black after a plain shift.

Compressed images are decoded with Pillow, not OpenCV: Pillow reads the header first, so a frame larger than
``max_pixels`` (a PNG of a few hundred KB can hold 12000×12000 pixels) is refused before any pixel is decoded,
and it reports a corrupt stream as an exception where OpenCV's libpng and libjpeg print a line on stderr for
every bad frame, past any throttling.
"""

from __future__ import annotations

import array
import io
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np
from PIL import Image as PilImage
from PIL import UnidentifiedImageError

from ssp_ros.errors import FrameError

UNSUPPORTED_ENCODING = "unsupported encoding"
EMPTY_IMAGE = "empty image"
BAD_STEP = "step too small"
SHORT_DATA = "data too short"
BAD_DATA = "unreadable data field"
CONVERSION_FAILED = "conversion failed"
UNDECODABLE = "undecodable compressed image"
TRUNCATED_JPEG = "truncated JPEG"
BAD_STAMP = "invalid stamp"
TOO_LARGE = "too many pixels"

JPEG_SOI, JPEG_EOI = b"\xff\xd8", b"\xff\xd9"


class MessageError(FrameError):
    """An image message that cannot become a frame; ``reason`` is a short category for counters."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Encoding:
    """How a sensor_msgs/Image encoding is laid out and turned into RGB."""

    channels: int
    depth: int  # bytes per channel: 1 or 2 (unsigned), 4 (float)
    to_rgb: int | None  # cv2.cvtColor code to RGB (after 16-bit data is stretched to 8 bits); None: already RGB


_GREY = cv2.COLOR_GRAY2RGB
# OpenCV names Bayer patterns by the 2×2 block starting at the second row and column (cv_bridge's table).
_BAYER = {"rggb": cv2.COLOR_BayerBG2RGB, "bggr": cv2.COLOR_BayerRG2RGB, "gbrg": cv2.COLOR_BayerGR2RGB,
          "grbg": cv2.COLOR_BayerGB2RGB}
ENCODINGS: dict[str, Encoding] = {
    "rgb8": Encoding(3, 1, None), "bgr8": Encoding(3, 1, cv2.COLOR_BGR2RGB),
    "rgba8": Encoding(4, 1, cv2.COLOR_RGBA2RGB), "bgra8": Encoding(4, 1, cv2.COLOR_BGRA2RGB),
    "mono8": Encoding(1, 1, _GREY), "8UC1": Encoding(1, 1, _GREY),
    "rgb16": Encoding(3, 2, None), "bgr16": Encoding(3, 2, cv2.COLOR_BGR2RGB),
    "rgba16": Encoding(4, 2, cv2.COLOR_RGBA2RGB), "bgra16": Encoding(4, 2, cv2.COLOR_BGRA2RGB),
    "mono16": Encoding(1, 2, _GREY), "16UC1": Encoding(1, 2, _GREY),
    "yuv422": Encoding(2, 1, cv2.COLOR_YUV2RGB_UYVY), "uyvy": Encoding(2, 1, cv2.COLOR_YUV2RGB_UYVY),
    "yuv422_yuy2": Encoding(2, 1, cv2.COLOR_YUV2RGB_YUY2), "yuyv": Encoding(2, 1, cv2.COLOR_YUV2RGB_YUY2),
    **{f"bayer_{p}{bits}": Encoding(1, bits // 8, code) for p, code in _BAYER.items() for bits in (8, 16)},
}


def stamp_ns(header: Any) -> int:
    """A header's stamp in integer nanoseconds; MessageError if ``nanosec`` is outside [0, 1e9)."""
    sec, nanosec = int(header.stamp.sec), int(header.stamp.nanosec)
    if not 0 <= nanosec < 1_000_000_000:
        raise MessageError(BAD_STAMP, f"header.stamp.nanosec {nanosec} is outside [0, 1e9)")
    return sec * 1_000_000_000 + nanosec


def stamp_seconds(header: Any) -> float:
    """A header's stamp in seconds (float), for the pipeline's time rules."""
    return stamp_ns(header) * 1e-9


def _buffer(data: Any, what: str) -> np.ndarray:
    """The raw bytes of a ``data`` field (numpy array, bytes, bytearray, array.array) as a flat uint8 array."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise MessageError(BAD_DATA, f"{what}.data is a {data.dtype} array, expected uint8")
        return data.reshape(-1)
    try:
        return np.frombuffer(data, np.uint8)
    except (TypeError, ValueError):
        raise MessageError(BAD_DATA, f"{what}.data is a {type(data).__name__}, not a byte buffer") from None


def check_pixels(what: str, width: int, height: int, max_pixels: int | None) -> None:
    """MessageError (``TOO_LARGE``) if a ``width``×``height`` frame has more than ``max_pixels`` pixels."""
    if max_pixels is not None and width * height > max_pixels:
        raise MessageError(TOO_LARGE, f"{what} is {width}x{height} = {width * height} pixels, more than "
                                      f"node.max_pixels {max_pixels}")


def image_pixels(msg: Any, max_pixels: int | None = None, layout: Encoding | None = None) -> np.ndarray:
    """A sensor_msgs/Image's pixels in its own layout: H×W (one channel) or H×W×C, uint8 or uint16 (float32 for a
    ``layout`` of depth 4) in native order. ``layout`` is the encoding's, default the one ``ENCODINGS`` gives.

    Honours ``step`` (row padding) and ``is_bigendian``; checks sizes (and ``max_pixels``) before touching the
    data.
    """
    encoding = str(msg.encoding)
    layout = layout or ENCODINGS.get(encoding)
    if layout is None:
        raise MessageError(UNSUPPORTED_ENCODING, f"Image encoding '{encoding}' is not supported "
                                                 f"(supported: {', '.join(ENCODINGS)})")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise MessageError(EMPTY_IMAGE, f"Image ({encoding}) is {height}x{width}: height and width must be > 0")
    check_pixels(f"Image ({encoding})", width, height, max_pixels)
    row = width * layout.channels * layout.depth
    if step < row:
        raise MessageError(BAD_STEP, f"Image ({encoding}, {height}x{width}): step {step} < width × channels × "
                                     f"bytes = {row}")
    data = _buffer(msg.data, "Image")
    if data.size < height * step:
        raise MessageError(SHORT_DATA, f"Image ({encoding}, {height}x{width}, step {step}): data has {data.size} "
                                       f"bytes, needs height × step = {height * step}")
    rows = data[: height * step].reshape(height, step)[:, :row]
    if layout.depth > 1:
        order = ">" if msg.is_bigendian else "<"
        wide = {2: (f"{order}u2", np.uint16), 4: (f"{order}f4", np.float32)}[layout.depth]
        rows = np.ascontiguousarray(rows).view(np.dtype(wide[0])).astype(wide[1])
    shape = (height, width) if layout.channels == 1 else (height, width, layout.channels)
    return rows.reshape(shape).copy()  # our own writable memory, not a view of the message's buffer


def to_8bit(pixels: np.ndarray) -> np.ndarray:
    """uint8 as is; uint16 (or int32) stretched per frame so its min → 0 and max → 255 (a flat frame → 0)."""
    if pixels.dtype == np.uint8:
        return pixels
    return cv2.normalize(pixels, None, 0, 255, cv2.NORM_MINMAX, dtype=cv2.CV_8U)


def image_to_rgb(msg: Any, max_pixels: int | None = None) -> np.ndarray:
    """A sensor_msgs/Image in any supported encoding → H×W×3 uint8 RGB."""
    pixels = image_pixels(msg, max_pixels)
    layout = ENCODINGS[str(msg.encoding)]
    try:
        pixels = to_8bit(pixels)
        return pixels if layout.to_rgb is None else cv2.cvtColor(pixels, layout.to_rgb)
    except cv2.error as err:
        raise MessageError(CONVERSION_FAILED, f"Image ({msg.encoding}, {msg.height}x{msg.width}): OpenCV cannot "
                                              f"convert it to RGB ({err.err})") from None


def compressed_to_rgb(msg: Any, max_pixels: int | None = None) -> np.ndarray:
    """A sensor_msgs/CompressedImage (JPEG, PNG, anything Pillow decodes) → H×W×3 uint8 RGB.

    The header's size is checked against ``max_pixels`` before decoding. A JPEG without its end-of-image
    marker is refused: libjpeg would decode it with a grey lower part. 16-bit grey PNGs are stretched to 8 bits
    as ``mono16`` Images are.
    """
    fmt = str(msg.format)
    data = _buffer(msg.data, "CompressedImage")
    what = f"CompressedImage (format '{fmt}', {data.size} bytes)"
    if "compresseddepth" in fmt.lower():
        raise MessageError(UNDECODABLE, f"CompressedImage format '{fmt}' is a depth image, not a camera image")
    if data.size == 0:
        raise MessageError(UNDECODABLE, f"CompressedImage (format '{fmt}') has no data")
    head, tail = data[:2].tobytes(), data[-64:].tobytes().rstrip(b"\0")
    if head == JPEG_SOI and not tail.endswith(JPEG_EOI):
        raise MessageError(TRUNCATED_JPEG, f"{what}: JPEG has no end-of-image marker (truncated)")
    try:
        with warnings.catch_warnings():  # Pillow's own bomb warning: a frame that size is refused below anyway
            warnings.simplefilter("error", PilImage.DecompressionBombWarning)
            image = PilImage.open(io.BytesIO(data))
    except (PilImage.DecompressionBombWarning, PilImage.DecompressionBombError) as err:
        raise MessageError(TOO_LARGE, f"{what} has more pixels than node.max_pixels {max_pixels}: {err}") from None
    except UnidentifiedImageError:
        raise MessageError(UNDECODABLE, f"{what}: Pillow cannot read it as an image (it starts with "
                                        f"{data[:8].tobytes()!r})") from None
    except (OSError, ValueError, SyntaxError) as err:
        raise MessageError(UNDECODABLE, f"{what}: cannot read its header ({err})") from None
    with image:
        check_pixels(f"{what}, {image.format}", *image.size, max_pixels)
        try:
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16- or 32-bit grey: stretched, as mono16
                return cv2.cvtColor(to_8bit(np.asarray(image).astype(np.int32)), cv2.COLOR_GRAY2RGB)
            return np.asarray(image.convert("RGB"))
        except (OSError, ValueError, SyntaxError, EOFError) as err:
            raise MessageError(UNDECODABLE, f"{what}, {image.format} {image.size[0]}x{image.size[1]}: cannot "
                                            f"decode it ({err})") from None


def is_compressed(msg: Any) -> bool:
    """True for a CompressedImage (it has ``format``), False for an Image."""
    return hasattr(msg, "format")


def message_to_rgb(msg: Any, fallback: Callable[[Any], np.ndarray] | None = None,
                   max_pixels: int | None = None) -> np.ndarray:
    """An Image or CompressedImage → H×W×3 uint8 RGB; ``fallback`` (e.g. cv_bridge on the drone) converts
    Image encodings missing from ``ENCODINGS`` and must raise MessageError itself. A frame of more than
    ``max_pixels`` pixels is refused (MessageError ``TOO_LARGE``) before it is converted or decoded."""
    if is_compressed(msg):
        return compressed_to_rgb(msg, max_pixels)
    if fallback is not None and str(msg.encoding) not in ENCODINGS:
        check_pixels(f"Image ({msg.encoding})", int(msg.width), int(msg.height), max_pixels)
        return fallback(msg)
    return image_to_rgb(msg, max_pixels)


def image_fields(pixels: np.ndarray, encoding: str) -> dict[str, Any]:
    """The sensor_msgs/Image fields (all but header and data) of an H×W or H×W×C uint8 or uint16 array in native
    byte order, unpadded."""
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    bigendian = int(pixels.itemsize > 1 and sys.byteorder == "big")
    return {"height": height, "width": width, "encoding": encoding, "is_bigendian": bigendian,
            "step": width * channels * pixels.itemsize}


def rgb_to_bgr(rgb: np.ndarray) -> np.ndarray:
    """H×W×3 RGB → contiguous BGR (the bgr8 overlay RViz shows)."""
    return np.ascontiguousarray(rgb[..., ::-1])


class MessageFactory(Protocol):
    """Builds output sensor_msgs/Image messages in one message library (rclpy's or rosbags')."""

    def image(self, header: Any, pixels: np.ndarray, encoding: str) -> Any:
        """An Image with ``header`` (the input frame's) holding ``pixels`` (uint8, or uint16 for mono16) in
        ``encoding``."""


class RosbagsMessages:
    """Output messages as rosbags dataclasses of ``typestore`` (bag replay, tests)."""

    def __init__(self, typestore: Any) -> None:
        types = typestore.types
        self.typestore = typestore
        self._image = types["sensor_msgs/msg/Image"]
        self._header = types["std_msgs/msg/Header"]
        self._time = types["builtin_interfaces/msg/Time"]

    def header(self, header: Any) -> Any:
        """A copy of ``header`` (from any typestore) as this typestore's std_msgs/Header."""
        stamp = self._time(sec=int(header.stamp.sec), nanosec=int(header.stamp.nanosec))
        return self._header(stamp=stamp, frame_id=str(header.frame_id))

    def image(self, header: Any, pixels: np.ndarray, encoding: str) -> Any:
        return self._image(header=self.header(header), **image_fields(pixels, encoding),
                           data=np.ascontiguousarray(pixels).view(np.uint8).reshape(-1))


def rclpy_image_data(pixels: np.ndarray) -> array.array:
    """``pixels`` as the ``array('B')`` rclpy's uint8[] fields accept without a per-element check."""
    return array.array("B", np.ascontiguousarray(pixels).tobytes())

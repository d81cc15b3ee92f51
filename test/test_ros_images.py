import array
import struct
import zlib

import cv2
import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from ssp_ros.config import MAX_PIXELS_4K
from ssp_ros.ros.images import (
    BAD_DATA,
    BAD_STAMP,
    BAD_STEP,
    EMPTY_IMAGE,
    ENCODINGS,
    SHORT_DATA,
    TOO_LARGE,
    TRUNCATED_JPEG,
    UNDECODABLE,
    UNSUPPORTED_ENCODING,
    MessageError,
    RosbagsMessages,
    image_pixels,
    message_to_rgb,
    rclpy_image_data,
    stamp_ns,
    stamp_seconds,
)

TS = get_typestore(Stores.ROS2_HUMBLE)
Image = TS.types["sensor_msgs/msg/Image"]
CompressedImage = TS.types["sensor_msgs/msg/CompressedImage"]
Header = TS.types["std_msgs/msg/Header"]
Time = TS.types["builtin_interfaces/msg/Time"]


def header(sec: int = 12, nanosec: int = 345) -> Header:
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id="cam")


def smooth_rgb(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)
    blurred = cv2.GaussianBlur(noise, (0, 0), 4)
    return cv2.normalize(blurred, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


def image(pixels: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> Image:
    """An Image message of ``pixels`` (uint8 or uint16), rows padded by ``pad`` bytes."""
    h, w = pixels.shape[:2]
    dtype = pixels.dtype.newbyteorder(">" if bigendian else "<")
    rows = pixels.astype(dtype).reshape(h, -1).view(np.uint8)
    padded = np.concatenate([rows, np.full((h, pad), 7, np.uint8)], axis=1)
    return Image(header=header(), height=h, width=w, encoding=encoding, is_bigendian=int(bigendian),
                 step=padded.shape[1], data=padded.reshape(-1))


def compressed(data: bytes, fmt: str = "jpeg") -> CompressedImage:
    return CompressedImage(header=header(), format=fmt, data=np.frombuffer(data, np.uint8))


@pytest.mark.parametrize("encoding, make", [
    ("rgb8", lambda rgb: rgb),
    ("bgr8", lambda rgb: rgb[..., ::-1]),
    ("rgba8", lambda rgb: np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])),
    ("bgra8", lambda rgb: np.dstack([rgb[..., ::-1], np.zeros(rgb.shape[:2], np.uint8)])),
])
@pytest.mark.parametrize("pad", [0, 5])
def test_colour_encodings_give_the_same_rgb(encoding: str, make, pad: int) -> None:
    rgb = smooth_rgb()
    out = message_to_rgb(image(np.ascontiguousarray(make(rgb)), encoding, pad))
    np.testing.assert_array_equal(out, rgb)


def test_mono8_becomes_grey_rgb() -> None:
    grey = smooth_rgb()[..., 0]
    out = message_to_rgb(image(grey, "mono8", pad=3))
    assert out.shape == (*grey.shape, 3)
    np.testing.assert_array_equal(out[..., 1], grey)


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
def test_16_bit_is_stretched_to_8_bit_in_either_byte_order(encoding: str, bigendian: bool) -> None:
    values = np.linspace(1000, 5000, 40 * 50).reshape(40, 50).astype(np.uint16)  # a 12-bit range
    out = message_to_rgb(image(values, encoding, pad=2, bigendian=bigendian))
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255, "min → 0 and max → 255"
    assert np.all(np.diff(out[..., 0].reshape(-1).astype(int)) >= 0), "order is kept"


def test_rgb16_keeps_colours() -> None:
    rgb = smooth_rgb().astype(np.uint16) * 256
    out = message_to_rgb(image(rgb, "rgb16", bigendian=True))
    assert np.abs(out.astype(int) - smooth_rgb()).max() <= 1


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_patterns_demosaic_to_the_original(pattern: str) -> None:
    rgb = smooth_rgb(64, 80)
    channel = {"r": 0, "g": 1, "b": 2}
    raw = np.zeros(rgb.shape[:2], np.uint8)
    for k, colour in enumerate(pattern):
        dy, dx = divmod(k, 2)
        raw[dy::2, dx::2] = rgb[dy::2, dx::2, channel[colour]]
    out = message_to_rgb(image(raw, f"bayer_{pattern}8"))
    assert np.abs(out.astype(int) - rgb).mean() < 3, "a wrong pattern gives errors of 25+ grey levels"


def test_yuv422_grey_frame() -> None:
    uyvy = np.zeros((8, 16, 2), np.uint8)
    uyvy[..., 0], uyvy[..., 1] = 128, 100  # U/V neutral, Y = 100
    out = message_to_rgb(image(uyvy, "yuv422"))
    assert out.shape == (8, 16, 3) and np.abs(out.astype(int) - out[0, 0, 0]).max() <= 1


@pytest.mark.parametrize("change, reason, text", [
    (dict(encoding="32FC1"), UNSUPPORTED_ENCODING, "Image encoding '32FC1' is not supported"),
    (dict(height=0), EMPTY_IMAGE, "is 0x64"),
    (dict(width=0), EMPTY_IMAGE, "is 48x0"),
    (dict(step=100), BAD_STEP, "step 100 < width × channels × bytes = 192"),
    (dict(height=49), SHORT_DATA, r"data has 9216 bytes, needs height × step = 9408"),
    (dict(data=np.zeros(4, np.float32)), BAD_DATA, "float32 array"),
])
def test_bad_image_messages_name_the_field(change: dict, reason: str, text: str) -> None:
    msg = image(smooth_rgb(), "rgb8")
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(MessageError, match=text) as err:
        message_to_rgb(msg)
    assert err.value.reason == reason


def test_unknown_encoding_goes_to_the_fallback() -> None:
    msg = image(smooth_rgb(), "rgb8")
    msg.encoding = "8UC3"
    out = message_to_rgb(msg, fallback=lambda m: np.zeros((2, 2, 3), np.uint8))
    assert out.shape == (2, 2, 3)
    assert message_to_rgb(image(smooth_rgb(), "rgb8"), fallback=lambda m: None).shape == (48, 64, 3)


def test_compressed_jpeg_and_png_decode() -> None:
    rgb = smooth_rgb()
    ok, jpeg = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert np.abs(message_to_rgb(compressed(jpeg.tobytes())).astype(int) - rgb).mean() < 3
    ok, png = cv2.imencode(".png", rgb[..., ::-1])
    np.testing.assert_array_equal(message_to_rgb(compressed(png.tobytes(), "png")), rgb)


@pytest.mark.parametrize("cut, reason", [(0.5, TRUNCATED_JPEG), (0.99, TRUNCATED_JPEG)])
def test_truncated_jpeg_is_refused(cut: float, reason: str) -> None:
    ok, jpeg = cv2.imencode(".jpg", smooth_rgb()[..., ::-1])
    with pytest.raises(MessageError, match="no end-of-image marker") as err:
        message_to_rgb(compressed(jpeg.tobytes()[: int(cut * len(jpeg))]))
    assert err.value.reason == reason


@pytest.mark.parametrize("data, fmt, text", [
    (b"", "jpeg", "has no data"),
    (b"not an image at all", "png", "Pillow cannot read it as an image"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "png", "Pillow cannot read it as an image"),
    (b"\x00" * 20, "16UC1; compressedDepth", "depth image"),
])
def test_undecodable_compressed_images(data: bytes, fmt: str, text: str) -> None:
    with pytest.raises(MessageError, match=text) as err:
        message_to_rgb(compressed(data, fmt))
    assert err.value.reason == UNDECODABLE


def _corrupt(data: bytes, at: int) -> bytes:
    """``data`` with 40 bytes from ``at`` overwritten."""
    return data[:at] + bytes(range(40)) + data[at + 40:]


@pytest.mark.parametrize("ext, fmt", [(".png", "png"), (".jpg", "jpeg")])
def test_a_corrupt_compressed_image_is_refused_without_printing(ext: str, fmt: str, capfd) -> None:
    """OpenCV's libpng and libjpeg print a line on stderr per corrupt frame, past any throttle: the decoder we use
    reports it as an exception, which the node counts and logs throttled. The PNG is cut in its pixel stream,
    the JPEG in its first Huffman table."""
    rng = np.random.default_rng(0)
    ok, data = cv2.imencode(ext, rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    data = data.tobytes()
    at = data.index(b"\xff\xc4") + 4 if fmt == "jpeg" else len(data) // 2
    with pytest.raises(MessageError, match="cannot decode it") as err:
        message_to_rgb(compressed(_corrupt(data, at), fmt))
    assert err.value.reason == UNDECODABLE
    assert capfd.readouterr().err == ""


def test_a_jpeg_corrupt_in_its_pixels_decodes_without_printing(capfd) -> None:
    """libjpeg conceals damage in the entropy-coded data (OpenCV does the same, with a line on stderr): the frame
    is decoded and nothing is printed."""
    rng = np.random.default_rng(0)
    ok, data = cv2.imencode(".jpg", rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    data = data.tobytes()
    assert message_to_rgb(compressed(_corrupt(data, len(data) // 2), "jpeg")).shape == (96, 128, 3)
    assert capfd.readouterr().err == ""


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming ``width``×``height`` grey pixels whose only pixel data is 16 bytes of garbage."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", bytes(range(16))) + _chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [5000, 12000])
def test_a_decompression_bomb_is_refused_from_its_header(side: int) -> None:
    """5000² and 12000² (what a 421 KB PNG can hold; past Pillow's own bomb limit too): refused as too large from
    the header alone; the pixel data is garbage, so any attempt to decode it would fail as undecodable instead."""
    msg = compressed(_png_header_only(side, side), "png")
    with pytest.raises(MessageError, match=f"{side * side} pixels.*node.max_pixels 8847360|node.max_pixels "
                                           f"8847360.*{side * side} pixels") as err:
        message_to_rgb(msg, max_pixels=MAX_PIXELS_4K)
    assert err.value.reason == TOO_LARGE
    with pytest.raises(MessageError) as err:  # within the limit, the same kind of file goes on to the decoder
        message_to_rgb(compressed(_png_header_only(64, 48), "png"), max_pixels=MAX_PIXELS_4K)
    assert err.value.reason == UNDECODABLE


def test_a_real_4k_png_fits_the_default_limit_and_one_pixel_more_does_not() -> None:
    ok, png = cv2.imencode(".png", np.zeros((2160, 4096), np.uint8))
    assert message_to_rgb(compressed(png.tobytes(), "png"), max_pixels=MAX_PIXELS_4K).shape == (2160, 4096, 3)
    with pytest.raises(MessageError) as err:
        message_to_rgb(compressed(png.tobytes(), "png"), max_pixels=MAX_PIXELS_4K - 1)
    assert err.value.reason == TOO_LARGE


def test_a_raw_image_over_the_limit_is_refused_before_its_data_is_read() -> None:
    msg = image(smooth_rgb(), "rgb8")
    msg.data = b""  # never read: the size check comes first
    with pytest.raises(MessageError, match="64x48 = 3072 pixels") as err:
        message_to_rgb(msg, max_pixels=3071)
    assert err.value.reason == TOO_LARGE
    msg.encoding = "8UC3"  # an encoding for the fallback (cv_bridge): checked before it too
    with pytest.raises(MessageError) as err:
        message_to_rgb(msg, fallback=lambda m: pytest.fail("the fallback ran"), max_pixels=3071)
    assert err.value.reason == TOO_LARGE


def test_a_16_bit_grey_png_is_stretched_as_mono16() -> None:
    grey = np.tile(np.linspace(1000, 1255, 64).astype(np.uint16), (48, 1))
    ok, png = cv2.imencode(".png", grey)
    out = message_to_rgb(compressed(png.tobytes(), "png"))
    assert out.shape == (48, 64, 3)
    assert out.min() == 0 and out.max() == 255  # a plain shift to 8 bits would give 3..4 everywhere


def test_stamps() -> None:
    assert stamp_ns(header(3, 500_000_000)) == 3_500_000_000
    assert stamp_seconds(header(3, 500_000_000)) == pytest.approx(3.5)
    with pytest.raises(MessageError, match="nanosec 1000000000 is outside") as err:
        stamp_ns(header(3, 1_000_000_000))
    assert err.value.reason == BAD_STAMP


def test_output_messages_keep_the_header_and_serialise() -> None:
    factory = RosbagsMessages(get_typestore(Stores.ROS2_JAZZY))
    rgb = smooth_rgb()
    msg = factory.image(header(7, 9), rgb[..., ::-1].copy(), "bgr8")
    raw = factory.typestore.serialize_cdr(msg, msg.__msgtype__)
    back = TS.deserialize_cdr(raw, "sensor_msgs/msg/Image")
    assert (back.header.stamp.sec, back.header.stamp.nanosec, back.header.frame_id) == (7, 9, "cam")
    assert (back.height, back.width, back.step, back.encoding) == (48, 64, 192, "bgr8")
    np.testing.assert_array_equal(message_to_rgb(back), rgb)


def test_rclpy_data_is_an_unsigned_byte_array() -> None:
    mask = np.arange(12, dtype=np.uint8).reshape(3, 4)
    data = rclpy_image_data(mask[:, ::2])
    assert isinstance(data, array.array) and data.typecode == "B" and list(data) == [0, 2, 4, 6, 8, 10]


def test_every_encoding_converts_a_well_formed_message() -> None:
    for name, layout in ENCODINGS.items():
        pixels = np.full((8, 8, layout.channels), 3, np.uint16 if layout.depth == 2 else np.uint8)
        out = message_to_rgb(image(pixels.squeeze(-1) if layout.channels == 1 else pixels, name))
        assert out.shape == (8, 8, 3) and out.dtype == np.uint8, name
    assert image_pixels(image(np.zeros((2, 3), np.uint16), "mono16")).dtype == np.uint16


@pytest.mark.parametrize("wrap", [bytes, bytearray, lambda b: array.array("B", b)])
def test_rclpy_style_data_buffers(wrap) -> None:
    rgb = smooth_rgb()
    msg = image(rgb, "rgb8", pad=1)
    msg.data = wrap(msg.data.tobytes())
    out = message_to_rgb(msg)
    np.testing.assert_array_equal(out, rgb)
    assert out.flags.writeable

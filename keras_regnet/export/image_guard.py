"""Refuse decompression bombs: read an encoded image's declared size from its header before decoding it.

A 140 KB PNG can declare 12000x12000 pixels; decoding it and converting it to float costs gigabytes. Both the
Python helper (:func:`check_image_bytes`, for ``keras-regnet predict`` and other callers that decode files) and the
in-graph guard of the SavedModel's ``serving_bytes`` signature (:func:`tf_check_image_bytes`) read the width and
height from the header (JPEG SOF via ``tf.image.extract_jpeg_shape``, PNG IHDR, GIF logical screen, BMP DIB
header, WebP VP8/VP8L/VP8X) and refuse images with more than ``max_pixels`` pixels (default
:data:`DEFAULT_MAX_PIXELS`, 40 megapixels) before any pixel is decoded. JPEG XL and unknown formats are refused.

Not covered: the frames of an animated GIF are not counted (the check uses the GIF's logical screen size).
"""

from __future__ import annotations

import struct

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "FORMATS",
    "ImageTooLargeError",
    "image_size",
    "check_image_bytes",
    "check_max_pixels",
    "tf_check_image_bytes",
]

DEFAULT_MAX_PIXELS = 40_000_000
FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WebP")

_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"
# JPEG start-of-frame markers (C0-CF except DHT C4, JPG C8, DAC CC) hold the frame's height and width.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class ImageTooLargeError(ValueError):
    """An encoded image declares more pixels than allowed: refused before decoding."""


def check_max_pixels(max_pixels):
    """``max_pixels`` as a positive int, else ValueError."""
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive integer, got {max_pixels!r}.")
    return max_pixels


def _jpeg_size(data):
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError("corrupt JPEG: no marker where one is expected")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01,) or 0xD0 <= marker <= 0xD8:  # standalone markers
            pos += 2
            continue
        if marker == 0xD9:
            break
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if marker in _SOF:
            if pos + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            return height, width
        pos += 2 + length
    raise ValueError("truncated JPEG: no frame header (SOF) found")


def image_size(data: bytes):
    """``(format, height, width)`` declared by the header of the encoded image ``data`` (nothing is decoded).

    Raises ValueError for data that is not a JPEG, PNG, GIF, BMP or WebP file, or whose header is truncated.
    """
    data = bytes(data)
    head = data[:32] + b"\0" * max(0, 32 - len(data))
    if data.startswith(_JPEG):
        return ("JPEG", *_jpeg_size(data))
    if data.startswith(_PNG):
        if len(data) < 24 or head[12:16] != b"IHDR":
            raise ValueError("truncated PNG: no IHDR header")
        width, height = struct.unpack(">II", head[16:24])
        return "PNG", height, width
    if data.startswith(b"GIF8"):
        if len(data) < 10:
            raise ValueError("truncated GIF header")
        width, height = struct.unpack("<HH", head[6:10])
        return "GIF", height, width
    if data.startswith(b"BM"):
        if len(data) < 26:
            raise ValueError("truncated BMP header")
        (dib,) = struct.unpack("<I", head[14:18])
        if dib == 12:
            width, height = struct.unpack("<HH", head[18:22])
        else:
            width, height = struct.unpack("<ii", head[18:26])
        return "BMP", abs(height), abs(width)
    if data.startswith(b"RIFF") and head[8:12] == b"WEBP":
        chunk = head[12:16]
        if len(data) < 30:
            raise ValueError("truncated WebP header")
        if chunk == b"VP8X":
            width = 1 + int.from_bytes(head[24:27], "little")
            height = 1 + int.from_bytes(head[27:30], "little")
        elif chunk == b"VP8L":
            bits = int.from_bytes(head[21:25], "little")
            width, height = 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
        elif chunk == b"VP8 ":
            width = int.from_bytes(head[26:28], "little") & 0x3FFF
            height = int.from_bytes(head[28:30], "little") & 0x3FFF
        else:
            raise ValueError(f"unknown WebP chunk {chunk!r}")
        return "WebP", height, width
    if data.startswith(b"\xff\x0a") or data[4:12] == b"JXL \r\n\x87\n":
        raise ValueError("JPEG XL images are not accepted (their size cannot be checked before decoding)")
    raise ValueError(f"not a {', '.join(FORMATS[:-1])} or {FORMATS[-1]} image")


def check_image_bytes(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, what: str = "image"):
    """Check the encoded image ``data`` before decoding it: return ``(height, width)`` or raise.

    Raises :class:`ImageTooLargeError` (a ValueError) when the header declares more than ``max_pixels`` pixels, and
    ValueError when ``data`` is not an image of a supported format. ``what`` names the image in the message (e.g.
    its path).
    """
    check_max_pixels(max_pixels)
    try:
        fmt, height, width = image_size(data)
    except ValueError as e:
        raise ValueError(f"{what}: {e}.") from None
    if height * width > max_pixels:
        raise ImageTooLargeError(
            f"{what}: the {fmt} declares {width}x{height} pixels ({height * width / 1e6:.1f} megapixels), more than "
            f"the limit of {max_pixels} pixels; refused before decoding (raise max_pixels / --max-pixels if the "
            "image is genuine)."
        )
    return height, width


def tf_check_image_bytes(data, max_pixels: int = DEFAULT_MAX_PIXELS):
    """In-graph twin of :func:`check_image_bytes` for one scalar string tensor: returns the assertion op.

    Run the decoder under ``tf.control_dependencies([tf_check_image_bytes(data, max_pixels)])``: an image above the
    limit, or bytes of no supported format, fail that one request with ``InvalidArgumentError`` before decoding.
    """
    import tensorflow as tf

    check_max_pixels(max_pixels)
    padded = tf.strings.join([data, tf.constant(b"\0" * 32)])

    def raw(pos, n):
        return tf.cast(tf.io.decode_raw(tf.strings.substr(padded, pos, n), tf.uint8), tf.int64)

    def little(pos, n):
        b = raw(pos, n)
        return tf.add_n([b[i] * (256 ** i) for i in range(n)])

    def big(pos, n):
        b = raw(pos, n)
        return tf.add_n([b[i] * (256 ** (n - 1 - i)) for i in range(n)])

    def signed32(value):
        return tf.abs(tf.where(value >= 2 ** 31, value - 2 ** 32, value))

    def starts(prefix, pos=0):
        return tf.equal(tf.strings.substr(padded, pos, len(prefix)), prefix)

    is_jpeg = starts(_JPEG)
    is_png = starts(_PNG)
    is_gif = starts(b"GIF8")
    is_bmp = starts(b"BM")
    is_webp = tf.logical_and(starts(b"RIFF"), starts(b"WEBP", 8))
    zero = tf.constant(0, tf.int64)

    jpeg_hw = tf.cond(is_jpeg, lambda: tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.int64),
                      lambda: tf.zeros((2,), tf.int64))
    png_hw = (big(20, 4), big(16, 4))
    gif_hw = (little(8, 2), little(6, 2))
    core_bmp = tf.equal(little(14, 4), 12)
    bmp_hw = (tf.where(core_bmp, little(20, 2), signed32(little(22, 4))),
              tf.where(core_bmp, little(18, 2), signed32(little(18, 4))))
    vp8l = little(21, 4)
    webp_hw = (
        tf.where(starts(b"VP8X", 12), 1 + little(27, 3),
                 tf.where(starts(b"VP8L", 12), 1 + (vp8l // 2 ** 14) % 2 ** 14, little(28, 2) % 2 ** 14)),
        tf.where(starts(b"VP8X", 12), 1 + little(24, 3),
                 tf.where(starts(b"VP8L", 12), 1 + vp8l % 2 ** 14, little(26, 2) % 2 ** 14)),
    )
    height, width = zero, zero
    for cond, hw in ((is_png, png_hw), (is_gif, gif_hw), (is_bmp, bmp_hw), (is_webp, webp_hw),
                     (is_jpeg, (jpeg_hw[0], jpeg_hw[1]))):
        height = tf.where(cond, hw[0], height)
        width = tf.where(cond, hw[1], width)
    known = tf.reduce_any(tf.stack([is_jpeg, is_png, is_gif, is_bmp, is_webp]))
    pixels = height * width
    ok_format = tf.debugging.Assert(known, [tf.constant(
        "image_bytes is not a JPEG, PNG, GIF, BMP or WebP image")], name="check_image_format")
    with tf.control_dependencies([ok_format]):
        message = tf.strings.format(
            "image declares {}x{} pixels, more than the limit of {} pixels (max_pixels); refused before decoding",
            (width, height, tf.constant(max_pixels, tf.int64)))
        return tf.debugging.Assert(pixels <= max_pixels, [message], name="check_image_pixels")

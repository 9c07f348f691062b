"""Refuse decompression bombs: read an encoded image's declared size from its header before decoding it.

A 140 KB PNG can declare 12000x12000 pixels; decoding it and converting it to float costs gigabytes. Both the
Python helper (:func:`check_image_bytes`, for ``keras-regnet predict`` and other callers that decode files) and the
in-graph guard of the SavedModel's ``serving_bytes`` signature (:func:`tf_check_image_bytes`) read the width and
height from the header (JPEG SOF via ``tf.image.extract_jpeg_shape``, PNG IHDR, GIF logical screen, BMP DIB
header, WebP VP8/VP8L/VP8X) and refuse images with more than ``max_pixels`` pixels (default
:data:`DEFAULT_MAX_PIXELS`, 40 megapixels) before any pixel is decoded. JPEG XL and unknown formats are refused.

An animated GIF counts every frame: the decoders hold all frames in memory even when only the first is used, so
its decoded size is ``frames x width x height`` of the logical screen (or the sum of the frames' own areas, if
larger). Files are read with :func:`read_image_file`: regular files only (a FIFO or a device is refused without
a blocking read), at most ``max_bytes``, the header checked before the rest is read.

An animated WebP (the VP8X header's animation flag) is refused outright: TensorFlow decodes one only to
4-channel RGBA (a 3-channel decode, what every keras-regnet path asks for, fails), and TensorFlow 2.21's
``decode_image(channels=0)`` corrupts the heap on one (the process aborts in ``malloc``), so no path of ours should
hand one to the decoder; its frames need not be counted.
"""

from __future__ import annotations

import struct

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "FORMATS",
    "ImageTooLargeError",
    "UnsupportedImageError",
    "image_size",
    "check_image_bytes",
    "check_max_pixels",
    "tf_check_image_bytes",
    "gif_frames",
    "webp_is_animated",
    "DEFAULT_MAX_FILE_BYTES",
    "check_image_path",
    "read_image_file",
]

DEFAULT_MAX_PIXELS = 40_000_000
# Image files larger than this are refused unread (a 40-megapixel JPEG is ~10-20 MB; a PNG at most ~120 MB).
DEFAULT_MAX_FILE_BYTES = 256 * 2**20
FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WebP")

_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"
# JPEG start-of-frame markers (C0-CF except DHT C4, JPG C8, DAC CC) hold the frame's height and width.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class ImageTooLargeError(ValueError):
    """An encoded image declares more pixels than allowed: refused before decoding."""


class UnsupportedImageError(ValueError):
    """A well-formed image of a kind no keras-regnet path decodes (an animated WebP)."""


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


def gif_frames(data: bytes):
    """``(frames, decoded pixels)`` of a GIF, walking its blocks without decoding: ``decoded pixels`` is the larger
    of ``frames`` x the logical screen and the sum of the frames' own areas. A damaged stream counts the frames
    found before the damage (the decoder then fails on it)."""
    data = bytes(data)
    n = len(data)
    if n < 13 or not data.startswith(b"GIF8"):
        raise ValueError("not a GIF image")
    screen = int.from_bytes(data[6:8], "little") * int.from_bytes(data[8:10], "little")
    pos = 13 + (3 * (2 << (data[10] & 7)) if data[10] & 0x80 else 0)
    frames = area = 0

    def skip_sub_blocks(pos):
        while pos < n:
            size = data[pos]
            pos += 1 + size
            if size == 0:
                break
        return pos

    while pos < n:
        kind = data[pos]
        if kind == 0x2C:  # image descriptor, then the local colour table and the LZW minimum code size
            if pos + 10 > n:
                break
            frames += 1
            area += int.from_bytes(data[pos + 5:pos + 7], "little") * int.from_bytes(data[pos + 7:pos + 9], "little")
            packed = data[pos + 9]
            pos = skip_sub_blocks(pos + 11 + (3 * (2 << (packed & 7)) if packed & 0x80 else 0))
        elif kind == 0x21:  # extension: label, then sub-blocks
            pos = skip_sub_blocks(pos + 2)
        else:  # trailer (0x3B) or damage
            break
    return frames, max(frames * screen, area)


def webp_is_animated(data: bytes) -> bool:
    """Whether the WebP ``data`` has the extended (VP8X) header with its animation flag set."""
    data = bytes(data[:21])
    return len(data) == 21 and data[12:16] == b"VP8X" and bool(data[20] & 0x02)


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
    if fmt == "WebP" and webp_is_animated(data):
        raise UnsupportedImageError(f"{what}: an animated WebP is not accepted (TensorFlow cannot decode it to RGB); "
                                    "save the frame you want as a still image (PNG, JPEG or a still WebP).")
    if fmt == "GIF":
        frames, decoded = gif_frames(data)
        if frames > 1 and decoded > max_pixels:
            raise ImageTooLargeError(
                f"{what}: the animated GIF declares {frames} frames of {width}x{height} ({decoded} decoded pixels), "
                f"more than the limit of {max_pixels} pixels; refused before decoding (raise max_pixels / "
                "--max-pixels if the image is genuine)."
            )
    if height * width > max_pixels:
        raise ImageTooLargeError(
            f"{what}: the {fmt} declares {width}x{height} pixels ({height * width / 1e6:.1f} megapixels), more than "
            f"the limit of {max_pixels} pixels; refused before decoding (raise max_pixels / --max-pixels if the "
            "image is genuine)."
        )
    return height, width


_KINDS = (("S_ISFIFO", "FIFO"), ("S_ISCHR", "character device"), ("S_ISBLK", "block device"),
          ("S_ISSOCK", "socket"), ("S_ISDIR", "directory"))


def file_kind(mode) -> str:
    """What a non-regular ``st_mode`` is, in words ("FIFO", "character device", ...)."""
    import stat

    return next((name for test, name in _KINDS if getattr(stat, test)(mode)), "special file")


def check_image_path(path) -> None:
    """Raise FileNotFoundError for a missing path, ValueError for one that is not a regular file (a FIFO, a device,
    a socket, a directory); nothing is opened."""
    import os
    import stat

    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"image {path!r} does not exist.") from None
    except OSError as e:
        raise ValueError(f"image {path!r} cannot be read ({e.strerror or e}).") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"image {path!r} is not a regular file ({file_kind(st.st_mode)}); give an image file.")


def open_regular(path):
    """``(file object, size)`` of a regular file, opened without blocking (a FIFO opened for reading would wait
    for a writer forever); ValueError for anything else."""
    import os
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise FileNotFoundError(f"image {path!r} does not exist.") from None
    except OSError as e:
        raise ValueError(f"image {path!r} cannot be read ({e.strerror or e}).") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise ValueError(f"image {path!r} is not a regular file ({file_kind(st.st_mode)}); give an image file.")
    return os.fdopen(fd, "rb"), st.st_size


HEADER_BYTES = 64 * 1024


def read_image_file(path, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_FILE_BYTES,
                    what=None) -> bytes:
    """The bytes of the image file ``path``, checked before decoding: a regular file (ValueError otherwise, without
    blocking on a FIFO), at most ``max_bytes`` (ValueError), a supported header (read first: a file of another
    kind is refused after 64 KiB) declaring at most ``max_pixels`` pixels, GIF frames included
    (:class:`ImageTooLargeError`)."""
    check_max_pixels(max_pixels)
    what = what or repr(path)
    f, size = open_regular(path)
    with f:
        if size > max_bytes:
            raise ValueError(f"{what}: the file is larger than the limit of {max_bytes} bytes ({size} bytes); "
                             "refused unread.")
        data = f.read(min(HEADER_BYTES, max_bytes + 1))
        try:
            image_size(data)
        except ValueError as e:
            if not str(e).startswith("truncated") or len(data) < HEADER_BYTES:
                raise ValueError(f"{what}: {e}.") from None
        data += f.read(max_bytes + 1 - len(data))
    if len(data) > max_bytes:  # the file grew while being read
        raise ValueError(f"{what}: the file is larger than the limit of {max_bytes} bytes; refused.")
    check_image_bytes(data, max_pixels, what=what)
    return data


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
    animated_webp = tf.logical_and(tf.logical_and(is_webp, starts(b"VP8X", 12)), tf.equal(raw(20, 1)[0] % 4 // 2, 1))
    frames, decoded = tf.cond(is_gif, lambda: _tf_gif_frames(padded, tf.strings.length(data), pixels),
                              lambda: (zero, zero))
    limit = tf.constant(max_pixels, tf.int64)
    with tf.control_dependencies([ok_format]):
        message = tf.strings.format(
            "image declares {}x{} pixels, more than the limit of {} pixels (max_pixels); refused before decoding",
            (width, height, limit))
        ok_pixels = tf.debugging.Assert(pixels <= max_pixels, [message], name="check_image_pixels")
        gif_message = tf.strings.format(
            "animated GIF declares {} frames of {}x{} ({} decoded pixels), more than the limit of {} pixels "
            "(max_pixels); refused before decoding", (frames, width, height, decoded, limit))
        ok_frames = tf.debugging.Assert(tf.logical_or(frames <= 1, decoded <= max_pixels), [gif_message],
                                        name="check_gif_frames")
        not_animated = tf.debugging.Assert(tf.logical_not(animated_webp), [tf.constant(
            "image_bytes is an animated WebP, which is not accepted (TensorFlow cannot decode it to RGB); send a "
            "still image")], name="check_webp_still")
        return tf.group(ok_pixels, ok_frames, not_animated)


def _tf_gif_frames(padded, length, screen):
    """In-graph :func:`gif_frames`: ``(frames, decoded pixels)`` of the GIF in ``padded`` (its bytes followed by
    32 zero bytes; ``length`` without them), walking the blocks with a ``tf.while_loop``."""
    import tensorflow as tf

    length = tf.cast(length, tf.int64)

    def byte(pos, offset=0):
        return tf.cast(tf.io.decode_raw(tf.strings.substr(padded, pos + offset, 1), tf.uint8)[0], tf.int64)

    def word(pos, offset):
        return byte(pos, offset) + 256 * byte(pos, offset + 1)

    def colour_table(packed):
        return tf.where(packed >= 128, 3 * tf.bitwise.left_shift(tf.constant(2, tf.int64), packed % 8), 0)

    def body(pos, in_blocks, frames, area, done):
        b = byte(pos)
        # inside a chain of sub-blocks: skip one (size byte + data); a zero size ends the chain
        sub_pos, sub_in = pos + 1 + b, b > 0
        # at a block: 0x2C image descriptor (+ local colour table + LZW code size), 0x21 extension, else the end
        is_image, is_ext = tf.equal(b, 0x2C), tf.equal(b, 0x21)
        safe = tf.minimum(pos, length)
        image_pos = pos + 11 + colour_table(byte(safe, 9))
        block_area = word(safe, 5) * word(safe, 7)
        top_pos = tf.where(is_image, image_pos, pos + 2)
        top_done = tf.logical_not(tf.logical_or(is_image, is_ext))
        new_pos = tf.where(in_blocks, sub_pos, top_pos)
        new_in = tf.where(in_blocks, sub_in, tf.logical_not(top_done))
        counted = tf.logical_and(tf.logical_not(in_blocks), is_image)
        frames = frames + tf.cast(counted, tf.int64)
        area = area + tf.where(counted, block_area, 0)
        done = tf.logical_and(tf.logical_not(in_blocks), top_done)
        return new_pos, new_in, frames, area, done

    packed = byte(0, 10)
    start = 13 + colour_table(packed)
    zero = tf.constant(0, tf.int64)
    _, _, frames, area, _ = tf.while_loop(
        lambda pos, in_blocks, frames, area, done: tf.logical_and(pos < length, tf.logical_not(done)),
        body, (start, tf.constant(False), zero, zero, tf.constant(False)))
    return frames, tf.maximum(frames * screen, area)

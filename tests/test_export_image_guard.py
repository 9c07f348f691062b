"""keras_regnet.export.image_guard: header sizes of every decodable format, the pixel limit, bad bytes."""

import io
import struct
import zlib

import numpy as np
import pytest

from keras_regnet.export.image_guard import (
    DEFAULT_MAX_PIXELS,
    ImageTooLargeError,
    check_image_bytes,
    image_size,
)

PIL = pytest.importorskip("PIL.Image")


def _encode(fmt, width, height, **kwargs):
    buffer = io.BytesIO()
    PIL.new("RGB", (width, height), (10, 200, 30)).save(buffer, fmt, **kwargs)
    return buffer.getvalue()


CASES = [("JPEG", {}), ("JPEG", {"progressive": True}), ("PNG", {}), ("GIF", {}), ("BMP", {}),
         ("WEBP", {"lossless": False}), ("WEBP", {"lossless": True})]


@pytest.mark.parametrize("fmt,kwargs", CASES)
def test_header_sizes_match_the_encoder(fmt, kwargs):
    for width, height in ((37, 23), (1, 300), (640, 480)):
        data = _encode(fmt, width, height, **kwargs)
        got_fmt, got_h, got_w = image_size(data)
        assert (got_fmt.upper(), got_h, got_w) == (fmt, height, width)
        assert check_image_bytes(data, width * height) == (height, width)
        with pytest.raises(ImageTooLargeError, match=f"{width}x{height} pixels"):
            check_image_bytes(data, width * height - 1, what="photo.x")


def test_webp_extended_header():
    data = _encode("WEBP", 50, 20, exif=b"Exif\0\0" + b"\0" * 20)  # metadata forces the VP8X layout
    assert data[12:16] == b"VP8X" and image_size(data) == ("WebP", 20, 50)


def test_bomb_refused_from_its_header_alone():
    header = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">IIBBBBB", 12000, 12000, 8, 0, 0,
                                                                                    0, 0)
    header += struct.pack(">I", zlib.crc32(header[12:]))
    with pytest.raises(ImageTooLargeError, match=r"12000x12000 pixels \(144.0 megapixels\).*--max-pixels"):
        check_image_bytes(header)
    assert DEFAULT_MAX_PIXELS == 40_000_000
    # BMP heights are negative for top-down images: the absolute value counts
    bmp = bytearray(_encode("BMP", 10, 10))
    bmp[18:26] = struct.pack("<ii", 9000, -9000)
    with pytest.raises(ImageTooLargeError, match="9000x9000"):
        check_image_bytes(bytes(bmp))


@pytest.mark.parametrize("junk,message", [(b"", "not a JPEG"), (b"hello", "not a JPEG"),
                                          (b"\xff\xd8\xff\xe0\x00\x10JFIF", "truncated JPEG"),
                                          (b"\x89PNG\r\n\x1a\n\0\0", "truncated PNG"),
                                          (b"\xff\x0a\xfa", "JPEG XL")])
def test_bad_bytes_are_value_errors_naming_the_image(junk, message):
    with pytest.raises(ValueError, match=message) as info:
        check_image_bytes(junk, what="upload.bin")
    assert "upload.bin" in str(info.value) and not isinstance(info.value, ImageTooLargeError)


@pytest.mark.parametrize("bad", [0, -5, 1.5, True, "10"])
def test_max_pixels_must_be_positive_int(bad):
    with pytest.raises(ValueError, match="max_pixels"):
        check_image_bytes(_encode("PNG", 2, 2), bad)


def test_in_graph_guard_agrees_with_python():
    tf = pytest.importorskip("tensorflow")
    from keras_regnet.export.image_guard import tf_check_image_bytes

    @tf.function(input_signature=[tf.TensorSpec((), tf.string), tf.TensorSpec((), tf.int64)])
    def guard(data, limit):
        del limit
        with tf.control_dependencies([tf_check_image_bytes(data, 37 * 23)]):
            return tf.identity(data)

    for fmt, kwargs in CASES:
        for width, height in ((37, 23), (38, 23)):
            data = _encode(fmt, width, height, **kwargs)
            if width * height <= 37 * 23:
                guard(tf.constant(data), 0)
            else:
                with pytest.raises(tf.errors.InvalidArgumentError, match=f"{width}x{height} pixels"):
                    guard(tf.constant(data), 0)
    for junk in (b"", b"hello", b"\xff\x0a\xfa"):
        with pytest.raises(tf.errors.InvalidArgumentError):
            guard(tf.constant(junk), 0)


def _animated_gif(frames, width, height):
    images = [PIL.new("RGB", (width, height), (i % 256, 0, 0)) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, "GIF", save_all=frames > 1, append_images=images[1:], duration=10)
    return buffer.getvalue()


def test_gif_frames_are_counted_in_python():
    """Before: only the logical screen counted, so 40 frames of 100x100 passed a 200,000-pixel limit (the
    decoder holds every frame: 400 frames of 2000x2000 in 1.9 MB took ~1.5 GB)."""
    from keras_regnet.export.image_guard import gif_frames

    bomb = _animated_gif(40, 100, 100)
    assert gif_frames(bomb) == (40, 400_000)
    with pytest.raises(ImageTooLargeError, match=r"40 frames of 100x100 .*400000 decoded pixels"):
        check_image_bytes(bomb, 200_000, what="anim.gif")
    assert check_image_bytes(bomb, 400_000) == (100, 100)
    single = _animated_gif(1, 100, 100)
    assert gif_frames(single) == (1, 10_000)
    assert check_image_bytes(single, 10_000) == (100, 100)


def test_gif_frames_are_counted_in_graph():
    """The serving signature's guard (and the training pipeline's) count the frames too."""
    tf = pytest.importorskip("tensorflow")
    from keras_regnet.export.image_guard import tf_check_image_bytes

    @tf.function(input_signature=[tf.TensorSpec((), tf.string)])
    def guard(data):
        with tf.control_dependencies([tf_check_image_bytes(data, 200_000)]):
            return tf.identity(data)

    guard(tf.constant(_animated_gif(20, 100, 100)))
    guard(tf.constant(_animated_gif(1, 400, 400)))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"40 frames.*400000 decoded pixels"):
        guard(tf.constant(_animated_gif(40, 100, 100)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="pixels"):
        guard(tf.constant(_animated_gif(3, 400, 400)))


def _animated_webp(frames, width, height, mode="RGB"):
    images = [PIL.new(mode, (width, height), (i % 256, 0, 0)) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, "WEBP", save_all=True, append_images=images[1:], duration=10, lossless=True)
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_animated_webp_is_refused_in_python_and_in_graph(mode):
    """TensorFlow decodes an animated WebP only to RGBA (3 channels: InvalidArgumentError 'must be 4 channel RGBA'),
    and TF 2.21's decode_image(channels=0) corrupts the heap on one: every path refuses it before the decoder, with
    a message that says so; a still WebP (also in the extended VP8X layout) still passes."""
    from keras_regnet.export.image_guard import UnsupportedImageError, webp_is_animated

    anim = _animated_webp(3, 40, 30, mode)
    assert anim[12:16] == b"VP8X" and webp_is_animated(anim)
    with pytest.raises(UnsupportedImageError, match="anim.webp: an animated WebP is not accepted"):
        check_image_bytes(anim, what="anim.webp")
    still = _encode("WEBP", 50, 20, exif=b"Exif\0\0" + b"\0" * 20)
    assert still[12:16] == b"VP8X" and not webp_is_animated(still) and check_image_bytes(still) == (20, 50)

    tf = pytest.importorskip("tensorflow")
    from keras_regnet.export.image_guard import tf_check_image_bytes

    @tf.function(input_signature=[tf.TensorSpec((), tf.string)])
    def guard(data):
        with tf.control_dependencies([tf_check_image_bytes(data)]):
            return tf.identity(data)

    with pytest.raises(tf.errors.InvalidArgumentError, match="animated WebP"):
        guard(tf.constant(anim))
    guard(tf.constant(still))

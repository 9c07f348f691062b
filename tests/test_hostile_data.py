"""Hostile image folders: symlink loops, non-files, huge files, pixel and GIF-frame bombs, empty classes, split
folders whose class names differ, odd slices, formats that are skipped, and paths that are not files."""

import io
import os
import struct
import threading
import warnings
import zlib

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
PIL = pytest.importorskip("PIL.Image")

from keras_regnet import datasets  # noqa: E402
from keras_regnet.datasets import load_dataset  # noqa: E402
from keras_regnet.export import image_guard  # noqa: E402


def _png(value, size=(20, 28)):
    return tf.io.encode_png(np.full(size + (3,), value, np.uint8)).numpy()


def _write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def _folder(root, classes, per_class, split=None):
    base = os.path.join(root, split) if split else root
    for c, name in enumerate(classes):
        for i in range(per_class):
            _write(os.path.join(base, name, f"img{i}.png"), _png(10 * c + i))
    return base


def _values(ds):
    return sorted((int(y), int(x[0, 0, 0])) for x, y in ds.as_numpy_iterator())


def _bomb_png(width, height):
    header = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0,
                                                                                    0, 0)
    return header + struct.pack(">I", zlib.crc32(header[12:])) + b"\0" * 64


def _gif(frames, width, height):
    images = [PIL.new("RGB", (width, height), (i % 256, 0, 0)) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, "GIF", save_all=frames > 1, append_images=images[1:], duration=10)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------- symlinks


def test_symlink_loops_are_followed_once_and_named(tmp_path):
    """Before: 4 images became 164 examples, images of one class got another's label and copies leaked across
    the train[:50%] / train[50%:] slices."""
    root = str(tmp_path / "data")
    _folder(root, ["a", "b"], per_class=2)
    os.symlink("..", os.path.join(root, "a", "up"))
    os.symlink(".", os.path.join(root, "a", "me"))
    os.symlink(root, os.path.join(root, "b", "root"))
    os.symlink(os.path.join(root, "a", "img0.png"), os.path.join(root, "b", "stolen.png"))
    with pytest.warns(datasets.SkippedFilesWarning, match=r"a/up.*a/me|a/me.*a/up"):
        ds, info = load_dataset(root)
    assert info.num_examples == 4
    assert _values(ds) == [(0, 0), (0, 1), (1, 10), (1, 11)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = _values(load_dataset(root, "train[:50%]")[0])
        second = _values(load_dataset(root, "train[50%:]")[0])
    assert not set(first) & set(second) and len(first) + len(second) == 4


def test_links_outside_the_data_set_are_skipped_unless_asked(tmp_path):
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(_png(77))
    root = str(tmp_path / "data")
    _folder(root, ["a", "b"], per_class=1)
    os.symlink(str(outside), os.path.join(root, "a", "linked.png"))
    with pytest.warns(datasets.SkippedFilesWarning, match="outside the data set"):
        _, info = load_dataset(root)
    assert info.num_examples == 2
    _, info = load_dataset(root, follow_links=True)
    assert info.num_examples == 3


# ------------------------------------------------------------------------------------------- non-files, size


def _load_in_thread(*args, timeout=60, **kwargs):
    out = {}

    def target():
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out["result"] = load_dataset(*args, **kwargs)
            out["warnings"] = [str(w.message) for w in caught]
        except Exception as e:  # noqa: BLE001 - handed to the test
            out["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "load_dataset hung"
    return out


def test_fifo_device_and_huge_files_are_skipped_without_reading_them(tmp_path):
    """Before: a FIFO named x.png hung load_dataset forever; a .jpg link to /dev/zero was read whole."""
    root = str(tmp_path / "data")
    _folder(root, ["a", "b"], per_class=2)
    os.mkfifo(os.path.join(root, "a", "pipe.png"))
    os.symlink("/dev/zero", os.path.join(root, "b", "zero.jpg"))
    _write(os.path.join(root, "b", "huge.png"), _png(5) + b"\0" * (2 << 20))
    out = _load_in_thread(root, max_file_bytes=1 << 20, follow_links=True)
    assert "error" not in out, out.get("error")
    assert out["result"][1].num_examples == 4
    text = " ".join(out["warnings"])
    assert "pipe.png: not a regular file (FIFO)" in text
    assert "zero.jpg: not a regular file (character device)" in text
    assert "huge.png: larger than" in text


# ------------------------------------------------------------------------------------------- pixel bombs


def test_pixel_bomb_in_a_folder_is_refused_from_its_header(tmp_path):
    """Before: a PNG declaring 20000x20000 was accepted (decoded whole in the check and again every epoch)."""
    root = str(tmp_path / "data")
    _folder(root, ["a", "b"], per_class=2)
    _write(os.path.join(root, "a", "bomb.png"), _bomb_png(20000, 20000))
    with pytest.raises(ValueError, match=r"bomb.png: .*20000x20000 pixels .*more than the limit"):
        load_dataset(root, bad_images="error")
    with pytest.warns(datasets.BadImagesWarning, match="bomb.png"):
        _, info = load_dataset(root)
    assert info.num_examples == 4
    with pytest.raises(ValueError, match="more than the limit of 100 pixels"):
        load_dataset(root, bad_images="error", max_pixels=100)


def test_gif_frame_bomb_in_a_folder_is_refused(tmp_path):
    """Before: frames were not counted (only the GIF's logical screen)."""
    root = str(tmp_path / "data")
    _folder(root, ["a", "b"], per_class=2)
    _write(os.path.join(root, "b", "anim.gif"), _gif(40, 100, 100))
    with pytest.raises(ValueError, match=r"anim.gif: .*40 frames"):
        load_dataset(root, bad_images="error", max_pixels=200_000)
    _, info = load_dataset(root, bad_images="error")  # 400,000 decoded pixels: under the default limit
    assert info.num_examples == 5


# ------------------------------------------------------------------------------------------- empty classes


def test_empty_class_folder_is_refused_by_name(tmp_path):
    """Before: an empty class folder (or one of unreadable files) silently became an output that never trains."""
    root = str(tmp_path / "data")
    _folder(root, ["a", "c"], per_class=2)
    os.makedirs(os.path.join(root, "b"))
    with pytest.raises(ValueError, match=r"class folder 'b' .*no readable images"):
        load_dataset(root)
    _write(os.path.join(root, "b", "fake.png"), b"not an image at all")
    with pytest.raises(ValueError, match=r"class folder 'b' .*no readable images"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            load_dataset(root)


# ------------------------------------------------------------------------------------------- split class names


def test_split_folders_are_labelled_by_class_name(tmp_path):
    """Before: labels were indices into each split's own folder list: val/{dog} was scored as class 0 (cat)."""
    root = str(tmp_path / "data")
    _folder(root, ["cat", "dog", "eel"], per_class=2, split="train")
    _write(os.path.join(root, "val", "dog", "d.png"), _png(99))
    train_ds, train_info = load_dataset(root, "train")
    val_ds, val_info = load_dataset(root, "val")
    val_ds, val_info = datasets.align_labels(val_ds, val_info, train_info.class_names)
    assert val_info.class_names == ("cat", "dog", "eel") and val_info.num_classes == 3
    assert _values(val_ds) == [(1, 99)]


def test_a_split_with_a_class_the_model_lacks_is_refused_naming_both_lists(tmp_path):
    root = str(tmp_path / "data")
    _folder(root, ["cat", "dog"], per_class=2, split="train")
    _folder(root, ["dog", "zebra"], per_class=1, split="val")
    _, train_info = load_dataset(root, "train")
    val_ds, val_info = load_dataset(root, "val")
    with pytest.raises(ValueError, match=r"'zebra'.*\['dog', 'zebra'\].*\['cat', 'dog'\]"):
        datasets.align_labels(val_ds, val_info, train_info.class_names)


# ------------------------------------------------------------------------------------------- odd slices


@pytest.mark.parametrize("split,message", [
    ("train[90%:]", "selects no images"),
    ("train[50%:10%]", "starts after it ends"),
    ("train[:0]", "selects no images"),
])
def test_empty_or_reversed_slices_are_one_clear_error(tmp_path, split, message):
    """Before: 'TypeError: ReadFile ... float32' from the empty file list."""
    root = str(tmp_path / "data")
    _folder(root, ["a", "b"], per_class=1)
    with pytest.raises(ValueError, match=message):
        load_dataset(root, split)


def test_reversed_digits_slice_is_refused():
    with pytest.raises(ValueError, match="starts after it ends"):
        load_dataset("digits", "train[50%:10%]")


# ------------------------------------------------------------------------------------------- formats


def test_webp_is_read_and_tiff_is_named_as_skipped(tmp_path):
    """Before: .webp and .tiff were ignored without a word (predict and serving accept WebP)."""
    root = str(tmp_path / "data")
    _folder(root, ["a", "b"], per_class=1)
    buffer = io.BytesIO()
    PIL.fromarray(np.full((20, 28, 3), 50, np.uint8)).save(buffer, "WEBP", lossless=True)
    _write(os.path.join(root, "a", "w.webp"), buffer.getvalue())
    buffer = io.BytesIO()
    PIL.fromarray(np.full((20, 28, 3), 60, np.uint8)).save(buffer, "TIFF")
    _write(os.path.join(root, "b", "t.tiff"), buffer.getvalue())
    with pytest.warns(datasets.SkippedFilesWarning, match=r"b/t.tiff: TIFF .*not decodable"):
        ds, info = load_dataset(root)
    assert info.num_examples == 3
    assert (0, 50) in _values(ds)


# ------------------------------------------------------------------------------------------- paths, predict


def test_a_fifo_given_as_an_image_is_named_as_such_and_does_not_hang(tmp_path):
    """Before: predict said the FIFO 'does not exist' (and reading it would block forever)."""
    fifo = str(tmp_path / "x.jpg")
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=r"x.jpg' is not a regular file \(FIFO\)"):
        image_guard.check_image_path(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        image_guard.read_image_file(fifo)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        image_guard.check_image_path(str(tmp_path / "missing.jpg"))
    from keras_regnet.commands.predict import find_images

    with pytest.raises(ValueError, match=r"not a regular file \(FIFO\)"):
        find_images([fifo])


def test_read_image_file_is_bounded_and_checks_the_header_first(tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(_png(1) + b"\0" * (2 << 20))
    with pytest.raises(ValueError, match="larger than the limit"):
        image_guard.read_image_file(str(big), max_bytes=1 << 20)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_bomb_png(20000, 20000))
    with pytest.raises(image_guard.ImageTooLargeError, match="20000x20000"):
        image_guard.read_image_file(str(bomb))
    good = tmp_path / "good.png"
    good.write_bytes(_png(3))
    assert image_guard.read_image_file(str(good)) == _png(3)

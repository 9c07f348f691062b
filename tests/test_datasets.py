"""keras_regnet.datasets: embedded digits, image folders, tfds (prepared locally by the test), clear errors offline."""

import os
import time

import numpy as np
import pytest

import tensorflow as tf  # required by [test]: a broken install must fail, not skip
import tensorflow_datasets as tfds

from keras_regnet import datasets  # noqa: E402
from keras_regnet.datasets import load_dataset  # noqa: E402


def _collect(ds):
    images, labels = [], []
    for x, y in ds.as_numpy_iterator():
        images.append(x)
        labels.append(y)
    return images, np.asarray(labels)


# ------------------------------------------------------------------------------------------------ digits


def test_digits_split_is_stratified_disjoint_and_exact_upsampled_digits():
    train, info = load_dataset("digits", "train")
    test, tinfo = load_dataset("digits", "test")
    assert (info.num_classes, info.image_shape, info.class_names[:2]) == (10, (32, 32, 3), ("0", "1"))
    assert info.num_examples + tinfo.num_examples == 1797
    assert tinfo.num_examples == 360  # 20% of 1797, rounded up by scikit-learn
    xtr, ytr = _collect(train)
    xte, yte = _collect(test)
    assert len(xtr) == info.num_examples and len(xte) == tinfo.num_examples
    assert xtr[0].dtype == np.uint8 and xtr[0].shape == (32, 32, 3) and ytr.dtype == np.int64
    # Stratified: every class in both, proportions within a sample of each other.
    ctr, cte = np.bincount(ytr, minlength=10), np.bincount(yte, minlength=10)
    assert np.all(np.abs(cte / cte.sum() - ctr / ctr.sum()) < 0.01)
    # Each image is an exact 4x pixel replication of an 8x8 digit, grey in all three channels, full range.
    for x in xtr[:50] + xte[:50]:
        assert np.array_equal(x[..., 0], x[..., 1]) and np.array_equal(x[..., 0], x[..., 2])
        small = x[::4, ::4, 0]
        assert np.array_equal(np.kron(small, np.ones((4, 4), np.uint8)), x[..., 0])
    assert max(int(x.max()) for x in xtr) == 255
    # No image is in both splits (digits has a few exact duplicates, so compare sample indices through counts).
    assert len({x.tobytes() for x in xtr} & {x.tobytes() for x in xte}) <= 5
    # Deterministic.
    again, _ = _collect(load_dataset("digits", "train")[0])
    assert all(np.array_equal(a, b) for a, b in zip(again, xtr))


def test_packaged_digits_equal_scikit_learns_data_and_split():
    """The shipped file is scikit-learn's load_digits, split by its stratified train_test_split (random_state 0)."""
    sklearn_datasets = pytest.importorskip("sklearn.datasets")  # optional: only this comparison needs it
    from sklearn.model_selection import train_test_split

    ref = sklearn_datasets.load_digits()
    target = ref.target.astype(np.int64)
    train_idx, test_idx = train_test_split(np.arange(len(target)), test_size=0.2, stratify=target, random_state=0)
    for split, idx in (("train", np.sort(train_idx)), ("test", np.sort(test_idx))):
        images, labels = datasets.digits_arrays(split)
        grey = np.round(ref.images[idx] * 255 / 16).astype(np.uint8)
        expected = np.repeat(grey.repeat(4, axis=1).repeat(4, axis=2)[..., None], 3, axis=-1)
        assert np.array_equal(images, expected) and np.array_equal(labels, target[idx]), split
    # Slices as before: stratified within the split, in the fixed order.
    _, y = datasets.digits_arrays("train[:10%]")
    assert np.array_equal(np.bincount(y, minlength=10) > 0, np.ones(10, bool))


def test_digits_need_no_scikit_learn_and_refuse_a_damaged_file(tmp_path, monkeypatch):
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['sklearn'] = None\n"  # any sklearn import now raises ImportError
        "from keras_regnet.datasets import digits_arrays\n"
        "x, y = digits_arrays('test'); print(x.shape, y.shape, int(y.sum()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    _, y = datasets.digits_arrays("test")
    assert out.stdout.strip() == f"(360, 32, 32, 3) (360,) {int(y.sum())}"
    damaged = tmp_path / "digits.npz"
    data = bytearray(open(datasets.DIGITS_FILE, "rb").read())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    monkeypatch.setattr(datasets, "DIGITS_FILE", str(damaged))
    monkeypatch.setattr(datasets, "_digits_cache", {})
    with pytest.raises(ValueError, match="digits data .* is damaged .*reinstall"):
        datasets.digits_arrays("train")
    monkeypatch.setattr(datasets, "DIGITS_FILE", str(tmp_path / "missing.npz"))
    with pytest.raises(FileNotFoundError, match="cannot be read"):
        datasets.digits_arrays("train")


def test_digits_slices_partition_the_split_per_class():
    _, ytr = datasets.digits_arrays("train")
    a, ya = datasets.digits_arrays("train[:75%]")
    b, yb = datasets.digits_arrays("train[75%:]")
    assert len(ya) + len(yb) == len(ytr)
    assert set(np.unique(ya)) == set(np.unique(yb)) == set(range(10))
    full, _ = datasets.digits_arrays("train")
    keys = lambda arr: sorted(x.tobytes() for x in arr)  # noqa: E731
    assert keys(np.concatenate([a, b])) == keys(full)
    _, y100 = datasets.digits_arrays("test[:100]")
    assert len(y100) == 100
    with pytest.raises(ValueError, match="splits 'train' and 'test'"):
        load_dataset("digits", "validation")
    with pytest.raises(ValueError, match="cannot parse split"):
        load_dataset("digits", "train[::2]")


# ------------------------------------------------------------------------------------------------ folders


def _write_folder(root, classes, per_class, size=(20, 28), split=None):
    """PNG/JPEG images whose pixel value encodes (class, index); returns {path: (label, value)}."""
    written = {}
    base = os.path.join(root, split) if split else root
    for c, name in enumerate(classes):
        os.makedirs(os.path.join(base, name), exist_ok=True)
        for i in range(per_class):
            value = 10 * c + i
            img = np.full(size + (3,), value, np.uint8)
            ext = "png" if i % 2 == 0 else "bmp"
            path = os.path.join(base, name, f"img{i}.{ext}")
            tf.io.write_file(path, tf.io.encode_png(img) if ext == "png" else _bmp(img))
            written[path] = (c, value)
    return written


def _bmp(img):
    # TF decodes BMP but has no encoder: PNG bytes are detected by content, so write PNG bytes under .bmp.
    return tf.io.encode_png(img)


def test_folder_of_classes_reads_all_images_with_sorted_labels(tmp_path):
    written = _write_folder(str(tmp_path), ["cat", "ant", "bee"], per_class=4)
    # A grey image and a non-image file are handled: grey becomes RGB, the text file is skipped.
    grey = np.full((9, 7, 1), 200, np.uint8)
    tf.io.write_file(str(tmp_path / "bee" / "grey.png"), tf.io.encode_png(grey))
    (tmp_path / "bee" / "notes.txt").write_text("not an image")
    ds, info = load_dataset(str(tmp_path), "train")
    assert info.class_names == ("ant", "bee", "cat") and info.num_classes == 3
    assert info.num_examples == 13 and info.image_shape == (None, None, 3) and info.source == "folder"
    images, labels = _collect(ds)
    assert len(images) == 13 and labels.dtype == np.int64
    by_value = {}
    for x, y in zip(images, labels):
        assert x.dtype == np.uint8 and x.shape[-1] == 3
        by_value[int(x[0, 0, 0])] = (int(y), x.shape)
    assert by_value[200] == (1, (9, 7, 3))
    remap = {0: 2, 1: 0, 2: 1}  # written class order cat, ant, bee -> sorted label
    for _, (c, value) in written.items():
        assert by_value[value] == (remap[c], (20, 28, 3))
    # "folder:" prefix is the same source; stratified slices partition it.
    a, ia = load_dataset(f"folder:{tmp_path}", "train[:50%]")
    b, ib = load_dataset(f"folder:{tmp_path}", "train[50%:]")
    assert ia.num_examples + ib.num_examples == 13
    assert set(_collect(a)[1]) == set(_collect(b)[1]) == {0, 1, 2}
    with pytest.raises(ValueError, match="one split, 'train'"):
        load_dataset(str(tmp_path), "test")


def test_folder_with_split_layout(tmp_path):
    _write_folder(str(tmp_path), ["a", "b"], per_class=3, split="train")
    _write_folder(str(tmp_path), ["a", "b"], per_class=1, split="val")
    _, info = load_dataset(str(tmp_path), "train")
    ds, vinfo = load_dataset(str(tmp_path), "val")
    assert (info.num_examples, vinfo.num_examples, vinfo.class_names) == (6, 2, ("a", "b"))
    assert sorted(_collect(ds)[1].tolist()) == [0, 1]
    with pytest.raises(ValueError, match=r"splits \['train', 'val'\], not 'test'"):
        load_dataset(str(tmp_path), "test")


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(f"folder:{tmp_path}/nope", "train")
    with pytest.raises(FileNotFoundError, match="not an existing directory"):
        load_dataset(f"{tmp_path}/nope", "train")
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        load_dataset(str(tmp_path), "train")


# ------------------------------------------------------------------------------------------------ tfds


class KrTinyShapes(tfds.core.GeneratorBasedBuilder):
    """A 2-class tfds image data set generated locally (no network)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(16, 16, 3)),
                    "label": tfds.features.ClassLabel(names=["dark", "light"]),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(12), "test": self._generate_examples(4)}

    def _generate_examples(self, n):
        for i in range(n):
            yield i, {"image": np.full((16, 16, 3), 40 if i % 2 == 0 else 220, np.uint8), "label": i % 2}


class KrTinyManual(tfds.core.GeneratorBasedBuilder):
    """A tfds data set that, like imagenet2012, is built from files the user puts in manual_dir."""

    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Place digits.npz in manual_dir."

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {"image": tfds.features.Image(shape=(8, 8, 1)), "label": tfds.features.ClassLabel(num_classes=3)}
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        data = np.load(os.path.join(dl_manager.manual_dir, "digits.npz"))
        return {"train": self._generate_examples(data["x"], data["y"])}

    def _generate_examples(self, x, y):
        for i, (a, b) in enumerate(zip(x, y)):
            yield i, {"image": a, "label": int(b)}


def test_tfds_prepared_dataset_loads_with_info(tmp_path):
    KrTinyShapes(data_dir=str(tmp_path)).download_and_prepare()
    ds, info = load_dataset("kr_tiny_shapes", "train", data_dir=str(tmp_path))
    assert (info.num_classes, info.num_examples, info.image_shape) == (2, 12, (16, 16, 3))
    assert info.class_names == ("dark", "light") and info.source == "tfds"
    images, labels = _collect(ds)
    assert len(images) == 12 and images[0].dtype == np.uint8 and labels.dtype == np.int64
    assert all(int(x[0, 0, 0]) == (40 if y == 0 else 220) for x, y in zip(images, labels))
    _, sinfo = load_dataset("kr_tiny_shapes", "train[:50%]", data_dir=str(tmp_path))
    assert sinfo.num_examples == 6
    with pytest.raises(ValueError, match="has splits"):
        load_dataset("kr_tiny_shapes", "validation", data_dir=str(tmp_path))


def test_tfds_missing_dataset_fails_fast_with_the_prepare_command(tmp_path):
    start = time.monotonic()
    with pytest.raises(FileNotFoundError) as e:
        load_dataset("cifar10", "train", data_dir=str(tmp_path))
    assert time.monotonic() - start < 20  # tfds itself retries downloads for minutes when offline
    assert "not prepared" in str(e.value) and "download_and_prepare" in str(e.value) and "--download" in str(e.value)


def test_tfds_manual_dataset_errors_say_what_to_put_where(tmp_path):
    with pytest.raises(FileNotFoundError, match="ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar"):
        load_dataset("imagenet2012", "train", data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="manual_dir .* does not exist"):
        load_dataset("imagenet2012", "train", data_dir=str(tmp_path), manual_dir=str(tmp_path / "nope"))
    manual = tmp_path / "manual"
    manual.mkdir()
    (manual / "ILSVRC2012_img_val.tar").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"lacks ILSVRC2012_img_train.tar: put"):
        load_dataset("imagenet2012", "train", data_dir=str(tmp_path), manual_dir=str(manual))


def test_tfds_manual_dataset_is_prepared_from_manual_dir(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    x = np.random.RandomState(0).randint(0, 255, (9, 8, 8, 1)).astype(np.uint8)
    y = np.arange(9) % 3
    with pytest.raises(FileNotFoundError, match="needs a manual download"):
        load_dataset("kr_tiny_manual", "train", data_dir=str(tmp_path / "data"))
    np.savez(manual / "digits.npz", x=x, y=y)
    ds, info = load_dataset("kr_tiny_manual", "train", data_dir=str(tmp_path / "data"), manual_dir=str(manual))
    assert (info.num_examples, info.num_classes, info.image_shape) == (9, 3, (8, 8, 1))
    images, labels = _collect(ds)
    got = {im.tobytes(): int(lab) for im, lab in zip(images, labels)}
    assert got == {im.tobytes(): int(lab) for im, lab in zip(x, y)}


def test_unknown_and_non_image_datasets():
    with pytest.raises(ValueError, match="unknown dataset 'no_such_dataset_xyz'"):
        load_dataset("no_such_dataset_xyz", "train")
    with pytest.raises(ValueError, match="not image classification"):
        load_dataset("imdb_reviews", "train")
    with pytest.raises(ValueError, match="non-empty string"):
        load_dataset("", "train")


def test_folder_with_fake_and_corrupt_images_skips_them_by_name_or_refuses(tmp_path):
    """A text file named .jpg, a truncated JPEG and an empty PNG: skipped with one warning that counts and names
    them (the old loader failed mid-training with a TF traceback naming no file), or a ValueError with 'error'."""
    _write_folder(str(tmp_path), ["ant", "bee"], per_class=4)
    (tmp_path / "ant" / "fake.jpg").write_text("<html>captive portal</html>")
    good = tf.io.encode_jpeg(np.full((16, 16, 3), 99, np.uint8)).numpy()
    (tmp_path / "bee" / "cut.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "bee" / "empty.png").write_bytes(b"")
    with pytest.warns(datasets.BadImagesWarning) as record:
        ds, info = load_dataset(str(tmp_path), "train")
    message = str(record[0].message)
    assert "skipped 3 of 11 files" in message
    for name, why in (("fake.jpg", "not a JPEG, PNG, GIF or BMP"), ("cut.jpg", "corrupt"), ("empty.png", "empty")):
        assert f"{name}: {why}" in message
    images, labels = _collect(ds)  # decodes every remaining file without error
    assert info.num_examples == len(images) == 8 and sorted(np.bincount(labels)) == [4, 4]
    encoded, einfo = load_dataset(str(tmp_path), "train[:50%]", decode=False)
    assert einfo.num_examples == 4
    with pytest.raises(ValueError, match=r"3 of 11 files under .* are not readable images: .*fake.jpg"):
        load_dataset(str(tmp_path), "train", bad_images="error")
    with pytest.raises(ValueError, match="bad_images must be"):
        load_dataset(str(tmp_path), "train", bad_images="maybe")

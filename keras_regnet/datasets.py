"""Image-classification data sets as ``tf.data`` pipelines of ``(uint8 image, int64 label)``, offline-safe.

:func:`load_dataset` reads three kinds of source through one call:

- ``"digits"``: scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), shipped in the package
  (``data/digits.npz``, 46 KB, sha256-checked), upsampled to 32x32 RGB uint8, with a fixed stratified 80/20
  ``train``/``test`` split. Needs no network and no scikit-learn: the demo and test data set.
- a local directory of class sub-folders (``"folder:PATH"`` or any existing ``PATH``), either ``PATH/<class>/img``
  (one split, ``train``) or the tfds ImageFolder layout ``PATH/<split>/<class>/img``. Images are decoded in parallel.
- any tensorflow-datasets image-classification name (``"imagenet2012"``, ``"cifar10"``, ...). The prepared data set
  is looked up first without downloading, so a missing one fails in a second with instructions (tfds would otherwise
  retry downloads for minutes when offline). Data sets needing a manual download (ImageNet) are prepared from
  ``manual_dir`` when it holds the files tfds expects.

Splits accept tfds-style slices, ``"train[:80%]"``, ``"train[80%:]"``, ``"test[:100]"``. For digits and folders
the slice is taken within each class (stratified), in a fixed shuffled order, so ``train[:90%]`` and
``train[90%:]`` are disjoint, cover the split, and both contain every class.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Optional, Sequence, Tuple

import numpy as np

__all__ = ["DatasetInfo", "load_dataset", "check_images", "BadImagesWarning", "IMAGE_EXTENSIONS",
           "IMAGENET_MANUAL_FILES"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
# The files tfds's imagenet2012 builder reads from manual_dir (its MANUAL_DOWNLOAD_INSTRUCTIONS).
IMAGENET_MANUAL_FILES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
_DIGITS_SIZE = 32
_DIGITS_TEST_FRACTION = 0.2
_SPLIT_SEED = 0


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a training script needs to know about a loaded split.

    ``image_shape`` is ``(height, width, channels)`` with ``None`` for dimensions that vary between images
    (e.g. ``(None, None, 3)`` for ImageNet and folders). ``source`` is ``"digits"``, ``"folder"`` or ``"tfds"``;
    ``builder`` is the tfds builder for tfds sources (``None`` otherwise). ``encoded`` is True when the data set
    yields encoded image bytes (``decode=False``).
    """

    name: str
    split: str
    num_classes: int
    num_examples: int
    image_shape: Tuple[Optional[int], Optional[int], Optional[int]]
    class_names: Tuple[str, ...]
    source: str
    builder: object = dataclasses.field(default=None, repr=False, compare=False)
    encoded: bool = False


def load_dataset(
    name: str,
    split: str = "train",
    *,
    data_dir: Optional[str] = None,
    manual_dir: Optional[str] = None,
    download: bool = False,
    shuffle_files: bool = False,
    decode: bool = True,
    bad_images: str = "skip",
):
    """Load one split of an image-classification data set.

    Args:
        name: ``"digits"``, ``"folder:PATH"``, an existing directory, or a tensorflow-datasets name.
        split: split name, optionally sliced tfds-style (``"train[:90%]"``).
        data_dir: tfds data directory (default: tfds's, ``~/tensorflow_datasets`` or ``$TFDS_DATA_DIR``).
        manual_dir: where manually downloaded archives are (tfds data sets such as ``imagenet2012``); when the data
            set is not prepared yet and this holds the expected files, it is prepared from them (no network).
        download: allow tfds to download and prepare a missing data set (needs network access). Without it a
            missing data set raises at once with the command that prepares it.
        shuffle_files: let tfds read its shards in random order (training on large data sets).
        decode: with False, folders and tfds data sets yield the encoded file bytes (a scalar string) instead of
            the decoded image, so a pipeline can shuffle small records and decode only a crop of each JPEG
            (``tf.image.decode_and_crop_jpeg``). Digits are always decoded.
        bad_images: folders: what to do with files that are not readable images (empty, fake or corrupt; see
            :func:`check_images`): ``"skip"`` them with a :class:`BadImagesWarning` that counts and names them,
            or ``"error"`` (a ValueError naming them).

    Returns:
        ``(dataset, info)``: a ``tf.data.Dataset`` yielding ``(image uint8 (H, W, C), label int64)`` in a fixed
        order, and a :class:`DatasetInfo`.

    Raises:
        ValueError: unknown data set or split, a tfds data set that is not image classification.
        FileNotFoundError: a data set that is not prepared, a missing manual_dir or missing files in it.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"dataset name must be a non-empty string, got {name!r}.")
    if name == "digits":
        return _load_digits(split)
    if name.startswith("folder:"):
        path = os.path.expanduser(name[len("folder:"):])
        if not os.path.isdir(path):
            raise FileNotFoundError(f"image folder {path!r} does not exist (from dataset {name!r}).")
        return _load_folder(path, split, decode, bad_images)
    if os.path.isdir(os.path.expanduser(name)):
        return _load_folder(os.path.expanduser(name), split, decode, bad_images)
    if os.sep in name or name.startswith("."):
        raise FileNotFoundError(
            f"dataset {name!r} looks like a path but is not an existing directory. Give a directory of class "
            "sub-folders (PATH/<class>/<image>), 'digits', or a tensorflow-datasets name such as 'imagenet2012'."
        )
    return _load_tfds(name, split, data_dir=data_dir, manual_dir=manual_dir, download=download,
                      shuffle_files=shuffle_files, decode=decode)


# ---------------------------------------------------------------------------------------------------------------
# split slicing (digits and folders)

_SLICE = re.compile(r"^\s*([A-Za-z0-9_]+)\s*(?:\[\s*(-?\d+%?)?\s*:\s*(-?\d+%?)?\s*\])?\s*$")


def _parse_split(split: str):
    """'train[10%:50%]' -> ('train', '10%', '50%'); 'test' -> ('test', None, None)."""
    m = _SLICE.match(split) if isinstance(split, str) else None
    if m is None:
        raise ValueError(
            f"cannot parse split {split!r}: use a split name, optionally sliced tfds-style, e.g. 'train', "
            "'train[:90%]', 'train[90%:]', 'test[:100]'."
        )
    return m.group(1), m.group(2), m.group(3)


def _bound(token, n):
    if token is None:
        return None
    if token.endswith("%"):
        pct = int(token[:-1])
        if not -100 <= pct <= 100:
            raise ValueError(f"split percentage {token} is outside [-100%, 100%].")
        # Rounded like tfds's percent slices.
        return int(round(n * pct / 100.0))
    return int(token)


def _stratified_slice(labels: np.ndarray, start, stop) -> np.ndarray:
    """Indices selecting [start:stop] within each class (in a fixed shuffled order), sorted."""
    if start is None and stop is None:
        return np.arange(len(labels))
    if not all(t is None or t.endswith("%") for t in (start, stop)):
        # Absolute counts are not stratifiable in general: take them over the shuffled whole.
        order = np.random.RandomState(_SPLIT_SEED).permutation(len(labels))
        return np.sort(order[slice(_bound(start, len(labels)), _bound(stop, len(labels)))])
    picked = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[np.random.RandomState(_SPLIT_SEED + int(c)).permutation(len(idx))]
        picked.append(idx[slice(_bound(start, len(idx)), _bound(stop, len(idx)))])
    return np.sort(np.concatenate(picked)) if picked else np.zeros((0,), np.int64)


# ---------------------------------------------------------------------------------------------------------------
# digits


DIGITS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "digits.npz")
# sha256 of DIGITS_FILE (provenance: data/digits.txt); checked on every load.
DIGITS_SHA256 = "b33b54742028d00d2f482cec2c8238db2906be8c5eda906ff7b323bd7751a861"
_digits_cache = {}


def _digits_raw():
    """``(images uint8 (1797, 8, 8) in [0, 16], labels int64, test mask bool)`` from the packaged file."""
    if "raw" not in _digits_cache:
        import hashlib

        try:
            with open(DIGITS_FILE, "rb") as f:
                data = f.read()
        except OSError as e:
            raise FileNotFoundError(
                f"the packaged digits data {DIGITS_FILE!r} cannot be read ({e.strerror or e}); reinstall keras-regnet."
            ) from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != DIGITS_SHA256:
            raise ValueError(
                f"the packaged digits data {DIGITS_FILE!r} is damaged (sha256 {digest[:12]}..., expected "
                f"{DIGITS_SHA256[:12]}...); reinstall keras-regnet."
            )
        import io

        with np.load(io.BytesIO(data)) as z:
            _digits_cache["raw"] = (z["images"], z["labels"].astype(np.int64), z["test"].astype(bool))
    return _digits_cache["raw"]


def digits_arrays(split: str = "train"):
    """The digits split as NumPy arrays: ``(images uint8 (N, 32, 32, 3), labels int64 (N,))``.

    The data are scikit-learn's ``load_digits`` shipped in the package (``data/digits.npz``); the fixed
    stratified train/test split is scikit-learn's ``train_test_split(test_size=0.2, stratify=labels,
    random_state=0)``, stored with it. No scikit-learn is needed.
    """
    base, start, stop = _parse_split(split)
    if base not in ("train", "test"):
        raise ValueError(f"the digits data set has splits 'train' and 'test', got {split!r}.")
    images, labels, test = _digits_raw()
    idx = np.flatnonzero(test if base == "test" else ~test)
    idx = idx[_stratified_slice(labels[idx], start, stop)]
    # 8x8 -> 32x32 by pixel replication (exact, no interpolation artefacts), grey -> RGB, [0, 16] -> [0, 255].
    factor = _DIGITS_SIZE // images.shape[1]
    grey = np.round(images[idx].astype(np.float64) * (255.0 / 16.0)).astype(np.uint8)
    grey = grey.repeat(factor, axis=1).repeat(factor, axis=2)
    return np.repeat(grey[..., None], 3, axis=-1), labels[idx]


def _load_digits(split):
    import tensorflow as tf

    images, labels = digits_arrays(split)
    info = DatasetInfo(
        name="digits",
        split=split,
        num_classes=10,
        num_examples=int(len(labels)),
        image_shape=(_DIGITS_SIZE, _DIGITS_SIZE, 3),
        class_names=tuple(str(i) for i in range(10)),
        source="digits",
    )
    return tf.data.Dataset.from_tensor_slices((images, labels)), info


# ---------------------------------------------------------------------------------------------------------------
# folders of class sub-folders


def _class_dirs(path) -> Sequence[str]:
    return sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)) and not d.startswith("."))


def _images_in(path) -> Sequence[str]:
    out = []
    for root, dirs, files in os.walk(path, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(os.path.join(root, f) for f in sorted(files) if f.lower().endswith(IMAGE_EXTENSIONS))
    return out


def _has_images(path) -> bool:
    return any(f.lower().endswith(IMAGE_EXTENSIONS) for f in os.listdir(path))


def _folder_split_root(path, base):
    """The directory holding class sub-folders for split ``base``: PATH/<base> (ImageFolder layout) or PATH."""
    subdirs = _class_dirs(path)
    if not subdirs:
        raise FileNotFoundError(f"image folder {path!r} has no sub-folders; expected PATH/<class>/<image files>.")
    # ImageFolder layout: every sub-folder is a split holding class folders and no images of its own.
    split_layout = all(
        _class_dirs(os.path.join(path, d)) and not _has_images(os.path.join(path, d)) for d in subdirs
    )
    if split_layout:
        if base not in subdirs:
            raise ValueError(
                f"image folder {path!r} has the PATH/<split>/<class>/ layout with splits {subdirs}, not {base!r}."
            )
        return os.path.join(path, base)
    if base != "train":
        raise ValueError(
            f"image folder {path!r} has one split, 'train' (PATH/<class>/<image>); got split {base!r}. Carve a "
            "validation set with slices, e.g. 'train[:90%]' and 'train[90%:]', or use the PATH/<split>/<class>/ layout."
        )
    return path


class BadImagesWarning(UserWarning):
    """Some files of an image folder are not readable images and were skipped."""


# Folders up to this many images are checked by decoding every file; larger ones by their header only (a file
# with a valid header but corrupt data then fails during training with TensorFlow's error).
FULL_CHECK_LIMIT = 20_000
_MAGIC = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
          (b"BM", "BMP"))
_checked: dict = {}


def _decode_problem(error) -> str:
    text = str(getattr(error, "message", None) or error).strip().splitlines()[0]
    text = re.sub(r"^\{\{[^}]*\}\}\s*", "", text)
    return re.sub(r"\s*\[Op:\w+\]$", "", text) or type(error).__name__


def _check_one(path, full):
    """None if ``path`` reads as an image, else what is wrong with it."""
    try:
        with open(path, "rb") as f:
            head = f.read(16) if not full else f.read()
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    if not head:
        return "empty file"
    if not any(head.startswith(magic) for magic, _ in _MAGIC):
        return "not a JPEG, PNG, GIF or BMP image (unknown header)"
    if not full:
        return None
    import tensorflow as tf

    try:
        tf.io.decode_image(head, channels=3, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
        return f"corrupt ({_decode_problem(e)})"
    return None


def check_images(files, full=None):
    """``{path: problem}`` for the files that are not readable images: empty, no JPEG/PNG/GIF/BMP header, or (with
    ``full``; default: when there are at most :data:`FULL_CHECK_LIMIT` files) failing to decode. Results are
    remembered per file (path, size, mtime) for the process."""
    from concurrent.futures import ThreadPoolExecutor

    full = len(files) <= FULL_CHECK_LIMIT if full is None else full
    keys = []
    for f in files:
        try:
            st = os.stat(f)
            keys.append((f, st.st_size, st.st_mtime_ns, full))
        except OSError:
            keys.append((f, None, None, full))
    todo = [k for k in keys if k not in _checked]
    if todo:
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            for key, problem in zip(todo, pool.map(lambda k: _check_one(k[0], k[3]), todo)):
                _checked[key] = problem
    return {k[0]: _checked[k] for k in keys if _checked[k] is not None}


def _drop_bad_images(root, files, labels, bad_images):
    """Check the folder's files; skip (with a counted warning) or refuse the bad ones."""
    if bad_images not in ("skip", "error"):
        raise ValueError(f"bad_images must be 'skip' or 'error', got {bad_images!r}.")
    bad = check_images(files)
    if not bad:
        return files, labels
    listed = "; ".join(f"{os.path.relpath(f, root)}: {why}" for f, why in list(bad.items())[:5])
    more = f"; and {len(bad) - 5} more" if len(bad) > 5 else ""
    if bad_images == "error":
        raise ValueError(
            f"{len(bad)} of {len(files)} files under {root!r} are not readable images: {listed}{more}. Remove or "
            "replace them, or skip them (bad_images='skip', --bad-images skip)."
        )
    import warnings

    warnings.warn(
        f"skipped {len(bad)} of {len(files)} files under {root!r} that are not readable images: {listed}{more} "
        "(--bad-images error stops instead).",
        BadImagesWarning,
        stacklevel=4,
    )
    keep = [i for i, f in enumerate(files) if f not in bad]
    return [files[i] for i in keep], labels[keep]


def _load_folder(path, split, decode=True, bad_images="skip"):
    import tensorflow as tf

    base, start, stop = _parse_split(split)
    root = _folder_split_root(path, base)
    class_names = _class_dirs(root)
    files, labels = [], []
    for i, c in enumerate(class_names):
        found = _images_in(os.path.join(root, c))
        files.extend(found)
        labels.extend([i] * len(found))
    if not files:
        raise FileNotFoundError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {root!r}; expected {root}/<class>/<image files>."
        )
    labels = np.asarray(labels, np.int64)
    # Bad files are dropped before slicing, so train[:90%] / train[90%:] still partition the readable images.
    files, labels = _drop_bad_images(root, files, labels, bad_images)
    if not files:
        raise FileNotFoundError(f"no readable images under {root!r}; expected {root}/<class>/<image files>.")
    idx = _stratified_slice(labels, start, stop)
    files = [files[i] for i in idx]
    labels = labels[idx]

    def decode_file(file, label):
        data = tf.io.read_file(file)
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        image.set_shape((None, None, 3))
        return image, label

    ds = tf.data.Dataset.from_tensor_slices((files, labels))
    if decode:
        ds = ds.map(decode_file, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        ds = ds.map(lambda f, y: (tf.io.read_file(f), y), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    info = DatasetInfo(
        name=path,
        split=split,
        num_classes=len(class_names),
        num_examples=len(files),
        image_shape=(None, None, 3),
        class_names=tuple(class_names),
        source="folder",
        encoded=not decode,
    )
    return ds, info


# ---------------------------------------------------------------------------------------------------------------
# tensorflow-datasets


def _prepare_command(name, data_dir):
    dd = f", data_dir={data_dir!r}" if data_dir else ""
    return f"python -c \"import tensorflow_datasets as tfds; tfds.builder('{name}'{dd}).download_and_prepare()\""


def _load_tfds(name, split, *, data_dir, manual_dir, download, shuffle_files, decode=True):
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise ValueError(
            f"unknown dataset {name!r}: it is not 'digits', not an existing directory of class sub-folders, and "
            "not a tensorflow-datasets name (see https://www.tensorflow.org/datasets/catalog/overview, e.g. "
            "'imagenet2012', 'cifar10', 'oxford_flowers102')."
        ) from None

    info = builder.info
    image_key, label_key = _image_label_keys(name, info)

    if not builder.is_prepared():
        _prepare_or_explain(builder, name, data_dir=data_dir, manual_dir=manual_dir, download=download)

    base, _, _ = _parse_split(split)
    splits = builder.info.splits
    if base not in splits:
        raise ValueError(f"dataset {name!r} has splits {sorted(splits)}, not {base!r}.")
    num_examples = int(splits[split].num_examples)
    decoders = None if decode else {image_key: tfds.decode.SkipDecoding()}
    ds = builder.as_dataset(split=split, shuffle_files=shuffle_files, as_supervised=False, decoders=decoders)
    ds = ds.map(lambda ex: (ex[image_key], ex[label_key]), num_parallel_calls=None)
    feature = builder.info.features[image_key]
    labels = builder.info.features[label_key]
    out = DatasetInfo(
        name=name,
        split=split,
        num_classes=int(labels.num_classes),
        num_examples=num_examples,
        image_shape=tuple(feature.shape),
        class_names=tuple(labels.names),
        source="tfds",
        builder=builder,
        encoded=not decode,
    )
    return ds, out


def _image_label_keys(name, info):
    """(image key, label key) of a tfds image-classification data set, or a clear error."""
    import tensorflow_datasets as tfds

    features = info.features
    keys = info.supervised_keys
    if isinstance(keys, tuple) and len(keys) == 2 and all(isinstance(k, str) for k in keys):
        image_key, label_key = keys
    else:
        image_key = next((k for k, f in features.items() if isinstance(f, tfds.features.Image)), None)
        label_key = next((k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)), None)
    ok = (
        image_key in features
        and label_key in features
        and isinstance(features[image_key], tfds.features.Image)
        and isinstance(features[label_key], tfds.features.ClassLabel)
    )
    if not ok:
        raise ValueError(
            f"tfds dataset {name!r} is not image classification (needs an Image feature and a ClassLabel; "
            f"its features are {dict((k, type(f).__name__) for k, f in features.items())})."
        )
    return image_key, label_key


def _prepare_or_explain(builder, name, *, data_dir, manual_dir, download):
    """Prepare a missing tfds data set from manual_dir (or download when allowed), else raise with instructions."""
    import tensorflow_datasets as tfds

    where = os.fspath(builder.data_dir)
    instructions = getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None)
    if instructions:
        if manual_dir is None:
            files = _manual_files_hint(name)
            raise FileNotFoundError(
                f"tfds dataset {name!r} is not prepared in {where} and needs a manual download. {files}"
                f"Then pass manual_dir (--manual-dir) pointing at that directory; it is prepared once into data_dir. "
                f"tfds's instructions: {' '.join(instructions.split())}"
            )
        manual_dir = os.path.expanduser(manual_dir)
        if not os.path.isdir(manual_dir):
            raise FileNotFoundError(
                f"manual_dir {manual_dir!r} does not exist. {_manual_files_hint(name)}"
            )
        expected = IMAGENET_MANUAL_FILES if name.split(":")[0].split("/")[0] == "imagenet2012" else ()
        missing = [f for f in expected if not os.path.exists(os.path.join(manual_dir, f))]
        if missing:
            raise FileNotFoundError(
                f"manual_dir {manual_dir!r} lacks {', '.join(missing)}: put the ImageNet archives "
                f"{' and '.join(IMAGENET_MANUAL_FILES)} (from https://image-net.org/download-images) there."
            )
        config = tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)
        builder.download_and_prepare(download_config=config)
        return
    if not download:
        raise FileNotFoundError(
            f"tfds dataset {name!r} is not prepared in {where}. Prepare it once on a machine with network access "
            f"(then copy the data directory here if needed): {_prepare_command(name, data_dir)}  -- or pass "
            "download=True (--download) to let tfds download it now."
        )
    builder.download_and_prepare()


def _manual_files_hint(name):
    if name.split(":")[0].split("/")[0] == "imagenet2012":
        return (
            f"Download {' and '.join(IMAGENET_MANUAL_FILES)} from https://image-net.org/download-images (needs an "
            "account) into one directory. "
        )
    return "Download the files tfds's instructions name (below) into one directory. "

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

__all__ = ["DatasetInfo", "load_dataset", "check_images", "align_labels", "BadImagesWarning", "SkippedFilesWarning",
           "IMAGE_EXTENSIONS", "IMAGENET_MANUAL_FILES"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
# Image formats TensorFlow cannot decode: such files in a folder are named in a warning instead of ignored silently.
UNDECODABLE_EXTENSIONS = {".tif": "TIFF", ".tiff": "TIFF", ".heic": "HEIC", ".heif": "HEIF", ".avif": "AVIF",
                          ".jxl": "JPEG XL", ".jp2": "JPEG 2000", ".j2k": "JPEG 2000", ".ico": "ICO", ".svg": "SVG",
                          ".psd": "PSD", ".tga": "TGA", ".ppm": "PPM", ".pgm": "PGM", ".pbm": "PBM", ".dng": "DNG",
                          ".cr2": "raw (CR2)", ".nef": "raw (NEF)"}
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
    follow_links: bool = False,
    max_pixels: Optional[int] = None,
    max_file_bytes: Optional[int] = None,
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
            or ``"error"`` (a ValueError naming them). Files that are not regular files (FIFOs, devices), larger
            than ``max_file_bytes``, or whose header declares more than ``max_pixels`` pixels (GIF frames counted)
            are bad images; they are never read whole.
        follow_links: folders: symbolic links are followed once each (by real path: loops and second paths to
            a folder or file already read are skipped and named in a :class:`SkippedFilesWarning`); links that
            lead outside the data set's folder are skipped unless this is True.
        max_pixels: folders: the pixel limit of one image (default
            :data:`keras_regnet.export.image_guard.DEFAULT_MAX_PIXELS`, the serving limit, 40 megapixels).
        max_file_bytes: folders: the size limit of one file (default 256 MiB).

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
        return _load_folder(path, split, decode, bad_images, follow_links, max_pixels, max_file_bytes)
    if os.path.isdir(os.path.expanduser(name)):
        return _load_folder(os.path.expanduser(name), split, decode, bad_images, follow_links, max_pixels,
                            max_file_bytes)
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


def _fraction(token, n):
    """Where a slice bound falls, as a fraction of the split (negative bounds count from the end)."""
    if token.endswith("%"):
        value = int(token[:-1]) / 100.0
        return value + 1.0 if value < 0 else value
    value = int(token) / max(n, 1)
    return value + 1.0 if value < 0 else value


def _check_slice(split, start, stop, n):
    """Refuse a slice whose start comes after its end (``train[50%:10%]``): it can select nothing."""
    if start is not None and stop is not None and _fraction(start, n) > _fraction(stop, n):
        raise ValueError(
            f"split {split!r} starts after it ends ({start} > {stop}), so it selects no images; write the smaller "
            "bound first, e.g. 'train[10%:50%]'."
        )


def _check_selected(split, selected, labels, where):
    """Refuse a slice that selects no images (a percent slice is taken within each class, rounded)."""
    if len(selected):
        return
    counts = np.bincount(labels) if len(labels) else np.zeros(0, np.int64)
    smallest = int(counts[counts > 0].min()) if (counts > 0).any() else 0
    raise ValueError(
        f"split {split!r} selects no images of {where} ({len(labels)} images in {int((counts > 0).sum())} classes, "
        f"the smallest class has {smallest}; percent slices are taken within each class and rounded). Widen the "
        "slice or add images."
    )


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
    _check_slice(split, start, stop, len(idx))
    picked = _stratified_slice(labels[idx], start, stop)
    _check_selected(split, picked, labels[idx], "the digits data set")
    idx = idx[picked]
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


def _has_images(path) -> bool:
    return any(f.lower().endswith(IMAGE_EXTENSIONS) for f in os.listdir(path))


def _inside(real, top) -> bool:
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def _walk_classes(root, class_names, top, follow_links):
    """``(files per class, skipped [(path, why)])``: the image files under ``root/<class>``, depth first in sorted
    order. Every folder and file is read once by its real path (symlink loops, links to a folder or file already
    read, and links to the data set's root are skipped and named); links leading outside ``top`` (the data set's
    folder) are skipped unless ``follow_links``; files of image formats TensorFlow cannot decode are named."""
    top = os.path.realpath(top)
    seen_dirs = {top, os.path.realpath(root)} | {os.path.realpath(os.path.join(root, c)) for c in class_names}
    seen_files: dict = {}
    skipped, per_class = [], []
    for c in class_names:
        files = []
        start = os.path.join(root, c)
        stack = [(start, os.path.realpath(start))]
        while stack:
            folder, real_folder = stack.pop()
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError as e:
                skipped.append((folder, f"unreadable folder ({e.strerror or e})"))
                continue
            subdirs = []
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                link = entry.is_symlink()
                try:
                    is_dir = entry.is_dir()  # follows links
                except OSError:
                    is_dir = False
                real = os.path.realpath(entry.path) if link else os.path.join(real_folder, entry.name)
                if link and not follow_links and not _inside(real, top):
                    kind = "folder" if is_dir else "file"
                    if is_dir or entry.name.lower().endswith(IMAGE_EXTENSIONS):
                        skipped.append((entry.path, f"link to a {kind} outside the data set (follow_links=True, "
                                                    "--follow-links, reads it)"))
                    continue
                if is_dir:
                    if real in seen_dirs:
                        skipped.append((entry.path, "link to a folder already read (a loop, or a second path to it)"))
                        continue
                    seen_dirs.add(real)
                    subdirs.append((entry.path, real))
                    continue
                ext = os.path.splitext(entry.name)[1].lower()
                if ext not in IMAGE_EXTENSIONS:
                    if ext in UNDECODABLE_EXTENSIONS:
                        skipped.append((entry.path, f"{UNDECODABLE_EXTENSIONS[ext]} images are not decodable by "
                                                    "TensorFlow; convert them to PNG or JPEG"))
                    continue
                if real in seen_files:
                    skipped.append((entry.path, f"same file as {os.path.relpath(seen_files[real], top)} (linked)"))
                    continue
                seen_files[real] = real
                files.append(entry.path)
            stack.extend(reversed(subdirs))
        per_class.append(files)
    return per_class, skipped


def _images_in(path) -> Sequence[str]:
    """The image files under ``path`` (links followed once, none outside ``path``)."""
    return _walk_classes(os.path.dirname(os.path.abspath(path)), [os.path.basename(os.path.abspath(path))],
                         path, False)[0][0]


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


class SkippedFilesWarning(UserWarning):
    """Some entries of an image folder were not read: symlink loops, links outside the data set, second paths to
    a file already read, files of formats TensorFlow cannot decode."""


# Folders up to this many images are checked by decoding every file; larger ones by their header only (a file
# with a valid header but corrupt data then fails during training with TensorFlow's error). The pixel limit and
# the file size limit are checked for every file either way.
FULL_CHECK_LIMIT = 20_000
_checked: dict = {}
_UNKNOWN = "not a JPEG, PNG, GIF or BMP image, nor WebP (unknown header)"


def _decode_problem(error) -> str:
    text = str(getattr(error, "message", None) or error).strip().splitlines()[0]
    text = re.sub(r"^\{\{[^}]*\}\}\s*", "", text)
    return re.sub(r"\s*\[Op:\w+\]$", "", text) or type(error).__name__


def _check_one(path, full, max_pixels, max_bytes):
    """None if ``path`` reads as an image, else what is wrong with it. Only regular files are opened (without
    blocking), at most ``max_bytes`` are read, and the header's pixel count is checked before decoding."""
    import stat

    from keras_regnet.export import image_guard

    try:
        st = os.stat(path)
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    if not stat.S_ISREG(st.st_mode):
        return f"not a regular file ({image_guard.file_kind(st.st_mode)})"
    if st.st_size == 0:
        return "empty file"
    if st.st_size > max_bytes:
        return f"larger than the limit of {max_bytes} bytes ({st.st_size} bytes; max_file_bytes)"
    try:
        f, _ = image_guard.open_regular(path)
        with f:
            data = f.read(image_guard.HEADER_BYTES)
            try:
                fmt = image_guard.image_size(data)[0]
            except ValueError as e:
                if not str(e).startswith("truncated") or len(data) < image_guard.HEADER_BYTES:
                    return _UNKNOWN if str(e).startswith("not a") else f"corrupt ({e})"
                fmt = None  # a JPEG whose frame header comes after 64 KiB of metadata
            if full or fmt in (None, "GIF"):
                data += f.read(max_bytes + 1 - len(data))
    except (OSError, ValueError) as e:
        return f"unreadable ({getattr(e, 'strerror', None) or e})"
    if len(data) > max_bytes:
        return f"larger than the limit of {max_bytes} bytes (max_file_bytes)"
    try:
        image_guard.check_image_bytes(data, max_pixels, what="@")
    except ValueError as e:
        problem = str(e)[3:] if str(e).startswith("@: ") else str(e)
        plain = isinstance(e, (image_guard.ImageTooLargeError, image_guard.UnsupportedImageError))
        return problem if plain else f"corrupt ({problem.rstrip('.')})"
    if not full:
        return None
    import tensorflow as tf

    try:
        tf.io.decode_image(data, channels=3, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
        return f"corrupt ({_decode_problem(e)})"
    return None


def _limits(max_pixels, max_file_bytes):
    from keras_regnet.export import image_guard

    max_pixels = image_guard.check_max_pixels(image_guard.DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels)
    max_bytes = image_guard.DEFAULT_MAX_FILE_BYTES if max_file_bytes is None else max_file_bytes
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ValueError(f"max_file_bytes must be a positive integer, got {max_file_bytes!r}.")
    return max_pixels, max_bytes


def check_images(files, full=None, max_pixels=None, max_file_bytes=None):
    """``{path: problem}`` for the files that are not readable images: not a regular file (FIFO, device), empty,
    larger than ``max_file_bytes`` (default 256 MiB), no JPEG/PNG/GIF/BMP/WebP header, a header declaring more
    than ``max_pixels`` pixels (default: the serving limit, 40 megapixels; GIF frames counted), or (with
    ``full``; default: when there are at most :data:`FULL_CHECK_LIMIT` files) failing to decode. No file is read
    whole before its header passed. Results are remembered per file (path, size, mtime, limits) for the process."""
    from concurrent.futures import ThreadPoolExecutor

    max_pixels, max_bytes = _limits(max_pixels, max_file_bytes)
    full = len(files) <= FULL_CHECK_LIMIT if full is None else full
    keys = []
    for f in files:
        try:
            st = os.stat(f)
            keys.append((f, st.st_size, st.st_mtime_ns, full, max_pixels, max_bytes))
        except OSError:
            keys.append((f, None, None, full, max_pixels, max_bytes))
    todo = [k for k in keys if k not in _checked]
    if todo:
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            for key, problem in zip(todo, pool.map(lambda k: _check_one(k[0], k[3], k[4], k[5]), todo)):
                _checked[key] = problem
    return {k[0]: _checked[k] for k in keys if _checked[k] is not None}


def _listed(items, root, limit=5):
    text = "; ".join(f"{os.path.relpath(f, root)}: {why}" for f, why in items[:limit])
    return text + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def _drop_bad_images(root, files, labels, bad_images, max_pixels=None, max_file_bytes=None):
    """Check the folder's files; skip (with a counted warning) or refuse the bad ones."""
    if bad_images not in ("skip", "error"):
        raise ValueError(f"bad_images must be 'skip' or 'error', got {bad_images!r}.")
    bad = check_images(files, max_pixels=max_pixels, max_file_bytes=max_file_bytes)
    if not bad:
        return files, labels
    listed = _listed(list(bad.items()), root)
    if bad_images == "error":
        raise ValueError(
            f"{len(bad)} of {len(files)} files under {root!r} are not readable images: {listed}. Remove or "
            "replace them, or skip them (bad_images='skip', --bad-images skip)."
        )
    import warnings

    warnings.warn(
        f"skipped {len(bad)} of {len(files)} files under {root!r} that are not readable images: {listed} "
        "(--bad-images error stops instead).",
        BadImagesWarning,
        stacklevel=4,
    )
    keep = [i for i, f in enumerate(files) if f not in bad]
    return [files[i] for i in keep], labels[keep]


def _load_folder(path, split, decode=True, bad_images="skip", follow_links=False, max_pixels=None,
                 max_file_bytes=None):
    import tensorflow as tf

    max_pixels, max_file_bytes = _limits(max_pixels, max_file_bytes)
    base, start, stop = _parse_split(split)
    root = _folder_split_root(path, base)
    class_names = _class_dirs(root)
    per_class, skipped = _walk_classes(root, class_names, path, follow_links)
    if skipped:
        import warnings

        warnings.warn(f"not read under {root!r}: {_listed(skipped, root, 10)}.", SkippedFilesWarning, stacklevel=3)
    files, labels = [], []
    for i, found in enumerate(per_class):
        files.extend(found)
        labels.extend([i] * len(found))
    if not files:
        raise FileNotFoundError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {root!r}; expected {root}/<class>/<image files>."
        )
    labels = np.asarray(labels, np.int64)
    # Bad files are dropped before slicing, so train[:90%] / train[90%:] still partition the readable images.
    files, labels = _drop_bad_images(root, files, labels, bad_images, max_pixels, max_file_bytes)
    if not files:
        raise FileNotFoundError(f"no readable images under {root!r}; expected {root}/<class>/<image files>.")
    empty = [c for i, c in enumerate(class_names) if not np.any(labels == i)]
    if empty:
        raise ValueError(
            f"class folder{'s' if len(empty) > 1 else ''} {', '.join(repr(c) for c in empty)} under {root!r} "
            f"{'have' if len(empty) > 1 else 'has'} no readable images (empty, or every file skipped); a class "
            "without images would be an output the model never learns. Add images or remove the folder."
        )
    _check_slice(split, start, stop, len(files))
    idx = _stratified_slice(labels, start, stop)
    _check_selected(split, idx, labels, repr(root))
    files = [files[i] for i in idx]
    labels = labels[idx]

    def decode_file(file, label):
        data = tf.io.read_file(file)
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        image.set_shape((None, None, 3))
        return image, label

    ds = tf.data.Dataset.from_tensor_slices((tf.constant(files, tf.string), labels))
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


def align_labels(ds, info, class_names):
    """``(ds, info)`` of a split relabelled by class *name* against ``class_names`` (the model's classes, i.e. the
    training split's), so that every split uses one list. A split may lack some of the classes; one with a class
    the model does not have is refused (ValueError naming both lists). Call it on every evaluation split."""
    names = tuple(str(c) for c in class_names)
    own = tuple(str(c) for c in info.class_names)
    if own == names:
        return ds, info
    extra = [c for c in own if c not in names]
    if extra:
        raise ValueError(
            f"the {info.split!r} split of {info.name!r} has class{'es' if len(extra) > 1 else ''} "
            f"{', '.join(repr(c) for c in extra)} that the model does not have: its classes are {list(own)}, the "
            f"model's (from the training split) are {list(names)}. Give every split the same class folders (a split "
            "may lack some)."
        )
    import tensorflow as tf

    table = tf.constant([names.index(c) for c in own], tf.int64)
    ds = ds.map(lambda x, y: (x, tf.gather(table, tf.cast(y, tf.int64))), deterministic=True)
    return ds, dataclasses.replace(info, num_classes=len(names), class_names=names)


# ---------------------------------------------------------------------------------------------------------------
# tensorflow-datasets


def _prepare_command(name, data_dir):
    dd = f", data_dir={data_dir!r}" if data_dir else ""
    return f"python -c \"import tensorflow_datasets as tfds; tfds.builder('{name}'{dd}).download_and_prepare()\""


def _load_tfds(name, split, *, data_dir, manual_dir, download, shuffle_files, decode=True):
    from keras_regnet._extras import require

    tfds = require("tensorflow_datasets", "train", f"the tensorflow-datasets data set {name!r}")

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

"""Images for calibrating and verifying exports: generated samples, image folders, tfds data sets, ``.npy`` arrays.

Every source ends as float32 RGB batches in [0, 255] at the model's input size (the eval transform, resize the
short side then center-crop, is applied to decoded images), so the same arrays calibrate int8 TFLite models and
measure every artifact's agreement with the Keras model.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["sample_images", "load_images", "check_images"]


def sample_images(n, size, channels=3, seed=0):
    """``n`` deterministic synthetic photos-like images (smooth colour fields, edges, a little noise), float32 [0, 255].

    They stand in for real data when none is given (tests, offline exports): natural-image-like statistics (low
    spatial frequencies dominate), so int8 calibration ranges and float/int8 comparisons are meaningful.
    """
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (n, 4, 4, channels)).astype("float32")
    mid = rng.normal(0, 40, (n, 16, 16, channels)).astype("float32")
    images = tf.image.resize(coarse, (size, size), method="bicubic") + tf.image.resize(mid, (size, size))
    images = images.numpy() + rng.normal(0, 6, (n, size, size, channels)).astype("float32")
    return np.clip(images, 0, 255).astype("float32")


def check_images(images, input_shape, what="representative data"):
    """Raise ValueError unless ``images`` is a float batch (N, H, W, C) that fits ``input_shape`` (None = any)."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(
            f"{what} must be a batch of images (N, height, width, channels), got an array of shape {images.shape}."
        )
    expected = tuple(input_shape[-3:])
    for got, want, axis in zip(images.shape[1:], expected, ("height", "width", "channels")):
        if want is not None and got != want:
            raise ValueError(
                f"{what} has shape {images.shape} but the model takes images of shape (N, "
                f"{', '.join('any' if d is None else str(d) for d in expected)}): {axis} is {got}, expected {want}. "
                "Give images of the model's input size (folders and tfds data sets are resized automatically)."
            )
    if not np.issubdtype(images.dtype, np.number):
        raise ValueError(f"{what} must be numeric pixels in [0, 255], got dtype {images.dtype}.")
    return images.astype("float32")


def load_images(source, n, size, channels=3, crop_pct=0.875, interpolation="bicubic", split="train"):
    """``n`` images (float32, (n, size, size, channels), [0, 255]) from ``source``.

    ``source``: ``None`` or ``"samples"`` (generated, see :func:`sample_images`); a NumPy array or ``.npy`` file
    (used as is, shape-checked); a directory of images (searched recursively) or any data set name that
    :func:`keras_regnet.datasets.load_dataset` reads (``"digits"``, ``"folder:PATH"``, a tfds name such as
    ``"imagenet2012"`` with ``split``). Decoded images go through the eval transform (short side to
    size / crop_pct, center crop).
    """
    if source is None or (isinstance(source, str) and source == "samples"):
        return sample_images(n, size, channels)
    if isinstance(source, (np.ndarray, list)):
        return check_images(source, (size, size, channels))[:n]
    source = os.fspath(source)
    if source.endswith(".npy"):
        if not os.path.isfile(source):
            raise FileNotFoundError(f"representative data file {source!r} does not exist.")
        return check_images(np.load(source), (size, size, channels), f"representative data {source!r}")[:n]
    import tensorflow as tf

    from keras_regnet.preprocessing import resize_and_center_crop

    if os.path.isdir(source) and not any(os.path.isdir(os.path.join(source, d)) for d in os.listdir(source)):
        files = _image_files(source)
        images = [_decode(f, channels) for f in files[:n]]
    else:
        from keras_regnet.datasets import load_dataset

        dataset, _ = load_dataset(source, split)
        images = [img for img, _ in dataset.take(n).as_numpy_iterator()]
    if not images:
        raise ValueError(f"representative data {source!r} holds no images.")
    out = []
    for img in images:
        if img.shape[-1] != channels:
            if img.shape[-1] == 1:  # grayscale data set (digits, MNIST) for an RGB model
                img = np.repeat(img, channels, axis=-1)
            else:
                raise ValueError(
                    f"representative data {source!r} has {img.shape[-1]}-channel images; the model takes {channels}."
                )
        out.append(resize_and_center_crop(tf.cast(img, tf.float32), size, crop_pct, interpolation).numpy())
    return np.clip(np.stack(out), 0, 255).astype("float32")


def _image_files(root):
    from keras_regnet.datasets import IMAGE_EXTENSIONS

    files = sorted(
        os.path.join(d, f) for d, _, names in os.walk(root) for f in names if f.lower().endswith(IMAGE_EXTENSIONS)
    )
    if not files:
        raise ValueError(f"image folder {root!r} contains no images ({', '.join(IMAGE_EXTENSIONS)}).")
    return files


def _decode(path, channels):
    """One image file, checked before decoding like every image we read (:mod:`keras_regnet.export.image_guard`:
    a regular file, a supported header, at most the default pixel and byte limits, animated GIFs counted whole)."""
    import tensorflow as tf

    from keras_regnet.export.image_guard import read_image_file

    data = read_image_file(path, what=f"representative image {path!r}")
    try:
        return tf.io.decode_image(data, channels=channels, expand_animations=False).numpy()
    except tf.errors.InvalidArgumentError:
        raise ValueError(f"{path!r} is not an image TensorFlow can decode (JPEG, PNG, BMP, GIF).") from None

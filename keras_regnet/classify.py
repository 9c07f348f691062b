"""Classifying image files: find them, read them safely, decode and apply the eval transform, predict in batches.

Used by ``keras-regnet predict`` and ``explain``. Importing this module loads neither Keras nor TensorFlow (the
command line checks its arguments first); the functions import what they need.
"""

from __future__ import annotations

import os

__all__ = ["IMAGE_EXTENSIONS", "find_images", "read_image_bytes", "load_image", "as_probabilities", "classify_files",
           "imagenet_wnids"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


def find_images(paths):
    """Expand directories (sorted, non-recursive) into image files; refuse missing paths."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(
                os.path.join(path, f) for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTENSIONS)
            )
            if not found:
                raise ValueError(f"directory {path!r} contains no images ({', '.join(IMAGE_EXTENSIONS)}).")
            files.extend(found)
        elif os.path.isfile(path):
            files.append(path)
        else:
            from keras_regnet.export.image_guard import check_image_path

            check_image_path(path)  # missing: "does not exist"; a FIFO, a device...: "not a regular file (FIFO)"
            files.append(path)
    return files


def read_image_bytes(path, max_pixels=None):
    """The file's bytes, refused (ValueError) before decoding when its header declares too many pixels."""
    from keras_regnet.export.image_guard import (
        DEFAULT_MAX_PIXELS,
        ImageTooLargeError,
        UnsupportedImageError,
        read_image_file,
    )

    try:
        # a regular file only (no blocking read of a FIFO), size-bounded, header checked before the rest is read
        data = read_image_file(path, max_pixels or DEFAULT_MAX_PIXELS, what=repr(path))
    except (ImageTooLargeError, UnsupportedImageError):
        raise
    except ValueError as e:
        raise ValueError(f"{path!r} is not an image keras-regnet can decode (JPEG, PNG, BMP, GIF, WebP): {e}") from None
    return data


def load_image(path, size, crop_pct, interpolation, max_pixels=None):
    """Read an image file (size-checked before decoding), decode to RGB and apply the eval transform (float32, [0, 255])."""
    import tensorflow as tf

    from keras_regnet.preprocessing import resize_and_center_crop

    data = read_image_bytes(path, max_pixels)
    try:
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
    except tf.errors.InvalidArgumentError:
        raise ValueError(f"{path!r} is not an image TensorFlow can decode (JPEG, PNG, BMP, GIF, WebP).") from None
    return resize_and_center_crop(image, size, crop_pct, interpolation).numpy()


def as_probabilities(outputs):
    """Model outputs as probabilities: a softmax head's output as it is, logits through a softmax."""
    import numpy as np

    outputs = np.asarray(outputs, dtype="float64")
    if outputs.size and outputs.min() >= 0 and np.allclose(outputs.sum(axis=-1), 1.0, atol=1e-3):
        return outputs
    shifted = np.exp(outputs - outputs.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def classify_files(files, model, size, crop_pct, interpolation, top=5, batch_size=32, progress=False,
                   class_names=None, max_pixels=None):
    """Yield (path, [(class index, label, probability), ...]) for each file, in order, batch by batch."""
    import numpy as np

    try:
        from tqdm import tqdm
    except ImportError:  # progress bars are optional
        tqdm = None
    if class_names is None:
        from keras_regnet.pretrained import class_names as model_class_names  # builds on Keras: only when used

        class_names = model_class_names(model)
    bar = tqdm(total=len(files), unit="img", disable=not progress) if tqdm is not None else None
    for start in range(0, len(files), batch_size):
        chunk = files[start:start + batch_size]
        batch = np.stack([load_image(f, size, crop_pct, interpolation, max_pixels) for f in chunk])
        probs = as_probabilities(model.predict(batch, verbose=0))
        if bar is not None:
            bar.update(len(chunk))
        for path, row in zip(chunk, probs):
            best = np.argsort(-row, kind="stable")[:top]
            yield path, [(int(i), class_names[i], float(row[i])) for i in best]
    if bar is not None:
        bar.close()


def imagenet_wnids(names):
    """The WordNet ids of ImageNet's 1000 classes when ``names`` are ImageNet's class names, else None."""
    if len(names) != 1000:
        return None
    from keras_regnet.preprocessing import imagenet_class_index

    index = imagenet_class_index()
    if [index[i][1] for i in range(1000)] != list(names):
        return None
    return [index[i][0] for i in range(1000)]

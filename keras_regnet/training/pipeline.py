"""tf.data input pipelines with the paper's augmentation (Inception crop, flip, PCA lighting) and eval transform.

Training randomness is stateless and keyed by a per-example seed drawn from ``tf.data.Dataset.random`` (new every
epoch), so a run with the same ``seed`` sees the same augmented images regardless of parallelism. Images leave the
pipeline as float32 RGB in [0, 255] (models normalise internally); labels as one-hot float32 (label smoothing is
done by the loss).
"""

from __future__ import annotations

import math

__all__ = [
    "EIG_VALS",
    "EIG_VECS",
    "inception_crop",
    "pca_lighting",
    "train_transform",
    "eval_transform",
    "train_dataset",
    "eval_dataset",
]

# AlexNet's PCA of ImageNet RGB pixels (in [0, 1] units), as pycls uses it: eigenvalues, and eigenvectors as columns.
EIG_VALS = (0.2175, 0.0188, 0.0045)
EIG_VECS = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


def _rgb(image):
    import tensorflow as tf

    if image.shape[-1] == 1:
        return tf.image.grayscale_to_rgb(image)
    return image


def _crop_window(shape, seed, area_range, aspect_ratio_range):
    import tensorflow as tf

    return tf.image.stateless_sample_distorted_bounding_box(
        shape,
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=seed,
        min_object_covered=0.0,
        aspect_ratio_range=aspect_ratio_range,
        area_range=area_range,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )


def inception_crop(image, seed, size, area_range=(0.08, 1.0), aspect_ratio_range=(3 / 4, 4 / 3)):
    """Random-sized crop (``area_range`` of the image, aspect ratio in ``aspect_ratio_range``) resized to
    ``size x size`` (bilinear); falls back to the whole image when no crop fits in 10 attempts.

    ``image`` may also be encoded bytes (a scalar string): JPEGs then decode only the crop window
    (``decode_and_crop_jpeg``: the same window and pixels as decoding everything, except along the window's
    edges where libjpeg's chroma upsampling differs slightly), other formats in full.
    """
    import tensorflow as tf

    if image.dtype == tf.string:
        return _decode_and_crop(image, seed, size, area_range, aspect_ratio_range)
    begin, crop_size, _ = _crop_window(tf.shape(image), seed, area_range, aspect_ratio_range)
    crop = tf.slice(image, begin, crop_size)
    return tf.image.resize(tf.cast(crop, tf.float32), (size, size), method="bilinear")


def _decode_and_crop(data, seed, size, area_range, aspect_ratio_range):
    import tensorflow as tf

    def jpeg():
        shape = tf.image.extract_jpeg_shape(data)
        begin, crop_size, _ = _crop_window(shape, seed, area_range, aspect_ratio_range)
        window = tf.stack([begin[0], begin[1], crop_size[0], crop_size[1]])
        crop = tf.image.decode_and_crop_jpeg(data, window, channels=3)
        return tf.image.resize(tf.cast(crop, tf.float32), (size, size), method="bilinear")

    def other():
        return inception_crop(decode(data), seed, size, area_range, aspect_ratio_range)

    return tf.cond(tf.io.is_jpeg(data), jpeg, other)


def decode(data):
    """Encoded image bytes -> uint8 RGB (H, W, 3), refused before decoding (InvalidArgumentError) when the header
    declares more than the serving limit of pixels, animated GIF frames counted (:mod:`keras_regnet.export.image_guard`)."""
    import tensorflow as tf

    from keras_regnet.export.image_guard import DEFAULT_MAX_PIXELS, tf_check_image_bytes

    with tf.control_dependencies([tf_check_image_bytes(data, DEFAULT_MAX_PIXELS)]):
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
    image.set_shape((None, None, 3))
    return image


def pca_lighting(image, seed, alpha_std=0.1):
    """AlexNet-style lighting noise: add ``EIG_VECS @ (alpha * EIG_VALS)`` (alpha ~ N(0, alpha_std)) to every
    pixel, in [0, 1] units scaled to the image's [0, 255] range. No clipping, as in pycls."""
    import tensorflow as tf

    alpha = tf.random.stateless_normal((3,), seed=seed, stddev=alpha_std)
    rgb = tf.linalg.matvec(tf.constant(EIG_VECS), alpha * tf.constant(EIG_VALS))
    return tf.cast(image, tf.float32) + 255.0 * rgb


def train_transform(image, seed, size, flip=True, lighting_std=0.1, area_range=(0.08, 1.0)):
    """The paper's training augmentation of one image: Inception crop, horizontal flip, PCA lighting."""
    import tensorflow as tf

    seeds = tf.random.experimental.stateless_split(seed, 3)
    image = inception_crop(image if image.dtype == tf.string else _rgb(image), seeds[0], size, area_range=area_range)
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, seeds[1])
    if lighting_std:
        image = pca_lighting(image, seeds[2], lighting_std)
    return image


def eval_transform(image, size, crop_pct=0.875):
    """Resize the short side to ``size / crop_pct`` and center-crop (``keras_regnet.preprocessing``)."""
    import tensorflow as tf

    from keras_regnet.preprocessing import resize_and_center_crop

    if image.dtype == tf.string:
        image = decode(image)
    return resize_and_center_crop(_rgb(image), size=size, crop_pct=crop_pct, interpolation="bilinear")


def _cache_fits(info, cache_mb):
    shape = info.image_shape
    if cache_mb <= 0 or None in shape:
        return False
    return info.num_examples * math.prod(shape) / 2**20 <= cache_mb


def _options(ds):
    import tensorflow as tf

    options = tf.data.Options()
    # DATA sharding works for every source (in-memory arrays, folders, tfds shards fewer than the workers).
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = True
    return ds.with_options(options)


def train_dataset(ds, info, *, image_size, global_batch_size, seed=0, flip=True, lighting_std=0.1,
                  area_range=(0.08, 1.0), cache_mb=2048, shuffle_buffer=10_000, repeat=True):
    """Shuffled, augmented, batched (``drop_remainder``), one-hot, prefetched training data.

    The decoded images are cached in memory when they have a fixed shape and take at most ``cache_mb`` MiB.
    With ``repeat`` the data set is infinite (pass ``steps_per_epoch`` to ``fit``); the shuffle order and
    augmentation change every epoch.
    """
    import tensorflow as tf

    num_classes = info.num_classes
    if _cache_fits(info, cache_mb):
        ds = ds.cache()
    if None in info.image_shape and not getattr(info, "encoded", False):
        # Decoded variable-size images (ImageNet: ~0.4 MB each) held in the buffer: cap its memory at ~1 GB;
        # tfds also reads its shards in random order.
        shuffle_buffer = min(shuffle_buffer, 2048)
    ds = ds.shuffle(min(shuffle_buffer, max(info.num_examples, 1)), seed=seed, reshuffle_each_iteration=True)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    ds = tf.data.Dataset.zip((ds, seeds))

    def augment(example, s):
        image, label = example
        image = train_transform(image, s, image_size, flip=flip, lighting_std=lighting_std, area_range=area_range)
        return image, tf.one_hot(tf.cast(label, tf.int32), num_classes)

    ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(global_batch_size, drop_remainder=True)
    return _options(ds.prefetch(tf.data.AUTOTUNE))


def eval_dataset(ds, info, *, image_size, global_batch_size, crop_pct=0.875, cache_mb=2048):
    """Center-cropped, batched (last batch kept), one-hot, prefetched evaluation data, in a fixed order."""
    import tensorflow as tf

    num_classes = info.num_classes

    def transform(image, label):
        return eval_transform(image, image_size, crop_pct), tf.one_hot(tf.cast(label, tf.int32), num_classes)

    ds = ds.map(transform, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    # Cached after the transform (float32, fixed size): small validation sets are then read once.
    if cache_mb > 0 and info.num_examples * image_size * image_size * 3 * 4 / 2**20 <= cache_mb:
        ds = ds.cache()
    ds = ds.batch(global_batch_size)
    return _options(ds.prefetch(tf.data.AUTOTUNE))

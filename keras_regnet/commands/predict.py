"""``keras-regnet predict``: classify images with a pretrained model, using the weights' own eval transform."""

from __future__ import annotations

import json
import os

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


def add_arguments(parser):
    """Register the command's flags."""
    parser.add_argument("images", nargs="+", metavar="IMAGE",
                        help="image files (JPEG, PNG, BMP, GIF) or directories of images (read in batches)")
    parser.add_argument("--model", default="RegNetY600MF",
                        help="one of the 24 paper models, e.g. RegNetY600MF or RegNetX-1.6GF (default RegNetY600MF)")
    parser.add_argument("--weights", default="imagenet",
                        help="'imagenet' (the paper's weights, default), a registry tag such as 'imagenet:ra3_in1k' "
                             "(see keras_regnet.list_weights), or a local weights file (.weights.h5, .keras, "
                             ".safetensors, .pyth, Keras 2 .h5)")
    parser.add_argument("--top", type=int, default=5, help="how many classes to print per image (default 5)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
    add_eval_transform_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object per image instead of text")


def add_eval_transform_arguments(parser, size_default="the weights' eval size from the registry (224 for files)"):
    """--size, --crop-pct, --interpolation: the eval transform, defaulting to the weights' registry entry."""
    parser.add_argument("--size", type=int, default=None, help=f"eval resolution; default: {size_default}")
    parser.add_argument("--crop-pct", type=float, default=None,
                        help="center-crop fraction: resize the short side to size/crop_pct, crop size x size; "
                             "default: the weights' value from the registry (0.875 for files)")
    parser.add_argument("--interpolation", default=None, choices=["bicubic", "bilinear", "area", "nearest"],
                        help="resize method; default: the weights' value from the registry (bicubic)")


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
            raise FileNotFoundError(f"image {path!r} does not exist.")
    return files


def eval_config(model_name, weights, size=None, crop_pct=None, interpolation=None):
    """(size, crop_pct, interpolation): flags first, then the registry entry of ``weights``, then 224/0.875/bicubic."""
    from keras_regnet.weights import get_weights_info, is_registry_weights

    info = {}
    if is_registry_weights(weights):
        info = get_weights_info(model_name, weights)
    return (
        size or info.get("size", 224),
        crop_pct or info.get("crop_pct", 0.875),
        interpolation or info.get("interpolation", "bicubic"),
    )


def build_classifier(model_name, weights, size):
    """The model with its ImageNet head; Keras 2 ``.h5`` files get the Keras 2 architecture they need."""
    from keras_regnet import convert, models

    kwargs = {}
    if os.path.isfile(weights) and weights.endswith(".h5") and convert.is_keras2_h5(weights):
        kwargs = {"padding": "same", "normalization": "unit"}
    return models.build_model(model_name, weights=weights, input_shape=(size, size, 3), **kwargs)


def load_image(path, size, crop_pct, interpolation):
    """Decode an image file to RGB and apply the eval transform (float32, [0, 255])."""
    import tensorflow as tf

    from keras_regnet.preprocessing import resize_and_center_crop

    try:
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    except tf.errors.InvalidArgumentError:
        raise ValueError(f"{path!r} is not an image TensorFlow can decode (JPEG, PNG, BMP, GIF).") from None
    return resize_and_center_crop(image, size, crop_pct, interpolation).numpy()


def predict(files, model, size, crop_pct, interpolation, top=5, batch_size=32, progress=False):
    """Yield (path, [(wordnet id, label, probability), ...]) for each file, in order, batch by batch."""
    import numpy as np
    from tqdm import tqdm

    from keras_regnet.preprocessing import decode_predictions

    bar = tqdm(total=len(files), unit="img", disable=not progress)
    for start in range(0, len(files), batch_size):
        chunk = files[start:start + batch_size]
        batch = np.stack([load_image(f, size, crop_pct, interpolation) for f in chunk])
        probs = model.predict(batch, verbose=0)
        bar.update(len(chunk))
        yield from zip(chunk, decode_predictions(probs, top=top))
    bar.close()


def run(args):
    """Classify the images and print the top classes of each."""
    from keras_regnet import specs
    from keras_regnet.weights import WeightsDownloadError, WeightsIntegrityError

    if args.top < 1 or args.top > 1000:
        raise ValueError(f"--top must be between 1 and 1000, got {args.top}.")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be positive, got {args.batch_size}.")
    name = specs.canonical_name(args.model)
    files = find_images(args.images)
    size, crop_pct, interpolation = eval_config(name, args.weights, args.size, args.crop_pct, args.interpolation)
    try:
        model = build_classifier(name, args.weights, size)
    except (WeightsDownloadError, WeightsIntegrityError) as e:
        raise ValueError(str(e)) from None
    for path, preds in predict(files, model, size, crop_pct, interpolation, args.top, args.batch_size,
                               progress=len(files) > args.batch_size):
        if args.json:
            print(json.dumps({"image": path, "top": [
                {"wnid": w, "label": label, "probability": round(p, 6)} for w, label, p in preds
            ]}))
        else:
            print(path)
            for w, label, p in preds:
                print(f"  {p:8.4f}  {w}  {label}")
    return 0

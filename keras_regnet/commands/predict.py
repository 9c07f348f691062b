"""``keras-regnet predict``: classify images with a pretrained model, using the weights' own eval transform."""

from __future__ import annotations

import json
import os

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


def add_arguments(parser):
    """Register the command's flags."""
    parser.add_argument("images", nargs="+", metavar="IMAGE",
                        help="image files (JPEG, PNG, BMP, GIF, WebP) or directories of images (read in batches)")
    parser.add_argument("--model", default=None,
                        help="one of the 24 paper models (e.g. RegNetY600MF, RegNetX-1.6GF, RegNetY006), or your "
                             "own saved model (FILE.keras, e.g. a fine-tuned best.keras: its class names and eval "
                             "transform are used) (default RegNetY600MF)")
    parser.add_argument("--weights", default=None,
                        help="for a paper model: 'imagenet' (the paper's weights, default), a registry tag such as "
                             "'imagenet:ra3_in1k' (see keras_regnet.list_weights), a local weights file "
                             "(.weights.h5, .safetensors, .pyth, Keras 2 .h5), a whole model (.keras, same as "
                             "--model FILE.keras), or 'none' (random weights)")
    parser.add_argument("--top", type=int, default=5, help="how many classes to print per image (default 5)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
    parser.add_argument("--max-pixels", type=int, default=None,
                        help="refuse images whose header declares more pixels than this, before decoding "
                             "(default 40 million)")
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
            from keras_regnet.export.image_guard import check_image_path

            check_image_path(path)  # missing: "does not exist"; a FIFO, a device...: "not a regular file (FIFO)"
            files.append(path)
    return files


def model_source(args):
    """``(model_file, model_name, weights)`` from --model/--weights: a .keras file is a whole model of its own."""
    model, weights = args.model, args.weights
    if weights is not None and weights.lower().endswith(".keras"):
        if model is not None and model.lower().endswith(".keras"):
            raise ValueError("give the .keras model once: --model FILE.keras (it holds its own weights).")
        if model is not None:
            raise ValueError(
                f"--weights {weights!r} is a whole saved model, not weights for {model!r}: "
                f"use --model {weights!r} (without --model NAME)."
            )
        return weights, None, None
    if model is not None and (model.lower().endswith(".keras") or model.startswith("hf://") or os.path.isdir(model)):
        if weights is not None:
            raise ValueError(f"--weights cannot be used with --model {model!r}: a saved model holds its own weights.")
        return model, None, None
    if model is not None and os.path.exists(model):
        raise ValueError(
            f"--model {model!r} is a file but not a .keras model; give a paper model name with the file as "
            "--weights (e.g. --model RegNetY600MF --weights model.safetensors)."
        )
    return None, model or "RegNetY600MF", "imagenet" if weights is None else weights


def load_for_inference(args):
    """``(model, class names, size, crop_pct, interpolation)`` for --model/--weights and the eval flags."""
    from keras_regnet.loading import load_classifier

    path, name, weights = model_source(args)
    return load_classifier(path or name, None if path else weights, args.size, args.crop_pct, args.interpolation)


def read_image_bytes(path, max_pixels=None):
    """The file's bytes, refused (ValueError) before decoding when its header declares too many pixels."""
    from keras_regnet.export.image_guard import DEFAULT_MAX_PIXELS, ImageTooLargeError, check_image_bytes

    from keras_regnet.export.image_guard import read_image_file

    try:
        # a regular file only (no blocking read of a FIFO), size-bounded, header checked before the rest is read
        data = read_image_file(path, max_pixels or DEFAULT_MAX_PIXELS, what=repr(path))
        check_image_bytes(data, max_pixels or DEFAULT_MAX_PIXELS, what=repr(path))
    except ImageTooLargeError:
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


def predict(files, model, size, crop_pct, interpolation, top=5, batch_size=32, progress=False, class_names=None,
            max_pixels=None):
    """Yield (path, [(class index, label, probability), ...]) for each file, in order, batch by batch."""
    import numpy as np

    try:
        from tqdm import tqdm
    except ImportError:  # progress bars are optional
        tqdm = None
    if class_names is None:
        from keras_regnet.pretrained import class_names as model_class_names

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


def run(args):
    """Classify the images and print the top classes of each."""
    if args.top < 1:
        raise ValueError(f"--top must be at least 1, got {args.top}.")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be positive, got {args.batch_size}.")
    if args.max_pixels is not None and args.max_pixels < 1:
        raise ValueError(f"--max-pixels must be positive, got {args.max_pixels}.")
    files = find_images(args.images)
    model, names, size, crop_pct, interpolation = load_for_inference(args)
    top = min(args.top, len(names))
    wnids = None
    if len(names) == 1000:
        from keras_regnet.preprocessing import imagenet_class_index

        index = imagenet_class_index()
        if [index[i][1] for i in range(1000)] == list(names):
            wnids = [index[i][0] for i in range(1000)]
    for path, preds in predict(files, model, size, crop_pct, interpolation, top, args.batch_size,
                               progress=len(files) > args.batch_size, class_names=names,
                               max_pixels=args.max_pixels):
        if args.json:
            rows = []
            for i, label, p in preds:
                row = {"class_index": i, "label": label, "probability": round(p, 6)}
                if wnids is not None:
                    row["wnid"] = wnids[i]
                rows.append(row)
            print(json.dumps({"image": path, "top": rows}))
        else:
            print(path)
            for i, label, p in preds:
                print(f"  {p:8.4f}  {wnids[i] if wnids else i}  {label}")
    return 0

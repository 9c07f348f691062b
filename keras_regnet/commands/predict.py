"""``keras-regnet predict``: classify images with a pretrained model, using the weights' own eval transform."""

from __future__ import annotations

import json
import os

from keras_regnet.classify import classify_files, find_images, imagenet_wnids  # noqa: F401  (find_images: explain)


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
    wnids = imagenet_wnids(names)
    for path, preds in classify_files(files, model, size, crop_pct, interpolation, top, args.batch_size,
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

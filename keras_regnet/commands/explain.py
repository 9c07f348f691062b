"""``keras-regnet explain``: where a classifier looks, as heatmap overlays (Grad-CAM and friends, via tf-keras-vis)."""

from __future__ import annotations

import os

from keras_regnet.classify import find_images, load_image
from keras_regnet.commands.predict import add_eval_transform_arguments, load_for_inference


def add_arguments(parser):
    """Register the command's flags."""
    parser.add_argument("images", nargs="+", metavar="IMAGE",
                        help="image files (JPEG, PNG, BMP, GIF) or directories of images; one figure row per image")
    parser.add_argument("--model", default=None,
                        help="one of the 24 paper models (e.g. RegNetY600MF, RegNetX-1.6GF), or a saved classifier "
                             "(FILE.keras, e.g. a fine-tuned model: its class names and eval transform are used) "
                             "(default RegNetY600MF)")
    parser.add_argument("--weights", default=None,
                        help="for a paper model: 'imagenet' (default), a registry tag such as 'imagenet:<tag>', a "
                             "local weights file, or 'none' for random weights (a sanity check: maps are then noise)")
    # No argparse choices: keras_regnet.explain validates the method, so this parser does not import TensorFlow.
    parser.add_argument("--method", default="gradcam",
                        help="gradcam (default), gradcam++, layercam, scorecam (gradient free, slower) or saliency "
                             "(input gradients)")
    parser.add_argument("--class-index", type=int, default=None,
                        help="class to explain (0-based); default: each image's predicted class")
    parser.add_argument("--layer", default=None,
                        help="layer for the CAM methods; default: the last stage output (e.g. s4_b7_out)")
    add_eval_transform_arguments(
        parser, size_default="the weights' eval size (224), or the saved model's input size"
    )
    parser.add_argument("--alpha", type=float, default=0.45, help="heatmap opacity in the overlay, 0..1 (default 0.45)")
    parser.add_argument("--max-n", type=int, default=64,
                        help="scorecam only: use the N most varying channels (Faster-Score-CAM); 0 = all (default 64)")
    parser.add_argument("--out", default="cam.png", help="output PNG: input and overlay side by side (default cam.png)")


def run(args):
    """Explain each image's prediction and write one PNG with input and heatmap overlay per row."""
    import numpy as np

    from keras_regnet.explanations import explain, plot_explanations

    if not 0 <= args.alpha <= 1:
        raise ValueError(f"--alpha must be in [0, 1], got {args.alpha}.")
    if args.max_n < 0:
        raise ValueError(f"--max-n must be 0 (all channels) or positive, got {args.max_n}.")
    if not args.out.lower().endswith(".png"):
        raise ValueError(f"--out must be a .png file, got {args.out!r}.")
    files = find_images(args.images)
    model, names, size, crop_pct, interpolation = load_for_inference(args)
    images = np.stack([load_image(f, size, crop_pct, interpolation) for f in files])
    probs = np.asarray(model.predict(images, verbose=0))
    classes = probs.shape[-1]
    if args.class_index is not None and not 0 <= args.class_index < classes:
        raise ValueError(f"--class-index {args.class_index} out of range: the model has {classes} classes "
                         f"(0..{classes - 1}).")
    targets = np.argmax(probs, axis=-1) if args.class_index is None else np.full(len(files), args.class_index)
    kwargs = {"max_N": args.max_n or None} if args.method == "scorecam" else {}
    heatmaps = explain(model, images, method=args.method, class_index=targets, layer=args.layer, **kwargs)
    titles = []
    for path, target, row in zip(files, targets, probs):
        label = names[int(target)] if int(target) < len(names) else f"class {int(target)}"
        titles.append(f"{args.method}: {label} (p={row[target]:.2f})")
        print(f"{path}: {label} (class {int(target)}, p={row[target]:.4f})")
    plot_explanations(images, heatmaps, titles=titles, path=args.out, alpha=args.alpha)
    print(f"wrote {args.out}")
    return 0

"""``keras-regnet preset NAME --weights TAG --output DIR``: a keras-hub preset of one of the pretrained models."""

from __future__ import annotations

import os


def add_arguments(parser):
    """Register the command's flags."""
    parser.description = (
        "Write a keras-hub preset folder (config.json, model.weights.h5, task files, a model card stating the source "
        "weights, their license and published top-1) of a paper model with registry weights, ready to mirror on "
        "your own Hub account (keras-regnet push DIR hf://owner/name) or host."
    )
    parser.add_argument("name", metavar="NAME", help="a paper model name (e.g. RegNetY600MF, regnety_080.ra3_in1k)")
    parser.add_argument("--weights", default="imagenet",
                        help="'imagenet' (default) or any registry tag, e.g. 'imagenet:ra3_in1k' (see "
                             "keras_regnet.list_weights)")
    parser.add_argument("--output", required=True, metavar="DIR", help="the preset folder to write")
    parser.add_argument("--no-top", action="store_true", help="a backbone preset without the ImageNet classifier")


def run(args):
    """Build the model with its weights, write the preset, say what it holds."""
    from keras_regnet import specs

    specs.canonical_name(specs.split_model_name(args.name)[0])  # an unknown name fails before any download
    if os.path.isfile(args.output):
        raise ValueError(f"--output {args.output!r} is a file; give a folder to create.")
    if str(args.weights).lower() == "none":
        raise ValueError("a preset of random weights is not useful to share: pass --weights imagenet or a registry "
                         "tag (see keras_regnet.list_weights(NAME)).")
    from keras_regnet.hub import save_to_preset
    from keras_regnet.models import get_model

    model = get_model(args.name, weights=args.weights, include_top=not args.no_top)
    folder = save_to_preset(model, args.output)
    cfg = model.pretrained_cfg
    import json

    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        saved = json.load(f)["config"]["pretrained_cfg"]
    print(f"wrote {folder}: {model.describe()}")
    print(f"weights {saved.get('weights_tag') or cfg.get('weights')} from {saved.get('source')}, license "
          f"{saved.get('license')}, published ImageNet-1k top-1 {saved.get('top1')}%")
    print(f"share it with: keras-regnet push {folder} hf://OWNER/NAME")
    return 0

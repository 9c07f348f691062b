"""``keras-regnet push MODEL hf://owner/name``: share a model on the Hugging Face Hub as a keras-hub preset."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile

# Run settings (the run's config.json beside a trained .keras file) that the model card states.
_TRAINING_KEYS = ("model", "preset", "weights", "dataset", "epochs", "image_size", "batch_size", "lr", "freeze_until",
                  "unfreeze_epoch", "label_smoothing", "mixed_precision")


def add_arguments(parser):
    """Register the command's flags."""
    parser.description = (
        "Upload MODEL to the Hugging Face Hub as a keras-hub preset (config.json, model.weights.h5, the classifier's "
        "task files, a model card) in one commit. keras_regnet.get_model('hf://owner/name'), keras-regnet "
        "predict --model hf://owner/name and keras-hub's from_preset load it. The token comes from HF_TOKEN or "
        "'hf auth login'; HF_ENDPOINT selects another Hub."
    )
    parser.add_argument("model", metavar="MODEL",
                        help="a .keras file (e.g. runs/NAME/best.keras), a preset folder, an hf:// preset, or a paper "
                             "model name with --weights")
    parser.add_argument("repo", metavar="hf://OWNER/NAME", help="the Hub repository (created if it does not exist)")
    parser.add_argument("--weights", default=None,
                        help="for a paper model name: 'imagenet' (default) or a registry tag such as "
                             "'imagenet:ra3_in1k'")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--message", default=None, help="the commit message")


def _training_info(path):
    """What the run's config.json (beside a trained .keras file) says about the training, else None."""
    config = os.path.join(os.path.dirname(os.path.abspath(path)), "config.json")
    try:
        with open(config, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or "dataset" not in data:
        return None
    return {k: data[k] for k in _TRAINING_KEYS if data.get(k) is not None and not isinstance(data[k], (dict, list))}


def run(args):
    """Check the URI, build or load the model, write its preset, upload it."""
    from keras_regnet.hub import is_preset, parse_hub_uri

    parse_hub_uri(args.repo, allow_revision=False)  # a bad URI fails before anything is loaded
    source = args.model
    if is_preset(source) and not source.startswith("hf://"):
        if args.weights is not None:
            raise ValueError(f"--weights cannot be given for the preset folder {source!r}: it holds its own weights.")
        return _upload(args, source)
    from keras_regnet.hub import save_to_preset
    from keras_regnet.loading import load_source
    from keras_regnet.model import RegNetModel

    weights = args.weights
    if weights is None and not (source.endswith(".keras") or source.startswith("hf://") or os.path.isdir(source)):
        weights = "imagenet"
    if weights is not None and weights.lower() == "none":
        weights = None
    loaded = load_source(source, weights=weights)
    if not isinstance(loaded.model, RegNetModel):
        raise ValueError(f"{source!r} holds a {type(loaded.model).__name__} that wraps a RegNet; push shares RegNet "
                         "models (a RegNetModel, e.g. a fine-tuned best.keras). Share other models with "
                         "model.save('hf://owner/name').")
    training = _training_info(source) if source.endswith(".keras") else None
    folder = tempfile.mkdtemp(prefix="keras-regnet-push-")
    try:
        save_to_preset(loaded.model, os.path.join(folder, "preset"), training=training)
        return _upload(args, os.path.join(folder, "preset"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _upload(args, folder):
    from keras_regnet.hub import upload_preset

    url = upload_preset(args.repo, folder, private=True if args.private else None, commit_message=args.message)
    names = sorted(os.listdir(folder))
    print(f"pushed {args.repo} ({', '.join(names)}): {url}")
    print(f"load it with: keras_regnet.get_model({args.repo!r})  |  keras-regnet predict --model {args.repo} IMAGE")
    sys.stdout.flush()
    return 0

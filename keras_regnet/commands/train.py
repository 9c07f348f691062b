"""``keras-regnet train`` / ``python recipes/train.py``: train a RegNet with the paper's recipe or fine-tune one.

Settings are taken from the preset, then a ``--config`` YAML/JSON file, then the flags given on the command line.
"""

from __future__ import annotations

import argparse
import sys

# keras_regnet.training.strategy.STRATEGIES, repeated so that building the parser imports no Keras (tested equal).
STRATEGIES = ("auto", "mirrored", "multi_worker", "tpu", "one_device")

# flag, TrainConfig field, type, help. Every flag defaults to None, meaning "not given": preset/config decide.
_FLAGS = [
    ("--model", "model", str, "paper model name, e.g. RegNetY600MF or RegNetX-1.6GF (a spec dict: use --config)"),
    ("--weights", "weights", str, "backbone weights for fine-tuning: 'imagenet', a registry tag or a weights file "
     "(a new head is added); finetune preset default: imagenet"),
    ("--freeze-until", "freeze_until", str, "freeze the stages up to this one: stem, s1..s4 or backbone"),
    ("--unfreeze-epoch", "unfreeze_epoch", int, "epoch at which the frozen stages become trainable"),
    ("--dropout", "dropout", float, "dropout before the classifier (finetune default 0.2)"),
    ("--dataset", "dataset", str, "imagenet2012, any tfds image-classification name, 'digits', or a folder of "
     "class sub-folders (PATH or folder:PATH)"),
    ("--data-dir", "data_dir", str, "tfds data directory (default ~/tensorflow_datasets)"),
    ("--manual-dir", "manual_dir", str, "directory with manually downloaded archives (imagenet2012: "
     "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar); the data set is prepared from it once"),
    ("--train-split", "train_split", str, "training split, tfds slicing allowed (default train)"),
    ("--val-split", "val_split", str, "validation split; 'auto' (default: validation/val/test if present, else "
     "10%% of each class held out, the same slice every run) or 'none' (best.keras then means best training "
     "accuracy)"),
    ("--bad-images", "bad_images", str, "folders: 'skip' files that are not readable images, with a warning "
     "naming them (default), or 'error'"),
    ("--max-pixels", "max_pixels", int, "folders: images whose header declares more pixels are bad images (GIF "
     "frames counted; default 40000000, as serving)"),
    ("--max-file-bytes", "max_file_bytes", int, "folders: larger files are bad images, never read (default 256 MiB)"),
    ("--image-size", "image_size", int, "training and evaluation resolution (default: 224; a fixed-size data set "
     "smaller than that: its own size, at least 32)"),
    ("--eval-crop-pct", "eval_crop_pct", float, "evaluation: resize to size/crop_pct, center crop (default 0.875: "
     "256->224; small images: 1, the whole image)"),
    ("--min-crop-area", "min_crop_area", float, "smallest Inception-crop area fraction (default 0.08; small "
     "images: 0.75)"),
    ("--lighting-std", "lighting_std", float, "PCA lighting noise std (default 0.1, finetune 0; small images: 0)"),
    ("--cache-mb", "cache_mb", int, "cache fixed-size decoded data up to this many MiB in memory (default 2048)"),
    ("--epochs", "epochs", int, "number of epochs (default 100)"),
    ("--batch-size", "batch_size", int, "GLOBAL batch size, divisible by the replicas (default 128 per replica, "
     "halved down to 8 until an epoch has 40 steps)"),
    ("--lr", "lr", float, "learning rate per 128 images, scaled linearly with the global batch (default 0.1)"),
    ("--warmup-epochs", "warmup_epochs", float, "linear warm-up epochs, < --epochs (default 5, finetune 1; "
     "at most a tenth of --epochs)"),
    ("--warmup-factor", "warmup_factor", float, "warm-up starts at this fraction of the rate (default 0.1)"),
    ("--min-lr", "min_lr", float, "cosine floor as a fraction of the peak rate (default 0)"),
    ("--momentum", "momentum", float, "SGD momentum (default 0.9, Nesterov)"),
    ("--weight-decay", "weight_decay", float, "L2 weight decay (default 5e-5)"),
    ("--decay-on", "decay_on", str, "which weights decay: all (paper) or kernels"),
    ("--label-smoothing", "label_smoothing", float, "label smoothing (default 0, as the paper)"),
    ("--ema", "ema", float, "EMA momentum of the weights, e.g. 0.9999 (default 0: off)"),
    ("--precise-bn-images", "precise_bn_images", int, "training images for precise BN after each epoch "
     "(default 8192; 0 disables)"),
    ("--precision", "precision", str, "float32, mixed_float16 or mixed_bfloat16 (softmax stays float32)"),
    ("--strategy", "strategy", str, "auto, mirrored, multi_worker (TF_CONFIG), tpu or one_device"),
    ("--tpu", "tpu", str, "TPU name or grpc:// address for --strategy tpu ('local' on a TPU VM)"),
    ("--output-dir", "output_dir", str, "run directory: logs, checkpoints, backups (default runs/<model>-<data>)"),
    ("--export-dir", "export_dir", str, "SavedModel of the best model (default saved_models/<model>-<data>)"),
    ("--steps-per-epoch", "steps_per_epoch", int, "steps per epoch (default: the training set once)"),
    ("--val-steps", "val_steps", int, "validation batches per epoch (default: all)"),
    ("--seed", "seed", int, "random seed of initialisation, shuffling and augmentation (default 0)"),
]
_SWITCHES = [
    ("--download", "download", True, "let tfds download a missing data set (needs network)"),
    ("--follow-links", "follow_links", True, "folders: also follow symbolic links that lead outside the data set's "
     "folder (each link is read once; loops are skipped)"),
    ("--jit", "jit", True, "compile the train step with XLA"),
    ("--flip", "flip", True, "random horizontal flips (default, except digit-like data sets)"),
    ("--no-flip", "flip", False, "no random horizontal flips"),
    ("--no-nesterov", "nesterov", False, "plain momentum instead of Nesterov"),
    ("--lr-per-step", "lr_per_epoch", False, "update the rate every step (default for runs under 10 epochs)"),
    ("--lr-per-epoch", "lr_per_epoch", True, "update the rate once per epoch, as pycls (default from 10 epochs)"),
    ("--no-export", "export", False, "skip the SavedModel export at the end"),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the training flags on ``parser``."""
    parser.add_argument("--preset", default=None, choices=["imagenet", "finetune"],
                        help="imagenet: the paper's recipe (default); finetune: pretrained backbone, new head")
    parser.add_argument("--config", default=None, help="YAML or JSON file of settings (TrainConfig field names); "
                        "flags given here override it")
    choices = {
        "strategy": STRATEGIES,
        "bad_images": ("skip", "error"),
        "precision": ("float32", "mixed_float16", "mixed_bfloat16"),
        "decay_on": ("all", "kernels"),
    }
    for flag, field, typ, help_text in _FLAGS:
        parser.add_argument(flag, dest=field, type=typ, default=None, choices=choices.get(field), help=help_text)
    for flag, field, value, help_text in _SWITCHES:
        parser.add_argument(flag, dest=field, action="store_const", const=value, default=None, help=help_text)
    parser.add_argument("--quiet", action="store_true", help="no progress bars (one line per epoch)")


def config_from_args(args):
    """The TrainConfig: preset, then --config file, then the flags given."""
    from keras_regnet.training.presets import load_config_file, make_config

    values = load_config_file(args.config) if args.config else {}
    preset = args.preset or values.pop("preset", None) or "imagenet"
    values.pop("preset", None)
    fields = [f for _, f, _, _ in _FLAGS] + [f for _, f, _, _ in _SWITCHES]
    values.update({f: getattr(args, f) for f in fields if getattr(args, f, None) is not None})
    if getattr(args, "quiet", False):
        values["verbose"] = 2
    return make_config(preset, **values)


def run(args) -> int:
    """Train; exit status 0 when finished, 1 when the run diverged (one line on stderr says why)."""
    from keras_regnet.training.trainer import train

    config = config_from_args(args)
    result = train(config)
    if result.status != "finished":
        print(" ".join(str(result.message).split()), file=sys.stderr)
        return 1
    exported = f"SavedModel {result.export_dir}" if result.export_dir else "not exported (--no-export)"
    print(f"finished: run directory {result.run_dir}, best model {result.best_model}, {exported}")
    return 0


def main(argv=None) -> int:
    """``python recipes/train.py ...``."""
    parser = argparse.ArgumentParser(
        prog="train.py",
        description="Train a RegNet with the paper's ImageNet recipe (SGD+Nesterov, lr 0.1 per 128 images, "
        "5-epoch warm-up + cosine, weight decay 5e-5, precise BN, Inception crop + flip + PCA lighting) or "
        "fine-tune a pretrained one, on tf.distribute, resumable: rerun the same command to continue.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 2

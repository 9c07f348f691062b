"""Training configurations: the paper's ``imagenet`` recipe and a ``finetune`` recipe, overridable from YAML/JSON."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional, Union

__all__ = ["TrainConfig", "PRESETS", "RECIPE", "make_config", "load_config_file", "resolve_defaults", "describe_defaults",
           "check_settings"]


@dataclasses.dataclass
class TrainConfig:
    """Everything a run needs. Field docs double as the command line's ``--help`` (see commands/train.py)."""

    # what to train
    model: Union[str, dict] = "RegNetY600MF"  # paper model name, or an AnyNet/RegNet spec dict (specs.to_dict())
    preset: str = "imagenet"
    weights: Optional[str] = None  # backbone weights for finetune: 'imagenet', a registry tag, or a file
    freeze_until: Optional[str] = None  # finetune: last frozen stage ('stem', 's1'..'s4', 'backbone')
    unfreeze_epoch: Optional[int] = None  # finetune: epoch at which the frozen stages become trainable
    dropout: float = 0.0  # dropout before the new head (finetune)
    # data
    dataset: str = "imagenet2012"
    data_dir: Optional[str] = None
    manual_dir: Optional[str] = None
    download: bool = False
    train_split: str = "train"
    val_split: Optional[str] = "auto"  # 'auto': validation/val/test when present; None/'none': no validation
    # Settings left at None are chosen from the recipe and the data set when training starts (resolve_defaults):
    # small fixed-size images (digits, CIFAR) get their own size, a batch that gives enough steps, mild crops.
    image_size: Optional[int] = None  # recipe 224; fixed-size data sets smaller than that: their own size (>= 32)
    eval_crop_pct: Optional[float] = None  # resize short side to image_size / crop_pct, center crop (0.875: 256->224)
    min_crop_area: Optional[float] = None  # Inception crop area range [min, 1] (recipe 0.08)
    flip: Optional[bool] = None  # random horizontal flips (recipe: yes; not for digits)
    lighting_std: Optional[float] = None  # AlexNet PCA lighting noise (recipe 0.1; 0 disables)
    bad_images: str = "skip"  # folder data sets: 'skip' unreadable images with a warning naming them, or 'error'
    follow_links: bool = False  # folders: follow symbolic links that lead outside the data set's folder
    max_pixels: Optional[int] = None  # folders: pixel limit of one image (default: the serving limit, 40 megapixels)
    max_file_bytes: Optional[int] = None  # folders: size limit of one image file (default 256 MiB)
    cache_mb: int = 2048  # cache decoded fixed-size data sets up to this size in memory
    # optimisation
    epochs: int = 100
    batch_size: Optional[int] = None  # global batch; default 128 per replica, less for small data sets
    lr: float = 0.1  # learning rate per 128 images, scaled linearly with the global batch
    warmup_epochs: Optional[float] = None  # recipe 5 (finetune 1), capped at a tenth of the epochs
    warmup_factor: float = 0.1
    min_lr: float = 0.0  # cosine floor as a fraction of the peak rate
    lr_per_epoch: Optional[bool] = None  # set the rate once per epoch (pycls) instead of every step; runs of < 10
    # epochs update it every step
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-5
    decay_on: str = "all"  # 'all' trainable weights (paper) or 'kernels' only
    label_smoothing: float = 0.0
    ema: float = 0.0  # EMA momentum of the weights (e.g. 0.9999); 0 disables
    precise_bn_images: int = 8192  # images for precise BN after each epoch (0 disables)
    precision: str = "float32"  # float32 | mixed_float16 | mixed_bfloat16
    jit: bool = False
    # distribution
    strategy: str = "auto"
    tpu: Optional[str] = None
    # run
    output_dir: Optional[str] = None  # default runs/<model>-<dataset>
    export_dir: Optional[str] = None  # SavedModel of the best model; default saved_models/<run name>
    steps_per_epoch: Optional[int] = None  # default: all training images once
    val_steps: Optional[int] = None
    seed: int = 0
    export: bool = True
    verbose: Union[str, int] = "auto"


# The paper's recipe for the settings that adapt to the data set (TrainConfig fields left at None).
RECIPE = dict(image_size=224, eval_crop_pct=0.875, min_crop_area=0.08, flip=True, lighting_std=0.1, warmup_epochs=5.0,
              lr_per_epoch=True)
ADAPTIVE = tuple(RECIPE) + ("batch_size",)

PRESETS = {
    # The paper's ImageNet recipe (pycls configs/dds_baselines): see ../shared/regnet_models.md.
    "imagenet": {},
    # Fine-tuning a pretrained backbone with a new head: short, no warm-up from a tiny rate, decay on kernels.
    "finetune": dict(
        weights="imagenet",
        epochs=20,
        lr=0.01,
        warmup_epochs=1.0,
        weight_decay=1e-4,
        decay_on="kernels",
        precise_bn_images=0,
        lighting_std=0.0,
        dropout=0.2,
    ),
}

# Data sets whose images change meaning when mirrored: no random flips by default.
NO_FLIP_DATASETS = ("digits", "mnist", "emnist", "kmnist", "svhn_cropped", "omniglot")
SMALL_IMAGE = 64  # fixed-size images up to this many pixels get the small-image defaults
MIN_STEPS_PER_EPOCH = 40  # the default batch is lowered until an epoch has this many steps (down to 8 per replica)

FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def load_config_file(path: str) -> dict:
    """A recipe as a dict from a YAML or JSON file (keys are TrainConfig field names).

    YAML is read with ``yaml.safe_load``: tags that would build Python objects (``!!python/object``) are refused.
    Every problem is a ValueError/FileNotFoundError of one line naming the file (and line).
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"config file {path!r} does not exist.")
    if os.path.isdir(path):
        raise ValueError(f"config file {path!r} is a directory; give a YAML or JSON file.")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise ValueError(f"config file {path!r} is not UTF-8 text; give a YAML or JSON file.") from None
    if path.endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"config file {path!r} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}.") \
                from None
    else:
        from keras_regnet._extras import require

        yaml = require("yaml", "train", "a YAML --config file")
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(f"config file {path!r} is not a plain YAML mapping of settings: {_yaml_problem(e)}.") \
                from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {path!r} must hold a mapping of settings, got {type(data).__name__}.")
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise ValueError(f"config file {path!r}: setting names must be strings, got {bad[0]!r}.")
    return {k.replace("-", "_"): v for k, v in data.items()}


def _yaml_problem(error) -> str:
    """'could not determine a constructor for the tag ...python/object... at line 3' from a YAMLError."""
    problem = " ".join(str(getattr(error, "problem", None) or error).split())
    mark = getattr(error, "problem_mark", None)
    if "constructor for the tag" in problem:
        problem = problem.replace("could not determine a constructor for the tag",
                                  "tag not allowed (only plain YAML values are read):")
    return f"{problem} at line {mark.line + 1}" if mark is not None else problem


def make_config(preset: str = "imagenet", **overrides) -> TrainConfig:
    """The preset's settings with ``overrides`` on top (``None`` values in overrides are ignored).

    The preset's values of the data-adaptive settings (:data:`ADAPTIVE`) are not filled in here: they stay None
    and :func:`resolve_defaults` chooses them when the data set is known (the preset's value is its starting point).
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}.")
    unknown = sorted(set(overrides) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown training settings {unknown}; known: {', '.join(sorted(FIELDS))}.")
    values = {k: v for k, v in PRESETS[preset].items() if k not in ADAPTIVE}
    values.update({k: v for k, v in overrides.items() if v is not None})
    values["preset"] = preset
    config = TrainConfig(**values)
    validate(config)
    return config


def recipe_value(config: TrainConfig, field: str):
    """The value of an adaptive setting in the config's preset (before adapting it to the data set)."""
    return PRESETS.get(config.preset, {}).get(field, RECIPE.get(field))


def _prev_pow2(n: float) -> int:
    return 1 << max(int(n), 1).bit_length() - 1


def resolve_defaults(config: TrainConfig, info, replicas: int = 1):
    """Fill the settings left at None from the recipe and the data set ``info`` (a DatasetInfo).

    Returns ``(config, notes)``: the complete config and, per chosen setting, why it has that value (``notes``
    maps field -> reason; settings given by the user are not in it). Rules:

    - ``image_size``: a fixed-size data set smaller than the recipe's 224 trains at its own size (at least 32,
      rounded up to a multiple of 32: digits and CIFAR at 32); variable-size images at 224.
    - ``batch_size``: 128 per replica, halved (down to 8 per replica) until an epoch has >= 40 steps.
    - ``warmup_epochs``: the preset's (5; finetune 1), at most a tenth of ``epochs``;
      ``lr_per_epoch``: once per epoch (pycls) for runs of 10 epochs or more, else every step.
    - small images (fixed size <= 64 px): Inception crops of >= 75% of the image, no PCA lighting, evaluation on
      the whole image (crop_pct 1); digit-like data sets (:data:`NO_FLIP_DATASETS`): no flips.
    """
    notes = {}
    values = {}
    h, w = (tuple(info.image_shape) + (None, None))[:2]
    fixed = h is not None and w is not None
    small = fixed and max(h, w) <= SMALL_IMAGE
    base_name = os.path.basename(os.path.normpath(str(info.name))).split(":")[0].split("/")[0]

    def choose(field, value, why=None):
        if getattr(config, field) is None:
            values[field] = value
            if why:
                notes[field] = why

    recipe_size = recipe_value(config, "image_size")
    if fixed and max(h, w) < recipe_size:
        size = max(32, -(-max(h, w) // 32) * 32)
        choose("image_size", size, f"data set: {h}x{w} images")
    else:
        choose("image_size", recipe_size, "recipe")
    per_replica = 128
    while per_replica > 8 and info.num_examples // (per_replica * replicas) < MIN_STEPS_PER_EPOCH:
        per_replica //= 2
    choose("batch_size", per_replica * replicas,
           f"data set: {info.num_examples} training images" if per_replica < 128 else "recipe: 128 per replica")
    warmup = float(recipe_value(config, "warmup_epochs"))
    cap = config.epochs / 10.0
    if warmup > cap:
        choose("warmup_epochs", cap, f"recipe {warmup:g}, capped at a tenth of --epochs {config.epochs}")
    else:
        choose("warmup_epochs", warmup, "recipe")
    short = config.epochs < 10
    choose("lr_per_epoch", not short and bool(recipe_value(config, "lr_per_epoch")),
           f"--epochs {config.epochs} < 10: updated every step" if short else "recipe: once per epoch")
    if small:
        choose("min_crop_area", max(0.75, recipe_value(config, "min_crop_area")), "data set: small images")
        choose("lighting_std", 0.0, "data set: small images")
        choose("eval_crop_pct", 1.0, "data set: small images, evaluated whole")
    else:
        for field in ("min_crop_area", "lighting_std", "eval_crop_pct"):
            choose(field, recipe_value(config, field), "recipe")
    if base_name in NO_FLIP_DATASETS:
        choose("flip", False, f"data set: {base_name} change meaning when mirrored")
    else:
        choose("flip", bool(recipe_value(config, "flip")), "recipe")
    config = dataclasses.replace(config, **values)
    validate(config)
    return config, notes


def describe_defaults(config: TrainConfig, notes: dict, base_lr: float) -> str:
    """One line with the chosen size, batch, learning rate, warm-up and augmentation, and where each came from."""

    def src(field):
        return f" ({notes[field]})" if field in notes else " (given)"

    parts = [
        f"image size {config.image_size}{src('image_size')}",
        f"batch {config.batch_size}{src('batch_size')}",
        f"lr {base_lr:.4g} ({config.lr:g} per 128 images"
        f"{', updated every step' if not config.lr_per_epoch else ', set once per epoch'})",
        f"warm-up {config.warmup_epochs:g} epochs{src('warmup_epochs')}",
        f"crops >= {config.min_crop_area:g} of the area{src('min_crop_area')}",
        f"flips {'on' if config.flip else 'off'}{src('flip')}",
        f"lighting noise {config.lighting_std:g}{src('lighting_std')}",
        f"eval crop {config.eval_crop_pct:g}{src('eval_crop_pct')}",
    ]
    return "training with " + "; ".join(parts)


# The command-line flag of each setting, for error messages that say what to change.
def flag(field: str) -> str:
    return "--" + field.replace("_", "-")


# Types and ranges of the numeric settings shared by train and sweep configs: (kind, low, high, closed high).
# kind "int" refuses bools and floats; "float" refuses bools, strings, NaN and infinities. None bounds are open.
MAX_IMAGE_SIZE = 4096
SETTING_RULES = {
    "epochs": ("int", 1, None), "batch_size": ("int", 1, None), "steps_per_epoch": ("int", 1, None),
    "val_steps": ("int", 1, None), "seed": ("int", 0, None), "precise_bn_images": ("int", 0, None),
    "cache_mb": ("int", 0, None), "unfreeze_epoch": ("int", 0, None), "samples": ("int", 0, None),
    "max_tries": ("int", 1, None), "stem_width": ("int", 1, None), "max_pixels": ("int", 1, None),
    "max_file_bytes": ("int", 1, None),
    "image_size": ("int", 32, MAX_IMAGE_SIZE),
    "lr": ("float", 0.0, None, "positive"), "momentum": ("float", 0.0, 1.0, "[0, 1)"),
    "weight_decay": ("float", 0.0, None), "warmup_epochs": ("float", 0.0, None), "warmup_factor": ("float", 0.0, 1.0),
    "min_lr": ("float", 0.0, 1.0), "label_smoothing": ("float", 0.0, 1.0, "[0, 1)"), "ema": ("float", 0.0, 1.0, "[0, 1)"),
    "dropout": ("float", 0.0, 1.0, "[0, 1)"), "eval_crop_pct": ("float", 0.0, 1.0, "(0, 1]"),
    "min_crop_area": ("float", 0.0, 1.0, "(0, 1]"), "lighting_std": ("float", 0.0, None),
}


def _rule_problem(field, value):
    """What is wrong with ``value`` for ``field`` (by :data:`SETTING_RULES`), or None."""
    import math

    kind, low, high, *interval = SETTING_RULES[field]
    interval = interval[0] if interval else None
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
            span = f">= {low} and <= {high}" if high is not None else f">= {low}"
            extra = " (the models downsample 32x; larger sizes need gigabytes per batch)" if field == "image_size" \
                else ""
            return f"must be an integer {span}{extra}, got {value!r}"
        return None
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if ok:
        if interval == "positive":
            ok = value > low
        elif interval == "[0, 1)":
            ok = low <= value < high
        elif interval == "(0, 1]":
            ok = low < value <= high
        else:
            ok = value >= low and (high is None or value <= high)
    if not ok:
        span = {"positive": "a positive number", "[0, 1)": "a number in [0, 1)", "(0, 1]": "a number in (0, 1]"}.get(
            interval, f"a number in [{low:g}, {high:g}]" if high is not None else f"a number >= {low:g}")
        return f"must be {span}, got {value!r}"
    return None


def check_settings(values: dict, name=None) -> None:
    """Type and range checks of numeric settings, shared by training configs and sweep configs.

    ``values`` maps setting names (TrainConfig / SweepConfig fields) to values; None values and names without a
    rule are not checked. ``name`` turns a field into the name used in the message (default: its command-line
    flag, ``--momentum``). Raises ValueError of one line, e.g. ``--momentum must be a number in [0, 1), got 1.5.``
    """
    name = name or flag
    for field, value in values.items():
        if value is None or field not in SETTING_RULES:
            continue
        problem = _rule_problem(field, value)
        if problem:
            raise ValueError(f"{name(field)} {problem}.")


def validate(config: TrainConfig) -> None:
    """Range checks with messages naming the setting's command-line flag and what to change."""
    from keras_regnet.training.strategy import STRATEGIES

    c = config
    check_settings(dataclasses.asdict(c))

    def unset_or(value, ok):
        return value is None or ok(value)

    checks = [
        (isinstance(c.epochs, int) and c.epochs >= 1, "epochs", f"must be an integer >= 1, got {c.epochs!r}"),
        (unset_or(c.image_size, lambda v: isinstance(v, int) and v >= 32), "image_size",
         f"must be an integer >= 32 (the models downsample 32x), got {c.image_size!r}"),
        (unset_or(c.batch_size, lambda v: isinstance(v, int) and v >= 1), "batch_size",
         f"must be a positive integer, got {c.batch_size!r}"),
        (c.lr > 0, "lr", f"must be positive, got {c.lr}"),
        (unset_or(c.warmup_epochs, lambda v: 0 <= v < c.epochs), "warmup_epochs",
         f"must be in [0, --epochs {c.epochs}), got {c.warmup_epochs}: lower it or raise --epochs"),
        (0 <= c.warmup_factor <= 1, "warmup_factor", f"must be in [0, 1], got {c.warmup_factor}"),
        (0 <= c.label_smoothing < 1, "label_smoothing", f"must be in [0, 1), got {c.label_smoothing}"),
        (0 <= c.ema < 1, "ema", f"must be in [0, 1), got {c.ema}"),
        (c.weight_decay >= 0, "weight_decay", f"must be >= 0, got {c.weight_decay}"),
        (c.decay_on in ("all", "kernels"), "decay_on", f"must be 'all' or 'kernels', got {c.decay_on!r}"),
        (c.precision in ("float32", "mixed_float16", "mixed_bfloat16"), "precision",
         f"must be float32, mixed_float16 or mixed_bfloat16, got {c.precision!r}"),
        (c.strategy in STRATEGIES, "strategy", f"must be one of {', '.join(STRATEGIES)}, got {c.strategy!r}"),
        (unset_or(c.eval_crop_pct, lambda v: 0 < v <= 1), "eval_crop_pct",
         f"must be in (0, 1], got {c.eval_crop_pct}"),
        (unset_or(c.min_crop_area, lambda v: 0 < v <= 1), "min_crop_area",
         f"must be in (0, 1], got {c.min_crop_area}"),
        (unset_or(c.lighting_std, lambda v: v >= 0), "lighting_std", f"must be >= 0, got {c.lighting_std}"),
        (c.bad_images in ("skip", "error"), "bad_images", f"must be 'skip' or 'error', got {c.bad_images!r}"),
        (c.unfreeze_epoch is None or 0 <= c.unfreeze_epoch < c.epochs, "unfreeze_epoch",
         f"must be in [0, --epochs {c.epochs}), got {c.unfreeze_epoch}"),
        (c.unfreeze_epoch is None or c.freeze_until is not None, "unfreeze_epoch",
         "needs --freeze-until (which stages to freeze first)"),
    ]
    for ok, field, message in checks:
        if not ok:
            raise ValueError(f"{flag(field)} {message}.")

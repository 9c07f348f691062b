"""Training configurations: the paper's ``imagenet`` recipe and a ``finetune`` recipe, overridable from YAML/JSON."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional, Union

__all__ = ["TrainConfig", "PRESETS", "make_config", "load_config_file"]


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
    image_size: int = 224
    eval_crop_pct: float = 0.875  # resize short side to image_size / crop_pct, center crop (256 -> 224)
    min_crop_area: float = 0.08  # Inception crop area range [min, 1]
    flip: bool = True
    lighting_std: float = 0.1  # AlexNet PCA lighting noise (0 disables)
    cache_mb: int = 2048  # cache decoded fixed-size data sets up to this size in memory
    # optimisation
    epochs: int = 100
    batch_size: Optional[int] = None  # global batch; default 128 per replica
    lr: float = 0.1  # learning rate per 128 images, scaled linearly with the global batch
    warmup_epochs: float = 5.0
    warmup_factor: float = 0.1
    min_lr: float = 0.0  # cosine floor as a fraction of the peak rate
    lr_per_epoch: bool = True  # set the rate once per epoch (pycls) instead of every step
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

FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def load_config_file(path: str) -> dict:
    """A recipe as a dict from a YAML or JSON file (keys are TrainConfig field names)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"config file {path!r} does not exist.")
    with open(path) as f:
        text = f.read()
    if path.endswith(".json"):
        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"config file {path!r} must hold a mapping of settings, got {type(data).__name__}.")
    return {k.replace("-", "_"): v for k, v in data.items()}


def make_config(preset: str = "imagenet", **overrides) -> TrainConfig:
    """The preset's settings with ``overrides`` on top (``None`` values in overrides are ignored)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}.")
    unknown = sorted(set(overrides) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown training settings {unknown}; known: {', '.join(sorted(FIELDS))}.")
    values = dict(PRESETS[preset])
    values.update({k: v for k, v in overrides.items() if v is not None})
    values["preset"] = preset
    config = TrainConfig(**values)
    validate(config)
    return config


def validate(config: TrainConfig) -> None:
    """Range checks with messages saying what to change."""
    from keras_regnet.training.strategy import STRATEGIES

    checks = [
        (config.epochs >= 1, f"epochs must be >= 1, got {config.epochs}"),
        (config.image_size >= 32, f"image_size must be >= 32, got {config.image_size}"),
        (config.lr > 0, f"lr must be positive, got {config.lr}"),
        (0 <= config.warmup_epochs < config.epochs, f"warmup_epochs must be in [0, epochs), got {config.warmup_epochs}"),
        (0 <= config.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {config.label_smoothing}"),
        (0 <= config.ema < 1, f"ema must be in [0, 1), got {config.ema}"),
        (config.weight_decay >= 0, f"weight_decay must be >= 0, got {config.weight_decay}"),
        (config.decay_on in ("all", "kernels"), f"decay_on must be 'all' or 'kernels', got {config.decay_on!r}"),
        (config.precision in ("float32", "mixed_float16", "mixed_bfloat16"),
         f"precision must be float32, mixed_float16 or mixed_bfloat16, got {config.precision!r}"),
        (config.strategy in STRATEGIES, f"strategy must be one of {', '.join(STRATEGIES)}, got {config.strategy!r}"),
        (0 < config.eval_crop_pct <= 1, f"eval_crop_pct must be in (0, 1], got {config.eval_crop_pct}"),
        (0 < config.min_crop_area <= 1, f"min_crop_area must be in (0, 1], got {config.min_crop_area}"),
        (config.unfreeze_epoch is None or 0 <= config.unfreeze_epoch < config.epochs,
         f"unfreeze_epoch must be in [0, epochs), got {config.unfreeze_epoch}"),
        (config.unfreeze_epoch is None or config.freeze_until is not None,
         "unfreeze_epoch needs freeze_until (which stages to freeze first)"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message + ".")

"""The model card (README.md) of a preset: Hub metadata, the architecture in one line, classes, training, loading."""

from __future__ import annotations

__all__ = ["model_card"]


def _yaml_list(values):
    return "".join(f"- {v}\n" for v in values)


def model_card(model, config, repo_id=None):
    """Markdown with a YAML header (library, tags, pipeline_tag, license when known) for RegNetModel ``model``."""
    cfg = config["config"]["pretrained_cfg"] or {}
    opts = model.build_options
    training = (config.get("keras_regnet") or {}).get("training") or {}
    license_ = cfg.get("license")
    header = "---\nlibrary_name: keras-hub\n"
    if isinstance(license_, str) and license_ and " " not in license_:
        header += f"license: {license_}\n"
    header += "tags:\n" + _yaml_list(["keras", "keras-hub", "keras-regnet", "regnet", "image-classification"])
    header += "pipeline_tag: image-classification\n---\n\n"
    title = model.name
    uri = f"hf://{repo_id}" if repo_id else "hf://OWNER/NAME"
    lines = [f"# {title}", "",
             f"A RegNet/AnyNet image model for Keras 3 (any backend), saved by keras-regnet as a keras-hub preset.", "",
             f"**Architecture:** {model.describe()}", ""]
    names = cfg.get("class_names")
    if opts["include_top"]:
        if names:
            shown = ", ".join(f"`{n}`" for n in names[:50]) + (f" ... ({len(names)} in all)" if len(names) > 50 else "")
            lines += [f"**Classes ({len(names)}):** {shown}", ""]
        elif opts["classes"] == 1000:
            lines += ["**Classes:** the 1000 ImageNet-1k classes.", ""]
        else:
            lines += [f"**Classes:** {opts['classes']} (unnamed).", ""]
    else:
        lines += ["**Head:** none (a feature extractor / backbone).", ""]
    size = cfg.get("size")
    lines += [f"**Evaluation transform:** resize and center-crop to {size} px (crop_pct {cfg.get('crop_pct')}, "
              f"{cfg.get('interpolation')}), RGB in [0, 255]; the model normalises internally "
              f"(mean {cfg.get('mean')}, std {cfg.get('std')}).", ""]
    if cfg.get("weights"):
        source = f"`{cfg['weights']}`" + (f" ({cfg['weights_tag']})" if cfg.get("weights_tag") else "")
        extra = []
        if cfg.get("source"):
            extra.append(f"from {cfg['source']}")
        if license_:
            extra.append(f"license: {license_}")
        if cfg.get("top1") is not None:
            extra.append(f"published ImageNet-1k top-1: {cfg['top1']}%")
        lines += [f"**Weights:** {source}" + (f"; {'; '.join(extra)}" if extra else "") + ".", ""]
    if training:
        shown = ", ".join(f"{k}={v}" for k, v in training.items() if v is not None and not isinstance(v, (dict, list)))
        lines += [f"**Training:** {shown}.", ""]
    lines += [
        "## How to load", "",
        "```python",
        "import keras_regnet",
        f'model = keras_regnet.get_model("{uri}")  # or keras_regnet.RegNetModel.from_preset(...)',
        "",
        "import keras_hub  # optional: the same preset through keras-hub",
        f'backbone = keras_hub.models.Backbone.from_preset("{uri}")',
    ]
    if opts["include_top"]:
        lines.append(f'classifier = keras_hub.models.ImageClassifier.from_preset("{uri}")')
    lines += ["```", "", "From the command line:", "", "```bash",
              f"keras-regnet predict --model {uri} image.jpg", "```", ""]
    return header + "\n".join(lines)

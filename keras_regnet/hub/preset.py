"""Presets in keras-hub's layout, written and read without keras-hub.

A preset folder holds what ``keras_hub``'s ``save_to_preset`` writes for a backbone, and for a model with a
classifier head what it writes for an ``ImageClassifier`` task:

- ``config.json``: the ``keras_regnet>RegNetBackbone`` backbone (spec, input shape, padding, normalization, the
  ``pretrained_cfg`` and the frozen layers), plus a ``keras_regnet`` block with the head options keras-hub's backbone
  does not carry (``pooling``, ``features``, the model's name);
- ``model.weights.h5``: the backbone's weights (the RegNetModel's layers, with their architecture record);
- ``metadata.json``: Keras / keras-hub versions, parameter count, date, tasks;
- with a head: ``task.json`` (``keras_regnet>RegNetImageClassifier``: classes, activation, dropout),
  ``task.weights.h5`` (the dense ``predictions`` layer), ``preprocessor.json`` and ``image_converter.json`` (resize
  to the eval size; the backbone normalises itself);
- ``README.md``: the model card.

:func:`read_preset` rebuilds the same :class:`keras_regnet.RegNetModel` (outputs, class names, eval transform and
frozen layers), from a preset written here or by keras-hub from a ``RegNetBackbone``.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile

from keras_regnet.hub.uri import PresetError

__all__ = ["save_to_preset", "read_preset", "check_preset_folder", "PRESET_FILES", "REQUIRED_FILES"]

BACKBONE = "keras_regnet>RegNetBackbone"
CLASSIFIER = "keras_regnet>RegNetImageClassifier"
PREPROCESSOR = "keras_regnet>RegNetImageClassifierPreprocessor"
CONVERTER = "keras_regnet>RegNetImageConverter"
KERAS_MODEL = "keras_regnet>RegNetModel"
# keras-hub's generic ImageClassifier (saved from ImageClassifier(backbone=RegNetBackbone(...))) has the same head
_CLASSIFIERS = (CLASSIFIER, "keras_hub>ImageClassifier")  # a model.save("hf://...") folder (Keras's own Hub layout)
_MODULE = "keras_regnet.hub.keras_hub_models"

CONFIG, WEIGHTS, METADATA = "config.json", "model.weights.h5", "metadata.json"
TASK, TASK_WEIGHTS = "task.json", "task.weights.h5"
PREPROCESSOR_FILE, CONVERTER_FILE, CARD = "preprocessor.json", "image_converter.json", "README.md"
REQUIRED_FILES = (CONFIG, WEIGHTS)
PRESET_FILES = (CONFIG, WEIGHTS, METADATA, TASK, TASK_WEIGHTS, PREPROCESSOR_FILE, CONVERTER_FILE, CARD)
_MAX_JSON = 16 << 20  # a config larger than this is not a preset's


def _dtype_policy():
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": None}


def _serialized(class_name, registered, config):
    return {"module": _MODULE, "class_name": class_name, "config": config, "registered_name": registered}


def _regnet_of(model):
    """The RegNetModel to save: the model itself, or the one a keras-hub RegNetBackbone / task wraps."""
    from keras_regnet.model import RegNetModel

    if isinstance(model, RegNetModel):
        return model, None
    backbone = getattr(model, "backbone", None)
    inner = getattr(backbone if backbone is not None else model, "regnet", None)
    if isinstance(inner, RegNetModel):
        return inner, (model if backbone is not None else None)
    raise PresetError(
        f"save_to_preset takes a keras_regnet.RegNetModel (or keras-hub's RegNetBackbone / RegNetImageClassifier), "
        f"got {type(model).__name__}; save other Keras models with model.save('name.keras')."
    )


def _enriched_cfg(model):
    """The model's pretrained_cfg with the source weights' repository, license and published top-1 when known."""
    cfg = model.pretrained_cfg
    arch, weights = cfg.get("arch") or model.build_options.get("arch"), cfg.get("weights")
    if arch and isinstance(weights, str):
        from keras_regnet.weights.registry import get_weights_info, is_registry_weights

        if is_registry_weights(weights):
            try:
                info = get_weights_info(arch, weights)
            except (KeyError, ValueError):
                info = None
            if info is not None:
                cfg.setdefault("license", info.get("license"))
                cfg.setdefault("source", info.get("url") or info.get("repo"))
                cfg.setdefault("top1", info.get("top1"))
                cfg.setdefault("weights_tag", f"{arch}:{info.get('tag')}")
    return cfg


def _head_options(model):
    opts = model.build_options
    return {
        "include_top": opts["include_top"],
        "classes": opts["classes"],
        "classifier_activation": opts["classifier_activation"],
        "head_dropout": opts["head_dropout"],
        "pooling": opts["pooling"],
        "features": opts["features"],
        "name": model.name,
    }


def preset_files(model, training=None, task=None):
    """``{file name: dict}`` of the JSON files of ``model``'s preset (everything but the weights and the card)."""
    import keras

    from keras_regnet import __version__
    from keras_regnet.hub._backbone import backbone_config

    opts = model.build_options
    cfg = _enriched_cfg(model)
    bb = {"name": model.name, "trainable": True, "dtype": _dtype_policy(), **backbone_config(model)}
    bb["pretrained_cfg"] = cfg
    config = _serialized("RegNetBackbone", BACKBONE, bb)
    config["keras_regnet"] = {"version": __version__, "model": _head_options(model), "training": training}
    try:
        from importlib.metadata import version

        hub_version = version("keras-hub")
    except Exception:  # noqa: BLE001 - not installed
        hub_version = None
    files = {
        CONFIG: config,
        METADATA: {
            "keras_version": keras.version(),
            "keras_hub_version": hub_version,
            "keras_regnet_version": __version__,
            "parameter_count": None,  # filled in by save_to_preset (the backbone's count)
            "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
            "tasks": ["ImageClassifier"],
        },
    }
    if opts["include_top"]:
        size = cfg.get("size") or 224
        converter = _serialized("RegNetImageConverter", CONVERTER, {
            "name": "reg_net_image_converter", "trainable": True, "dtype": _dtype_policy(),
            "image_size": [size, size], "scale": None, "offset": None,
            "interpolation": cfg.get("interpolation") or "bicubic", "antialias": False,
            "crop_to_aspect_ratio": True, "pad_to_aspect_ratio": False, "bounding_box_format": "yxyx",
        })
        preprocessor = _serialized("RegNetImageClassifierPreprocessor", PREPROCESSOR, {
            "name": "reg_net_image_classifier_preprocessor", "trainable": True, "dtype": _dtype_policy(),
            "image_converter": converter, "config_file": PREPROCESSOR_FILE,
        })
        activation = opts["classifier_activation"]
        files[TASK] = _serialized("RegNetImageClassifier", CLASSIFIER, {
            "backbone": {k: v for k, v in config.items() if k != "keras_regnet"},
            "preprocessor": preprocessor,
            "name": f"{model.name}_classifier",
            "num_classes": opts["classes"],
            "pooling": "avg",
            "activation": activation if activation is None or isinstance(activation, str) else str(activation),
            "dropout": opts["head_dropout"],
        })
        files[PREPROCESSOR_FILE] = preprocessor
        files[CONVERTER_FILE] = converter
    return files


def _backbone_model(model):
    """A RegNetModel without head (pooling=None) holding ``model``'s backbone weights (the layers keep their names)."""
    import keras

    from keras_regnet.hub._backbone import backbone_config, copy_weights
    from keras_regnet.model import RegNetModel

    cfg = backbone_config(model)
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format(cfg.pop("data_format"))
    try:
        backbone = RegNetModel(cfg.pop("spec"), include_top=False, pooling=None,
                               input_shape=tuple(cfg.pop("image_shape")), name=model.name, **cfg)
    finally:
        keras.config.set_image_data_format(previous)
    copy_weights(model, backbone)
    return backbone


def _write_task_weights(path, kernel, bias):
    """``task.weights.h5`` as keras-hub's ``Task.save_task_weights`` writes it (the head's dense layer)."""
    import h5py
    import numpy as np

    with h5py.File(path, "w") as f:
        def group(name, label):
            g = f.require_group(name)
            g.attrs["name"] = label
            return g

        dense = group("layers/dense/vars", "predictions")
        dense.create_dataset("0", data=np.asarray(kernel, dtype="float32"))
        dense.create_dataset("1", data=np.asarray(bias, dtype="float32"))
        group("layers/dropout/vars", "output_dropout")
        group("layers/global_average_pooling2d/vars", "pooler")
        group("preprocessor/image_converter/resizing/vars", "resizing")
        group("preprocessor/image_converter/vars", "reg_net_image_converter")
        group("preprocessor/vars", "reg_net_image_classifier_preprocessor")
        group("vars", "reg_net_image_classifier")
        # the state of keras-hub's default optimizer (Adam, 5e-5), as Task.save_task_weights records it
        opt = group("optimizer/vars", "adam")
        opt.create_dataset("0", data=np.int64(0))
        opt.create_dataset("1", data=np.float32(5e-05))


def _write_json(folder, name, data):
    with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
        json.dump(data, f, indent=4)
        f.write("\n")


def save_to_preset(model, preset_dir, training=None, card=True):
    """Write ``model`` (a RegNetModel) as a keras-hub preset folder ``preset_dir`` (see the module docstring).

    The folder is written beside its destination and moved into place at the end: a failure leaves no partial
    preset. An existing preset folder is replaced; any other non-empty folder is refused. ``training`` (a dict,
    optional) is recorded in ``config.json`` and described in the model card. Returns ``preset_dir``.
    """
    from keras_regnet.hub.card import model_card

    regnet, task = _regnet_of(model)
    if task is not None:
        regnet = _with_task_head(regnet, task)
    preset_dir = os.path.abspath(os.fspath(preset_dir))
    if os.path.isfile(preset_dir):
        raise PresetError(f"{preset_dir!r} is a file; save_to_preset takes a folder (it is created).")
    if os.path.isdir(preset_dir) and os.listdir(preset_dir) and not os.path.isfile(os.path.join(preset_dir, CONFIG)):
        raise PresetError(f"{preset_dir!r} is a non-empty folder that is not a preset; choose a new or empty folder.")
    parent = os.path.dirname(preset_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".preset-")
    try:
        files = preset_files(regnet, training=training)
        backbone = _backbone_model(regnet)
        backbone.save_weights(os.path.join(tmp, WEIGHTS))
        files[METADATA]["parameter_count"] = int(backbone.count_params())
        if TASK in files:
            kernel, bias = regnet.get_layer("head_fc").get_weights()
            _write_task_weights(os.path.join(tmp, TASK_WEIGHTS), kernel, bias)
        for name, data in files.items():
            _write_json(tmp, name, data)
        if card:
            with open(os.path.join(tmp, CARD), "w", encoding="utf-8") as f:
                f.write(model_card(regnet, files[CONFIG]))
        _replace_folder(tmp, preset_dir)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return preset_dir


def _replace_folder(new, target):
    old = None
    if os.path.isdir(target):
        old = target + ".old-" + os.path.basename(new)
        os.replace(target, old)
    os.replace(new, target)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def _with_task_head(regnet, task):
    """A RegNetModel with the head of keras-hub classifier ``task`` (its dense layer becomes ``head_fc``)."""
    import keras

    from keras_regnet.hub._backbone import backbone_config, copy_weights
    from keras_regnet.model import RegNetModel

    if getattr(task, "pooling", "avg") != "avg":
        raise PresetError(f"a RegNet preset's classifier pools by average; this task uses pooling={task.pooling!r}.")
    cfg = backbone_config(regnet)
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format(cfg.pop("data_format"))
    try:
        model = RegNetModel(cfg.pop("spec"), include_top=True, classes=int(task.num_classes),
                            classifier_activation=task.activation, head_dropout=float(task.dropout or 0.0),
                            input_shape=tuple(cfg.pop("image_shape")), name=regnet.name, **cfg)
    finally:
        keras.config.set_image_data_format(previous)
    copy_weights(regnet, model, skip_missing=True)
    model.get_layer("head_fc").set_weights(task.output_dense.get_weights())
    return model


# ------------------------------------------------------------------------------------------------ reading

def _read_json(folder, name, source, required=True):
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        if required:
            raise PresetError(f"{source} has no {name}: it is not a keras-hub preset (save one with "
                              "model.save_to_preset(folder)).")
        return None
    if os.path.getsize(path) > _MAX_JSON:
        raise PresetError(f"{name} of {source} is {os.path.getsize(path)} bytes: too large for a preset's config.")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (UnicodeDecodeError, ValueError) as e:
        raise PresetError(f"{name} of {source} is not valid JSON ({e}); the preset is damaged.") from None
    if not isinstance(data, dict):
        raise PresetError(f"{name} of {source} is not a JSON object; the preset is damaged.")
    return data


def preset_kind(config, source):
    """'backbone' (a RegNet preset) or 'keras' (a RegNetModel saved by model.save('hf://...')); else PresetError."""
    name = config.get("registered_name") or config.get("class_name")
    if name == BACKBONE:
        return "backbone"
    if name == KERAS_MODEL:
        return "keras"
    if name is None:
        what = "a timm or transformers checkpoint" if ("architecture" in config or "model_type" in config) else \
            "not a Keras preset"
        raise PresetError(f"{source} is {what} (its config.json names no Keras class), not a RegNet preset.")
    hint = (" load it with keras_hub.models.Backbone.from_preset(...)" if "Backbone" in str(name)
            else " load it with keras.saving.load_model(...)")
    raise PresetError(f"{source} holds a {name!r}, not a RegNet ({BACKBONE}):{hint}.")


def check_preset_folder(folder, source=None):
    """Check that ``folder`` is a complete RegNet preset (configs parse, classes are ours, weights files are HDF5).

    Returns the parsed ``config.json``. Raises :class:`PresetError` (one line) otherwise; reads no weights values.
    """
    import h5py

    source = source or repr(folder)
    if not os.path.isdir(folder):
        raise PresetError(f"preset folder {folder!r} does not exist.")
    config = _read_json(folder, CONFIG, source)
    kind = preset_kind(config, source)
    if kind == "keras":
        return config
    if not isinstance(config.get("config"), dict) or not isinstance(config["config"].get("spec"), dict):
        raise PresetError(f"config.json of {source} has no RegNet spec; the preset is damaged.")
    task = _read_json(folder, TASK, source, required=False)
    if task is not None and task.get("registered_name") not in _CLASSIFIERS:
        raise PresetError(f"task.json of {source} holds a {task.get('registered_name')!r}, not an image classifier "
                          f"on a RegNet ({CLASSIFIER}); load it with keras-hub's from_preset.")
    weights = [WEIGHTS] + ([TASK_WEIGHTS] if task is not None else [])
    for name in weights:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise PresetError(f"{source} has no {name}; the preset is incomplete.")
        try:
            with h5py.File(path, "r") as f:
                f.visit(lambda _name: None)
        except OSError as e:
            raise PresetError(f"{name} of {source} is not a complete HDF5 weights file (truncated or damaged: "
                              f"{str(e).splitlines()[0][:120]}).") from None
    return config


def _task_head(folder, source):
    """(kernel, bias) of the classifier's dense layer in ``task.weights.h5`` (named 'predictions' by keras-hub)."""
    import h5py
    import numpy as np

    found = []
    with h5py.File(os.path.join(folder, TASK_WEIGHTS), "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Group) and name.startswith("layers/") and obj.attrs.get("name") == "predictions":
                found.append(obj)

        f.visititems(visit)
        if len(found) != 1 or "0" not in found[0] or "1" not in found[0]:
            raise PresetError(f"task.weights.h5 of {source} has no 'predictions' dense layer; the preset is damaged.")
        kernel, bias = np.array(found[0]["0"]), np.array(found[0]["1"])
    if kernel.dtype.kind != "f" or not (np.all(np.isfinite(kernel)) and np.all(np.isfinite(bias))):
        raise PresetError(f"task.weights.h5 of {source} holds non-float or non-finite values: refusing it.")
    return kernel, bias


def read_preset(folder, source=None, compile=False):
    """The RegNetModel stored in preset ``folder`` (checked first: see :func:`check_preset_folder`)."""
    import keras

    from keras_regnet.hub._backbone import copy_weights
    from keras_regnet.model import RegNetModel

    source = source or repr(folder)
    config = check_preset_folder(folder, source)
    if preset_kind(config, source) == "keras":
        try:
            return keras.saving.load_model(folder, compile=compile)
        except Exception as e:  # noqa: BLE001
            raise PresetError(f"{source} is a Keras model folder that does not load ({type(e).__name__}: "
                              f"{(str(e).splitlines() or [''])[0][:200]}).") from None
    bb = dict(config["config"])
    head = dict((config.get("keras_regnet") or {}).get("model") or {})
    task = _read_json(folder, TASK, source, required=False)
    kwargs = {
        "include_preprocessing": bb.get("include_preprocessing", True),
        "padding": bb.get("padding", "symmetric"),
        "normalization": bb.get("normalization", "imagenet"),
        "arch": bb.get("arch"),
        "pretrained_cfg": bb.get("pretrained_cfg"),
        "frozen_layers": bb.get("frozen_layers"),
        "name": head.get("name") or bb.get("name"),
    }
    image_shape = bb.get("image_shape")
    if task is not None:
        tc = task.get("config") or {}
        if tc.get("pooling", "avg") != "avg":
            raise PresetError(f"task.json of {source} pools by {tc.get('pooling')!r}; RegNet classifiers pool by average.")
        kwargs.update(include_top=True, classes=int(tc.get("num_classes") or 0), head_dropout=float(tc.get("dropout") or 0),
                      classifier_activation=tc.get("activation"))
    else:
        kwargs.update(include_top=False, pooling=head.get("pooling"), features=head.get("features"))
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format(bb.get("data_format") or previous)
    shape = None if image_shape is None else tuple(image_shape)
    try:
        model = RegNetModel(bb["spec"], input_shape=shape, **kwargs)
        # the weights file holds the backbone without head, pooling or feature outputs: load it into that model
        plain = task is None and not head.get("features") and not head.get("pooling")
        backbone = model if plain else RegNetModel(
            bb["spec"], include_top=False, pooling=None, input_shape=shape,
            **{k: kwargs[k] for k in ("include_preprocessing", "padding", "normalization", "arch")})
    except (ValueError, TypeError, KeyError) as e:
        raise PresetError(f"config.json of {source} does not describe a buildable RegNet ({e}).") from None
    finally:
        keras.config.set_image_data_format(previous)
    try:
        backbone.load_weights(os.path.join(folder, WEIGHTS))
    except (ValueError, OSError) as e:
        raise PresetError(f"model.weights.h5 of {source} does not fit its config: "
                          f"{(str(e).splitlines() or [''])[0]}") from None
    if backbone is not model:
        copy_weights(backbone, model, skip_missing=True)
    if task is not None:
        kernel, bias = _task_head(folder, source)
        fc = model.get_layer("head_fc")
        if [tuple(w.shape) for w in fc.weights] != [kernel.shape, bias.shape]:
            raise PresetError(f"task.weights.h5 of {source} holds a {kernel.shape} head; the model's is "
                              f"{tuple(fc.weights[0].shape)}: the preset is inconsistent.")
        fc.set_weights([kernel, bias])
    return model

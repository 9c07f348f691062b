"""What every exporter needs: the model's input/output contract, model loading, and the versioned output layout."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import uuid

import keras

__all__ = [
    "ExportError",
    "ModelSignature",
    "describe_model",
    "load_model_source",
    "model_fingerprint",
    "next_version",
    "staging_dir",
    "publish",
    "METADATA_FILE",
]

# Extra files live in the version's assets.extra/ (TF Serving's place for files it does not load).
METADATA_FILE = os.path.join("assets.extra", "keras_regnet_export.json")


class ExportError(ValueError):
    """An export that cannot be made or that failed its verification; nothing was written."""


@dataclasses.dataclass(frozen=True)
class ModelSignature:
    """The contract of an exportable image model.

    ``input_shape`` is (height, width, channels) with None for dynamic sizes; ``output_kind`` is
    ``"probabilities"`` (softmax classifier), ``"logits"`` (classifier without softmax), ``"features"`` (pooled
    vector or feature map); ``classes`` is the output width of a classifier (else None).
    """

    input_shape: tuple
    output_kind: str
    classes: int | None

    @property
    def is_classifier(self):
        return self.output_kind in ("probabilities", "logits")

    @property
    def static_size(self):
        """The square input size when height and width are fixed and equal, else None."""
        h, w, _ = self.input_shape
        return h if h is not None and h == w else None


def describe_model(model) -> ModelSignature:
    """Check that ``model`` maps one image batch (N, H, W, C) to one tensor and say what that tensor is.

    Raises ExportError for models whose input is not a float image tensor or that have several inputs/outputs.
    """
    if not isinstance(model, keras.Model):
        raise ExportError(f"expected a keras.Model, got {type(model).__name__}.")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ExportError(
            f"model {model.name!r} has {len(model.inputs)} inputs and {len(model.outputs)} outputs; the exporters "
            "serve image models with one image input and one output."
        )
    spec = model.inputs[0]
    shape = tuple(spec.shape)
    if len(shape) != 4 or shape[-1] is None or not 1 <= shape[-1] <= 4 or "float" not in str(spec.dtype):
        raise ExportError(
            f"model {model.name!r} takes input of shape {shape} and dtype {spec.dtype}: not an image tensor. "
            "Export needs a float input (batch, height, width, channels) with 1-4 channels (RGB in [0, 255] for "
            "keras_regnet models)."
        )
    out = model.outputs[0]
    if len(out.shape) == 2 and _last_activation(model) == "softmax":
        kind, classes = "probabilities", int(out.shape[-1])
    elif len(out.shape) == 2 and _has_classifier_head(model):
        kind, classes = "logits", int(out.shape[-1])
    else:
        kind, classes = "features", None
    return ModelSignature(shape[1:], kind, classes)


def _output_layer(model):
    layer = model.outputs[0]._keras_history.operation
    while isinstance(layer, keras.Model) and len(layer.outputs) == 1:  # a wrapped model: look at its own output
        layer = layer.outputs[0]._keras_history.operation
    return layer


def _last_activation(model):
    layer = _output_layer(model)
    config = layer.get_config() if hasattr(layer, "get_config") else {}
    activation = config.get("activation")
    return activation if isinstance(activation, str) else None


def _has_classifier_head(model):
    layer = _output_layer(model)
    return isinstance(layer, keras.layers.Dense) or (
        isinstance(layer, keras.layers.Activation) and layer.name == "predictions"
    )


def model_fingerprint(model) -> str:
    """sha256 of the architecture (layer types, weight shapes, input/output shapes), independent of weight values.

    Two exports with the same fingerprint are versions of the same model (e.g. retrained weights); a different
    fingerprint in an existing model directory means another model, which export refuses to mix in.
    """
    desc = {
        "input": list(model.inputs[0].shape[1:]),
        "output": list(model.outputs[0].shape[1:]),
        "layers": [[type(l).__name__, [list(w.shape) for w in l.weights]] for l in model.layers],
    }
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()


def load_model_source(source, weights=None, input_size=None, classes=1000, include_top=True):
    """A Keras model from a paper model name, a spec (dict, JSON string or ``.json`` file) or a ``.keras`` file.

    Returns ``(model, name, weights_arch)`` where ``name`` is a directory-friendly model name and
    ``weights_arch`` the paper name when ``source`` names one (for the weights' eval config), else None.
    """
    from keras_regnet import models, specs

    input_shape = (input_size, input_size, 3) if input_size else None
    if isinstance(source, dict):
        return models.build_model(source, weights=weights, input_shape=input_shape, classes=classes,
                                  include_top=include_top), "custom", None
    source = os.fspath(source)
    if source.endswith(".keras"):
        if not os.path.isfile(source):
            raise FileNotFoundError(f"model file {source!r} does not exist.")
        import keras_regnet.layers  # noqa: F401  (registers GroupConv2D for deserialisation)

        try:
            model = keras.saving.load_model(source, compile=False)
        except Exception as e:  # zip errors, missing config, unknown layers: all mean "not a usable .keras"
            raise ExportError(
                f"cannot load {source!r} as a Keras model ({type(e).__name__}: {str(e).splitlines()[0][:300]}). "
                "Is it a complete .keras file saved by model.save()? Re-save it or pass a model name instead."
            ) from None
        return model, _slug(os.path.splitext(os.path.basename(source))[0]), None
    if source.endswith(".json") or source.lstrip().startswith("{"):
        if source.endswith(".json"):
            if not os.path.isfile(source):
                raise FileNotFoundError(f"spec file {source!r} does not exist.")
            with open(source) as f:
                text = f.read()
        else:
            text = source
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as e:
            raise ExportError(f"model spec is not valid JSON ({e}).") from None
        return models.build_model(spec, weights=weights, input_shape=input_shape, classes=classes,
                                  include_top=include_top), "custom", None
    name = specs.canonical_name(source)
    model = models.build_model(name, weights=weights, input_shape=input_shape, classes=classes,
                               include_top=include_top)
    return model, _slug(specs.constructor_name(name)), name


def _slug(name):
    return re.sub(r"[^a-z0-9_.-]+", "_", name.lower()).strip("_.") or "model"


def _versions(base):
    return sorted(int(d) for d in os.listdir(base) if d.isdigit()) if os.path.isdir(base) else []


def check_model_dir(base, fingerprint):
    """Refuse a model directory that holds something else than earlier versions of the same architecture."""
    if not os.path.exists(base):
        return
    if not os.path.isdir(base):
        raise ExportError(f"{base!r} exists and is not a directory; choose another --output-dir or --name.")
    for entry in sorted(os.listdir(base)):
        path = os.path.join(base, entry)
        if entry.startswith(".staging-"):
            continue  # an interrupted export's leftovers: never published, ignored by TF Serving
        if not entry.isdigit():
            raise ExportError(
                f"{base!r} holds {entry!r}, which is not a numbered version: it is not a TF Serving model directory "
                "written by keras-regnet export. Choose another --output-dir or --name."
            )
        meta_path = os.path.join(path, METADATA_FILE)
        if not os.path.isfile(meta_path):
            raise ExportError(
                f"{path!r} was not exported by keras-regnet (no {METADATA_FILE}); refusing to add versions of a "
                "possibly different model next to it. Choose another --output-dir or --name."
            )
        with open(meta_path) as f:
            other = json.load(f).get("fingerprint")
        if other != fingerprint:
            raise ExportError(
                f"{base!r} holds another model (version {entry} has a different architecture). TF Serving serves "
                "one model per directory: choose another --name or --output-dir."
            )


def next_version(base):
    """The version number a new export of ``base`` gets: one more than the highest existing one (1 at first)."""
    versions = _versions(base)
    return versions[-1] + 1 if versions else 1


def staging_dir(base):
    """A fresh hidden directory inside ``base`` to build an export in (same filesystem, so publishing is a rename)."""
    os.makedirs(base, exist_ok=True)
    path = os.path.join(base, f".staging-{uuid.uuid4().hex[:12]}")
    os.makedirs(path)
    return path


def publish(staging, base):
    """Atomically rename ``staging`` to the next free version of ``base``; return (version, path).

    Never overwrites: if another export takes the version first, the next one is used.
    """
    while True:
        version = next_version(base)
        target = os.path.join(base, str(version))
        try:
            os.mkdir(target)  # claims the number; rename then replaces the empty directory atomically
        except FileExistsError:
            continue
        try:
            os.rename(staging, target)
        except OSError:
            shutil.rmtree(target, ignore_errors=True)
            raise
        return version, target

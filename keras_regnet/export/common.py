"""What every exporter needs: the model's input/output contract, model loading, and the versioned output layout."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import socket
import time
import uuid

import keras

from keras_regnet import loading
from keras_regnet._compat import producing_layer
from keras_regnet.pretrained import export_name

__all__ = [
    "ExportError",
    "ModelSignature",
    "describe_model",
    "load_model_source",
    "model_fingerprint",
    "next_version",
    "staging_dir",
    "publish",
    "check_name",
    "check_output_dir",
    "read_metadata",
    "clean_stale_staging",
    "reference_logits",
    "compare_logits",
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
    own = _own_head(model)
    if own is not None:
        kind = own
    elif len(out.shape) == 2 and _last_activation(model) == "softmax":
        kind = "probabilities"
    elif len(out.shape) == 2 and isinstance(_output_layer(model), keras.layers.Dense):
        kind = "logits"
    else:
        kind = "features"
    classes = int(out.shape[-1]) if kind != "features" else None
    return ModelSignature(shape[1:], kind, classes)


def _own_head(model):
    """What a RegNetModel says its output is (from its build options), else None (other models: inspect the graph)."""
    options = getattr(model, "build_options", None)
    if not isinstance(options, dict) or "include_top" not in options:
        return None
    if not options["include_top"]:
        return "features"
    # softmax: probabilities; none or another activation (e.g. sigmoid): scores compared as they are ("logits")
    return "probabilities" if options.get("classifier_activation") == "softmax" else "logits"


def _output_layer(model):
    layer = producing_layer(model.outputs[0])
    while isinstance(layer, keras.Model) and len(layer.outputs) == 1:  # a wrapped model: look at its own output
        layer = producing_layer(layer.outputs[0])
    return layer


def _last_activation(model):
    layer = _output_layer(model)
    config = layer.get_config() if hasattr(layer, "get_config") else {}
    activation = config.get("activation")
    return activation if isinstance(activation, str) else None


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
    """A Keras model from a paper model name, a spec (dict, JSON string or ``.json`` file), a ``.keras`` file or a
    preset, through :func:`keras_regnet.loading.load_source`.

    Returns ``(model, name, weights_arch)`` where ``name`` is the export name (:func:`keras_regnet.pretrained.
    export_name`) and ``weights_arch`` the paper name when ``source`` names one (for the weights' eval config),
    else None. A source that cannot be loaded raises :class:`ExportError` (or ``FileNotFoundError``).
    """
    try:
        loaded = loading.load_source(source, weights=weights, input_size=input_size, classes=classes,
                                     include_top=include_top)
    except FileNotFoundError:
        raise
    except ValueError as e:
        if isinstance(e, ExportError) or not (loading.is_spec_source(source) or loading.is_preset_source(source)
                                              or str(source).endswith(".keras")):
            raise
        raise ExportError(str(e)) from None
    return loaded.model, export_name(loaded.model, arch=loaded.arch, path=loaded.path), loaded.arch


def _slug(name):
    return re.sub(r"[^a-z0-9_.-]+", "_", name.lower()).strip("_.") or "model"


def _versions(base):
    return sorted(int(d) for d in os.listdir(base) if d.isdigit()) if os.path.isdir(base) else []


_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def check_name(name):
    """``name`` if it is one safe directory name (letters, digits, ``_``, ``-``, ``.``; not hidden), else ExportError.

    The model directory is ``<output_dir>/<name>``: a name with a path separator, ``..`` or an absolute path
    would write outside ``output_dir``.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in (".", "..") or len(name) > 255:
        raise ExportError(
            f"model name {name!r} is not a single directory name: use letters, digits, '_', '-' and '.' only (no "
            "path separators, no '..', not starting with '.'); the export goes to OUTPUT_DIR/NAME/VERSION."
        )
    return name


def check_output_dir(output_dir):
    """Refuse an ``output_dir`` (or a parent of it) that exists and is not a directory."""
    path = os.path.abspath(os.fspath(output_dir))
    probe = path
    while probe and not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if os.path.exists(probe) and not os.path.isdir(probe):
        what = "--output-dir" if probe == path else f"--output-dir's parent {probe!r}"
        raise ExportError(f"{what} {os.fspath(output_dir)!r} is not a directory (a file is in the way); choose "
                          "another --output-dir.")


def read_metadata(path):
    """The export metadata JSON at ``path``; ExportError naming the file when it is unreadable or not JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExportError(
            f"export metadata {path!r} is damaged ({type(e).__name__}: {str(e).splitlines()[0][:120]}); that version "
            "directory is not a usable export: move it out of the model directory, or choose another --name."
        ) from None
    if not isinstance(meta, dict):
        raise ExportError(f"export metadata {path!r} is not a JSON object; move that version directory away.")
    return meta


def check_model_dir(base, fingerprint):
    """Refuse a model directory that holds something else than earlier versions of the same architecture.

    Returns a list of notes (stale staging directories removed, empty version directories removed).
    """
    if not os.path.exists(base):
        return []
    if not os.path.isdir(base):
        raise ExportError(f"{base!r} exists and is not a directory; choose another --output-dir or --name.")
    notes = clean_stale_staging(base)
    for entry in sorted(os.listdir(base)):
        path = os.path.join(base, entry)
        if entry.startswith(STAGING_PREFIX):
            continue  # another export in progress (stale ones were removed above): TF Serving ignores it
        if not entry.isdigit():
            raise ExportError(
                f"{base!r} holds {entry!r}, which is not a numbered version: it is not a TF Serving model directory "
                "written by keras-regnet export. Choose another --output-dir or --name."
            )
        if os.path.isdir(path) and not os.listdir(path):
            # Left by an interrupted publish of older versions of this package (mkdir, then rename): TF Serving
            # would try to load it. It holds nothing, so removing it loses nothing.
            os.rmdir(path)
            notes.append(f"removed empty version directory {path!r} (an interrupted export)")
            continue
        meta_path = os.path.join(path, METADATA_FILE)
        if not os.path.isfile(meta_path):
            raise ExportError(
                f"{path!r} was not exported by keras-regnet (no {METADATA_FILE}); refusing to add versions of a "
                "possibly different model next to it. Choose another --output-dir or --name."
            )
        other = read_metadata(meta_path).get("fingerprint")
        if other != fingerprint:
            raise ExportError(
                f"{base!r} holds another model (version {entry} has a different architecture). TF Serving serves "
                "one model per directory: choose another --name or --output-dir."
            )
    return notes


def next_version(base):
    """The version number a new export of ``base`` gets: one more than the highest existing one (1 at first)."""
    versions = _versions(base)
    return versions[-1] + 1 if versions else 1


STAGING_PREFIX = ".staging-"
STALE_AGE_S = 24 * 3600  # a staging directory of a live (or unknown) process older than this is abandoned


def staging_dir(base):
    """A fresh hidden directory inside ``base`` to build an export in (same filesystem, so publishing is a rename).

    Its name records the host and process id (``.staging-<host>-<pid>-<random>``) so a later export can tell a
    killed export's leftovers from one in progress.
    """
    os.makedirs(base, exist_ok=True)
    host = re.sub(r"[^A-Za-z0-9]+", "", socket.gethostname())[:32] or "host"
    path = os.path.join(base, f"{STAGING_PREFIX}{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.makedirs(path)
    return path


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's process), or we cannot tell: keep it
    return True


def clean_stale_staging(base, max_age_s=STALE_AGE_S):
    """Remove the staging directories of killed exports in ``base``; return one note per directory removed.

    Stale: written on this host by a process that no longer runs, or (other hosts, unknown names) untouched for
    ``max_age_s`` seconds. Staging directories are hidden from TF Serving (not numbered) either way.
    """
    notes = []
    host = re.sub(r"[^A-Za-z0-9]+", "", socket.gethostname())[:32] or "host"
    for entry in sorted(os.listdir(base)):
        if not entry.startswith(STAGING_PREFIX):
            continue
        path = os.path.join(base, entry)
        parts = entry[len(STAGING_PREFIX):].split("-")
        try:
            age = time.time() - os.path.getmtime(path)
        except OSError:
            continue
        dead = len(parts) == 3 and parts[0] == host and parts[1].isdigit() and not _pid_alive(int(parts[1]))
        if dead or age > max_age_s:
            shutil.rmtree(path, ignore_errors=True)
            why = "its export process is gone" if dead else f"untouched for {age / 3600:.0f} h"
            notes.append(f"removed stale staging directory {path!r} ({why})")
    return notes


def publish(staging, base):
    """Publish ``staging`` as the next free version of ``base`` in one atomic rename; return (version, path).

    The version directory appears complete or not at all (nothing is created first), so a crash leaves at most a
    hidden staging directory. Never overwrites: a rename onto a version another export published first fails
    and the next number is tried.
    """
    for _ in range(1000):
        version = next_version(base)
        target = os.path.join(base, str(version))
        if os.path.lexists(target):
            continue
        try:
            os.rename(staging, target)  # POSIX: fails if target is a non-empty directory; Windows: if it exists
        except OSError as e:
            if os.path.isdir(staging) and os.path.lexists(target):
                continue  # lost the race for this number: try the next one
            raise ExportError(f"cannot publish the export to {target!r}: {e.strerror or e}.") from None
        return version, target
    raise ExportError(f"cannot find a free version number in {base!r}.")


# ---------------------------------------------------------------------------------------------------------------
# comparing an artifact's classifier outputs with the Keras model's, in logit space


def reference_logits(model, images, output_kind):
    """The Keras model's pre-softmax outputs on ``images`` (classifiers), else None.

    For a softmax head (a ``Dense`` with softmax activation or a final softmax ``Activation``) the logits are
    computed from the head's input; otherwise ``log(probabilities)``, which equals the logits up to a per-image
    constant (compare centered logits).
    """
    import numpy as np

    if output_kind == "logits":
        return np.asarray(model(images, training=False))
    if output_kind != "probabilities":
        return None
    layer = producing_layer(model.outputs[0])
    try:
        if isinstance(layer, keras.layers.Dense):
            features = np.asarray(keras.Model(model.inputs[0], layer.input)(images, training=False))
            return features @ np.asarray(layer.kernel) + (np.asarray(layer.bias) if layer.use_bias else 0.0)
        if isinstance(layer, keras.layers.Activation):
            return np.asarray(keras.Model(model.inputs[0], layer.input)(images, training=False))
    except (ValueError, AttributeError, TypeError):  # a nested or shared head: fall back to log-probabilities
        pass
    probabilities = np.asarray(model(images, training=False), np.float64)
    return np.log(np.maximum(probabilities, 1e-38))


def compare_logits(reference, got):
    """How closely the logits ``got`` (an artifact's) follow ``reference`` (the Keras model's), per image.

    Both are centered per image (softmax ignores a constant shift). Returns ``logit_rel_error``: the median over
    images of RMS(got - reference) / std(reference), meaningful for untrained models whose probabilities are
    near-uniform as for trained ones; ``logit_top1_agreement`` on every image; ``decisive_images``: images whose
    reference top-1 logit leads the runner-up by more than twice that image's RMS error (where a faithful
    artifact must agree), and ``decisive_agreement`` on them (None when there are none).
    """
    import numpy as np

    ref = np.asarray(reference, np.float64)
    got = np.asarray(got, np.float64)
    ref = ref - ref.mean(axis=1, keepdims=True)
    got = got - got.mean(axis=1, keepdims=True)
    err = np.sqrt(np.mean((got - ref) ** 2, axis=1))
    spread = np.maximum(ref.std(axis=1), 1e-12)
    top2 = np.sort(ref, axis=1)[:, -2:] if ref.shape[1] > 1 else np.concatenate([ref, ref], 1)
    margin = top2[:, 1] - top2[:, 0]
    agree = np.argmax(got, axis=1) == np.argmax(ref, axis=1)
    decisive = margin > 2 * err
    finite = bool(np.all(np.isfinite(got)))
    return {
        "logit_rel_error": float(np.median(err / spread)) if finite else float("inf"),
        "logit_top1_agreement": float(np.mean(agree)),
        "decisive_images": int(np.sum(decisive)),
        "decisive_agreement": float(np.mean(agree[decisive])) if decisive.any() else None,
    }

"""SavedModel for TF Serving: a float-pixel signature and an encoded-image signature, verified after loading.

Signatures (both batched):

- ``serving_default``: ``images`` float32 (N, H, W, C) RGB in [0, 255] (H, W free when the model is dynamic).
- ``serving_bytes``: ``image_bytes`` string (N,) of encoded JPEG/PNG/GIF/BMP files, decoded, resized and
  center-cropped inside the graph (the weights' eval transform, :func:`keras_regnet.preprocessing.resize_and_center_crop`).

Outputs: ``probabilities`` (softmax classifiers; ``logits`` without softmax; ``features`` for backbones) and, for
classifiers, ``top_k_classes`` (int32) and ``top_k_scores`` (plus ``top_k_labels`` when class names are known). A
byte string that is not an image makes ``DecodeImage`` fail: TF Serving answers that request with an
INVALID_ARGUMENT error and keeps serving.
"""

from __future__ import annotations

import base64
import os

import keras
import numpy as np

__all__ = ["build_archive", "verify_savedmodel", "xla_must_compile_functions", "call_rest_body", "SIGNATURES"]

SIGNATURES = ("serving_default", "serving_bytes")


def _outputs_fn(model, signature, top_k, labels):
    import tensorflow as tf

    label_table = tf.constant(list(labels)) if labels is not None else None

    def outputs(images):
        y = model(images, training=False)
        result = {signature.output_kind: y}
        if signature.is_classifier:
            scores, classes = tf.math.top_k(y, k=min(top_k, signature.classes))
            result.update(top_k_scores=scores, top_k_classes=classes)
            if label_table is not None:
                result["top_k_labels"] = tf.gather(label_table, classes)
        return result

    return outputs


def build_archive(model, signature, eval_config, top_k=5, labels=None):
    """A ``keras.export.ExportArchive`` of ``model`` with the two serving signatures.

    ``eval_config``: ``{"size", "crop_pct", "interpolation"}`` of the bytes signature's transform.
    ``labels``: optional class names (one per class) for ``top_k_labels``.
    """
    import tensorflow as tf

    from keras_regnet.preprocessing import resize_and_center_crop

    h, w, c = signature.input_shape
    outputs = _outputs_fn(model, signature, top_k, labels)
    size, crop_pct, interpolation = eval_config["size"], eval_config["crop_pct"], eval_config["interpolation"]

    def serve_images(images):
        return outputs(images)

    def decode_one(data):
        image = tf.io.decode_image(data, channels=c, expand_animations=False)
        return resize_and_center_crop(image, size, crop_pct, interpolation)

    def serve_bytes(image_bytes):
        images = tf.map_fn(decode_one, image_bytes, fn_output_signature=tf.TensorSpec((size, size, c), tf.float32))
        return outputs(images)

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default", serve_images, input_signature=[tf.TensorSpec((None, h, w, c), tf.float32, name="images")]
    )
    archive.add_endpoint(
        "serving_bytes", serve_bytes, input_signature=[tf.TensorSpec((None,), tf.string, name="image_bytes")]
    )
    return archive


def write_savedmodel(model, path, signature, eval_config, top_k=5, labels=None):
    """Write the SavedModel (TF Serving layout of one version) to ``path``."""
    build_archive(model, signature, eval_config, top_k, labels).write_out(path, verbose=False)


def xla_must_compile_functions(path):
    """Names of the functions in ``path``/saved_model.pb marked ``_XlaMustCompile`` (should be empty)."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    found = []
    for meta in proto.meta_graphs:
        for fn in meta.graph_def.library.function:
            if fn.attr["_XlaMustCompile"].b:
                found.append(fn.signature.name)
            found += [f"{fn.signature.name}/{n.name}" for n in fn.node_def if n.attr["_XlaMustCompile"].b]
        found += [n.name for n in meta.graph_def.node if n.attr["_XlaMustCompile"].b]
    return found


def describe_signatures(loaded):
    """{signature: {"inputs": {name: (dtype, shape)}, "outputs": {...}}} of a loaded SavedModel."""
    result = {}
    for name, fn in loaded.signatures.items():
        inputs = fn.structured_input_signature[1]
        result[name] = {
            "inputs": {k: [v.dtype.name, v.shape.as_list()] for k, v in inputs.items()},
            "outputs": {k: [v.dtype.name, v.shape.as_list()] for k, v in fn.structured_outputs.items()},
        }
    return result


def verify_savedmodel(path, reference_model, images, encoded=None):
    """Load the SavedModel at ``path`` and check it against ``reference_model`` (the Keras model) on ``images``.

    Returns a report dict: ``max_abs_diff`` (serving_default vs Keras), ``signatures``, ``xla_must_compile``
    (list, should be empty), ``bad_bytes_error`` (the error a non-image byte string gets) and, when
    ``encoded`` (a list of encoded images) is given, ``bytes_top1_agreement`` of serving_bytes vs Keras on the
    same images decoded and transformed in Python.
    """
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    fn = loaded.signatures["serving_default"]
    out = fn(images=tf.constant(images))
    kind = next(k for k in ("probabilities", "logits", "features") if k in out)
    got = out[kind].numpy()
    ref = np.asarray(reference_model(images, training=False))
    report = {
        "output": kind,
        "max_abs_diff": float(np.max(np.abs(got - ref))),
        "signatures": describe_signatures(loaded),
        "xla_must_compile": xla_must_compile_functions(path),
    }
    try:
        loaded.signatures["serving_bytes"](image_bytes=tf.constant([b"this is not an image"]))
        report["bad_bytes_error"] = None
    except tf.errors.InvalidArgumentError as e:
        lines = [l for l in e.message.splitlines() if l.strip() and not l[0].isspace()
                 and not l.startswith(("Graph execution", "Detected at", "<stack"))]
        report["bad_bytes_error"] = (lines or [e.message])[0][:200]
    return report


def call_rest_body(loaded, body):
    """Run a TF Serving REST ``:predict`` body (row format, ``{"signature_name", "instances"}``) on a loaded SavedModel.

    Decodes ``{"b64": ...}`` values to bytes as TF Serving does and returns the response TF Serving would send,
    ``{"predictions": [{output: value, ...}, ...]}``. For tests and local checks of request bodies.
    """
    import tensorflow as tf

    fn = loaded.signatures[body.get("signature_name", "serving_default")]
    (input_name, spec), = fn.structured_input_signature[1].items()
    instances = body["instances"]
    if instances and isinstance(instances[0], dict) and set(instances[0]) != {"b64"}:
        instances = [inst[input_name] for inst in instances]
    values = [base64.b64decode(v["b64"]) if isinstance(v, dict) else v for v in instances]
    outputs = fn(**{input_name: tf.constant(values, dtype=spec.dtype)})
    rows = []
    for i in range(len(values)):
        row = {}
        for k, v in outputs.items():
            value = v[i].numpy()
            row[k] = value.astype(str).tolist() if value.dtype.kind in "SO" else value.tolist()
        rows.append(row)
    return {"predictions": rows}

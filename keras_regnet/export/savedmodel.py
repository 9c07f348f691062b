"""SavedModel for TF Serving: a float-pixel signature and an encoded-image signature, verified after loading.

Signatures (both batched):

- ``serving_default``: ``images`` float32 (N, H, W, C) RGB in [0, 255] (H, W free when the model is dynamic).
- ``serving_bytes``: ``image_bytes`` string (N,) of encoded JPEG/PNG/GIF/BMP/WebP files, decoded, resized and
  center-cropped inside the graph (the weights' eval transform, :func:`keras_regnet.preprocessing.resize_and_center_crop`).
  Each image's header is read first and an image declaring more than ``max_pixels`` pixels (default 40
  megapixels) is refused before it is decoded (:mod:`keras_regnet.export.image_guard`): a decompression bomb
  costs one failed request, not gigabytes.

Outputs: ``probabilities`` (softmax classifiers; ``logits`` without softmax; ``features`` for backbones) and, for
classifiers, ``top_k_classes`` (int32) and ``top_k_scores`` (plus ``top_k_labels`` when class names are known). A
byte string that is not an image, or an image above the pixel limit, fails that request with INVALID_ARGUMENT:
TF Serving answers it with an error and keeps serving. An empty batch (N = 0) gets empty outputs.
"""

from __future__ import annotations

import base64
import os

import keras
import numpy as np

from keras_regnet.export.image_guard import DEFAULT_MAX_PIXELS, tf_check_image_bytes

__all__ = ["build_archive", "verify_savedmodel", "xla_must_compile_functions", "call_rest_body", "SIGNATURES"]

SIGNATURES = ("serving_default", "serving_bytes")


def _outputs_fn(model, signature, top_k, labels):
    import tensorflow as tf

    label_table = tf.constant(list(labels)) if labels is not None else None

    def predict(images):
        # An empty batch gets an empty result: grouped convs (and some kernels) reject zero-sized inputs. The
        # model runs on one zero image of the request's size instead and the batch axis is sliced to 0.
        n = tf.shape(images)[0]
        one = tf.zeros(tf.concat([[1], tf.shape(images)[1:]], 0), images.dtype)
        return tf.cond(n > 0, lambda: model(images, training=False), lambda: model(one, training=False)[:0])

    def outputs(images):
        y = predict(images)
        result = {signature.output_kind: y}
        if signature.is_classifier:
            scores, classes = tf.math.top_k(y, k=min(top_k, signature.classes))
            result.update(top_k_scores=scores, top_k_classes=classes)
            if label_table is not None:
                result["top_k_labels"] = tf.gather(label_table, classes)
        return result

    return outputs


def build_archive(model, signature, eval_config, top_k=5, labels=None, max_pixels=DEFAULT_MAX_PIXELS):
    """A ``keras.export.ExportArchive`` of ``model`` with the two serving signatures.

    ``eval_config``: ``{"size", "crop_pct", "interpolation"}`` of the bytes signature's transform.
    ``labels``: optional class names (one per class) for ``top_k_labels``.
    ``max_pixels``: images declaring more pixels are refused by ``serving_bytes`` before decoding.
    """
    import tensorflow as tf

    from keras_regnet.preprocessing import resize_and_center_crop

    h, w, c = signature.input_shape
    outputs = _outputs_fn(model, signature, top_k, labels)
    size, crop_pct, interpolation = eval_config["size"], eval_config["crop_pct"], eval_config["interpolation"]

    def serve_images(images):
        return outputs(images)

    def decode_one(data):
        with tf.control_dependencies([tf_check_image_bytes(data, max_pixels)]):
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


def write_savedmodel(model, path, signature, eval_config, top_k=5, labels=None, max_pixels=DEFAULT_MAX_PIXELS):
    """Write the SavedModel (TF Serving layout of one version) to ``path``."""
    build_archive(model, signature, eval_config, top_k, labels, max_pixels).write_out(path, verbose=False)


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


def header_only_png(width, height):
    """A PNG that declares ``width`` x ``height`` pixels and holds no pixel data (checks the bytes guard cheaply)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IEND", b""))


def _first_line(error):
    lines = [l for l in error.message.splitlines() if l.strip() and not l[0].isspace()
             and not l.startswith(("Graph execution", "Detected at", "<stack"))]
    return (lines or [error.message])[0][:300]


def verify_savedmodel(path, reference_model, images, encoded=None, max_pixels=DEFAULT_MAX_PIXELS):
    """Load the SavedModel at ``path`` and check it against ``reference_model`` (the Keras model) on ``images``.

    Returns a report dict: ``max_abs_diff`` (serving_default vs Keras), ``signatures``, ``xla_must_compile``
    (list, should be empty), ``bad_bytes_error`` (the error a non-image byte string gets) and, when
    ``encoded`` (a list of encoded images) is given, ``bytes_top1_agreement`` of serving_bytes vs Keras on the
    same images decoded and transformed in Python; ``bomb_error``: the error an image declaring more than
    ``max_pixels`` pixels gets (None if it was accepted); ``empty_batch_ok``: serving_default answers an empty
    batch with empty outputs.
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
        report["bad_bytes_error"] = _first_line(e)
    side = int(max_pixels ** 0.5) + 1
    try:
        loaded.signatures["serving_bytes"](image_bytes=tf.constant([header_only_png(side, side)]))
        report["bomb_error"] = None
    except tf.errors.InvalidArgumentError as e:
        report["bomb_error"] = _first_line(e)
    empty = fn(images=tf.zeros((0, *images.shape[1:]), tf.float32))
    report["empty_batch_ok"] = all(v.shape[0] == 0 for v in empty.values())
    return report


def call_rest_body(loaded, body):
    """Run a TF Serving REST ``:predict`` body (row format, ``{"signature_name", "instances"}``) on a loaded SavedModel.

    ``body`` is the request as a dict or as its JSON text (str or bytes, what ``curl -d`` sends). Decodes
    ``{"b64": ...}`` values to bytes as TF Serving does and returns the response TF Serving would send,
    ``{"predictions": [{output: value, ...}, ...]}``. For tests and local checks of request bodies.
    """
    import json

    import tensorflow as tf

    if isinstance(body, (str, bytes, bytearray)):
        try:
            body = json.loads(body)
        except ValueError as e:
            raise ValueError(f"body is not valid JSON ({e}).") from None
    if not isinstance(body, dict) or "instances" not in body:
        raise ValueError('body must be a dict (or its JSON text) with an "instances" list, as TF Serving\'s REST '
                         f'":predict" takes; got {type(body).__name__}.')

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

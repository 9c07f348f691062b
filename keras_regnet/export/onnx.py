"""ONNX export through tf2onnx, checked with onnxruntime.

``tf2onnx.convert.from_function`` traces a ``tf.function`` that calls the Keras 3 model (so it works where
tf2onnx's Keras-2-era ``from_keras`` internals do not need to); grouped convs become ONNX ``Conv`` with a
``group`` attribute. Input ``images`` float32 (N, H, W, C) RGB in [0, 255], output named like the SavedModel's.
"""

from __future__ import annotations

import numpy as np

__all__ = ["convert", "evaluate", "OPSET"]

OPSET = 17


def convert(model, output_kind):
    """The serialized ONNX model (bytes) of ``model``."""
    import tensorflow as tf

    from keras_regnet._extras import require

    tf2onnx = require("tf2onnx", "export", "the ONNX export")

    h, w, c = model.inputs[0].shape[1:]
    spec = (tf.TensorSpec((None, h, w, c), tf.float32, name="images"),)

    @tf.function(input_signature=spec)
    def serve(images):
        return {output_kind: model(images, training=False)}

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=OPSET)
    return proto.SerializeToString()


def evaluate(content, images, reference, reference_logits=None):
    """{max_abs_diff, top1_agreement, ...} of the ONNX model run by onnxruntime (CPU) vs ``reference`` outputs.

    With ``reference_logits`` (classifiers), also the logit comparison of
    :func:`keras_regnet.export.common.compare_logits` (the file's logits: log of its float32 probabilities).
    """
    from keras_regnet.export.common import compare_logits

    from keras_regnet._extras import require

    onnxruntime = require("onnxruntime", "export", "the ONNX check")

    session = onnxruntime.InferenceSession(content, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: np.asarray(images, np.float32)})[0]
    reference = np.asarray(reference)
    report = {"max_abs_diff": float(np.max(np.abs(got - reference))), "ops": sorted(
        {node.op_type for node in _graph_nodes(content)})}
    if reference.ndim == 2:
        report["top1_agreement"] = float(np.mean(np.argmax(got, -1) == np.argmax(reference, -1)))
    report["finite"] = bool(np.all(np.isfinite(got)))
    if reference_logits is not None:
        softmax = np.allclose(np.sum(reference, axis=-1), 1, atol=1e-3) and np.all(reference >= 0)
        own = np.log(np.maximum(np.asarray(got, np.float64), 1e-38)) if softmax else got
        report.update(compare_logits(reference_logits, own))
    return report


def _graph_nodes(content):
    from keras_regnet._extras import require

    onnx = require("onnx", "export", "the ONNX check")

    return onnx.load_from_string(content).graph.node

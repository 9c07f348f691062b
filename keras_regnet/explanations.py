"""Visual explanations of RegNet classifiers with tf-keras-vis (Grad-CAM, Grad-CAM++, LayerCAM, Score-CAM, saliency).

tf-keras-vis 0.8.7 runs on Keras 3 models. Two of its defaults need care, both handled here:

- Gradient methods should score the logits, not the softmax (tf-keras-vis's ``ReplaceToLinear``). Our head ends in a
  linear ``head_fc`` followed by the ``predictions`` activation, so scoring uses a model that ends at ``head_fc``
  and shares the user's layers: no clone, no weight copy, and the user's model is never modified. (tf-keras-vis's
  own ``ReplaceToLinear`` gives identical maps but clones the model; with ``clone=False`` it would overwrite the
  user's softmax.) Models without ``head_fc`` fall back to ``ReplaceToLinear`` on a clone. Score-CAM scores the
  probabilities, as tf-keras-vis recommends.
- The CAM layer is named explicitly (default: the last stage's output ``s{N}_b{last}_out``, a ReLU) and passed with
  ``seek_penultimate_conv_layer=False``; otherwise tf-keras-vis silently moves to the nearest Conv layer before it
  (``s{N}_b{last}_conv_c``, before the residual add and ReLU).
"""

from __future__ import annotations

import contextlib
import os
import tempfile

import keras
import numpy as np

from keras_regnet.features import stage_outputs
from keras_regnet._compat import producing_layer
from keras_regnet.model import find_regnet

__all__ = ["METHODS", "explain", "explanation_layer", "overlay_heatmap", "plot_explanations"]

METHODS = ("gradcam", "gradcam++", "layercam", "scorecam", "saliency")
_CAM_METHODS = ("gradcam", "gradcam++", "layercam", "scorecam")


def _own_regnet(model):
    """``model`` if it is a keras_regnet model (its stages and padding are recorded), else None."""
    regnet = find_regnet(model)
    return regnet if regnet is model else None


def _feature_map_layers(model):
    """Names of ``model``'s layers with a 4D (feature map) output, in network order."""
    out = []
    for layer in model.layers:
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):
            continue
        if len(shape) == 4 and not isinstance(layer, keras.layers.InputLayer):
            out.append(layer.name)
    return out


def explanation_layer(model) -> str:
    """Name of the layer Grad-CAM uses by default: the output of the model's last stage (for a model built on a
    RegNet's layers but not a keras_regnet model itself: its last layer with a 4D output)."""
    if _own_regnet(model) is not None:
        return list(stage_outputs(model).values())[-1]
    candidates = _feature_map_layers(model)
    if not candidates:
        raise ValueError(f"model {model.name!r} has no layer with a 4D feature map output to compute a CAM on.")
    return candidates[-1]


def _logits_layer(model):
    """The classifier's linear layer (its output is the logits), from the roles recorded while building."""
    regnet = find_regnet(model)
    if regnet is model:
        for name, role in regnet.layer_roles.items():
            if role.stage == "head" and role.role == "fc":
                return model.get_layer(name)
    # a user's model around a RegNet backbone: the head replace_head builds keeps the head_fc layout
    names = {layer.name for layer in model.layers}
    return model.get_layer("head_fc") if "head_fc" in names else None


def _scoring_model(model, linear):
    """A model sharing ``model``'s layers whose output is the logits (``linear``) or the model's own output.

    Built on ``model.inputs`` (a list) because tf-keras-vis calls models with a list of inputs.
    """
    if not linear:
        return keras.Model(model.inputs, model.outputs, name=f"{model.name}_scoring")
    fc = _logits_layer(model)
    if fc is not None:
        return keras.Model(model.inputs, fc.output, name=f"{model.name}_logits")
    return None  # no linear head to tap: tf-keras-vis's ReplaceToLinear on a clone


def _check_images(model, images):
    """Validate and batch the images: (H, W, C) or (N, H, W, C) matching the model's input."""
    images = np.asarray(images)
    if images.ndim not in (3, 4):
        raise ValueError(
            f"images must be one image (height, width, channels) or a batch (n, height, width, channels), "
            f"got an array of shape {images.shape}."
        )
    single = images.ndim == 3
    batch = images[None] if single else images
    expected = tuple(model.inputs[0].shape[1:])
    if len(model.inputs) != 1 or len(expected) != 3:
        raise ValueError(f"explain needs a model with one image input, got inputs {[t.shape for t in model.inputs]}.")
    if expected[2] is not None and batch.shape[3] != expected[2]:
        raise ValueError(f"model {model.name!r} takes {expected[2]}-channel images, got {batch.shape[3]} channels.")
    for got, want in zip(batch.shape[1:3], expected[:2]):
        if want is not None and got != want:
            raise ValueError(
                f"model {model.name!r} takes {expected[0]}x{expected[1]} images, "
                f"got {batch.shape[1]}x{batch.shape[2]}; "
                "resize them (keras_regnet.preprocessing.resize_and_center_crop) or build the model with "
                "input_shape=(None, None, 3)."
            )
    if batch.shape[0] == 0:
        raise ValueError("images is an empty batch.")
    return batch.astype("float32"), single


def _class_indices(model, batch, class_index):
    """One class per image: the model's prediction (``None``), one int for all, or one per image; range-checked."""
    classes = model.outputs[0].shape[-1]
    pooled_backbone = producing_layer(model.outputs[0]).name in ("avg_pool", "max_pool")
    if len(model.outputs) != 1 or len(model.outputs[0].shape) != 2 or pooled_backbone:
        raise ValueError(
            "explain needs a classifier with one (batch, classes) output, "
            f"got outputs {[t.shape for t in model.outputs]} from {producing_layer(model.outputs[0]).name!r}; "
            "build the model with include_top=True or add a head (keras_regnet.transfer.replace_head)."
        )
    if class_index is None:
        return [int(i) for i in np.argmax(model.predict(batch, verbose=0), axis=-1)]
    indices = np.asarray(class_index)
    if indices.ndim == 0:
        indices = np.repeat(indices, len(batch))
    if indices.ndim != 1 or len(indices) != len(batch):
        raise ValueError(f"class_index must be None, an int or one int per image ({len(batch)}), got {class_index!r}.")
    if not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"class_index must be integer(s), got {class_index!r}.")
    bad = sorted({int(i) for i in indices if not 0 <= i < classes})
    if bad:
        raise ValueError(
            f"class_index {bad} out of range: model {model.name!r} has {classes} classes (0..{classes - 1})."
        )
    return [int(i) for i in indices]


@contextlib.contextmanager
def _quiet_keras():
    """Hide the progress bars of the ``model.predict`` calls tf-keras-vis makes (Score-CAM)."""
    was_on = keras.config.is_interactive_logging_enabled()
    keras.config.disable_interactive_logging()
    try:
        yield
    finally:
        if was_on:
            keras.config.enable_interactive_logging()


def explain(model, images, method="gradcam", class_index=None, layer=None, **kwargs):
    """Heatmaps of where ``model`` looks to score ``class_index``, computed with tf-keras-vis.

    Args:
        model: a classifier built by keras_regnet (``include_top=True``, or one with a head from
            ``replace_head``); its input is what you would pass to ``model.predict`` (RGB in [0, 255] by default).
        images: one image ``(H, W, C)`` or a batch ``(N, H, W, C)``.
        method: ``"gradcam"``, ``"gradcam++"``, ``"layercam"``, ``"scorecam"`` (gradient free, one forward pass
            per channel of ``layer``; pass ``max_N=64`` for Faster-Score-CAM) or ``"saliency"`` (input gradients;
            ``smooth_samples=20`` gives SmoothGrad).
        class_index: the class to explain: ``None`` (each image's predicted class), an int, or one int per image.
        layer: CAM layer name (CAM methods only); default the last stage output, e.g. ``s4_b7_out``.
        **kwargs: passed on to the tf-keras-vis call (e.g. ``max_N``, ``smooth_samples``, ``batch_size``).

    Returns:
        float32 array ``(N, H, W)`` (or ``(H, W)`` for one image) in [0, 1], 1 = most important; the CAMs are
        upsampled to the image size.
    """
    from keras_regnet._extras import require

    require("tf_keras_vis", "explain", "keras_regnet.explain")
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.layercam import Layercam
    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.scorecam import Scorecam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    if not isinstance(model, keras.Model):
        raise ValueError(f"model must be a keras.Model, got {type(model).__name__}.")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    layer_names = {x.name for x in model.layers}
    if method in _CAM_METHODS:
        layer = layer or explanation_layer(model)
        if layer not in layer_names:
            raise ValueError(
                f"model {model.name!r} has no layer {layer!r}; its stage outputs are "
                f"{', '.join(_stage_layers(model))} (model.summary() lists every layer)."
            )
        if len(model.get_layer(layer).output.shape) != 4:
            raise ValueError(
                f"layer {layer!r} outputs shape {model.get_layer(layer).output.shape}; a CAM needs a 4D feature map."
            )
    elif layer is not None:
        raise ValueError(f"layer applies to the CAM methods only, not to {method!r}.")
    batch, single = _check_images(model, images)
    score = CategoricalScore(_class_indices(model, batch, class_index))

    cls = {"gradcam": Gradcam, "gradcam++": GradcamPlusPlus, "layercam": Layercam, "scorecam": Scorecam,
           "saliency": Saliency}[method]
    scoring = _scoring_model(model, linear=method != "scorecam")
    if scoring is None:
        visualizer = cls(model, model_modifier=ReplaceToLinear(), clone=True)
    else:
        visualizer = cls(scoring, clone=False)
    if method in _CAM_METHODS:
        if "expand_cam" in kwargs:
            raise ValueError("expand_cam is not an option here: explain always returns maps of the image size.")
        # expand_cam=False: tf-keras-vis upsamples with scipy's zoom, which aligns the corner pixels and shifts
        # the CAM by up to half a stride towards the borders; _upsample_cam puts each cell where it looks.
        kwargs = dict(penultimate_layer=layer, seek_penultimate_conv_layer=False, expand_cam=False, **kwargs)
    with _quiet_keras():
        maps = visualizer(score, [batch], **kwargs)
    maps = np.asarray(maps[0] if isinstance(maps, list) else maps, dtype="float32")
    if method in _CAM_METHODS:
        geometry = _cell_geometry(model, layer)
        if geometry is None:
            maps = _upsample(maps, batch.shape[1:3])
        else:
            maps = _upsample_cam(maps, batch.shape[1:3], *geometry)
    return maps[0] if single else maps


def _stage_layers(model):
    if _own_regnet(model) is not None:
        return list(stage_outputs(model).values())
    return _feature_map_layers(model)[-5:]


def _cell_geometry(model, layer):
    """(stride, offset): CAM cell i of ``layer`` is centred on input pixel ``stride * i + offset`` (each axis).

    With PyTorch-style symmetric padding every stride-2 conv centres output j on input 2j, so the offset is 0.
    With TF's 'same' padding the 3x3 branch centres it on 2j + 1 but the 1x1 shortcut on 2j; measured receptive
    field centres then sit about half a stride in, (stride - 1) / 2 (tests/test_explain.py checks both).
    """
    from keras_regnet.features import layer_stride

    regnet = _own_regnet(model)
    if regnet is None:
        return None  # geometry not recorded: pixel-centre aligned resize
    stride = layer_stride(model, layer)
    symmetric = regnet.build_options.get("padding", "symmetric") == "symmetric"
    return stride, 0.0 if symmetric else (stride - 1) / 2


def _upsample_cam(maps, size, stride, offset):
    """Bilinear resize of (N, h, w) CAMs to ``size`` with each cell placed on the pixel its receptive field centres on.

    tf-keras-vis's ``scipy.ndimage.zoom`` maps corner pixel to corner pixel instead (at stride 8 on a 64 px image,
    cell 7 lands on pixel 63, not 56), shifting the map by up to half a stride towards the borders.
    """
    out = maps
    for axis, n_out in ((1, size[0]), (2, size[1])):
        n_in = out.shape[axis]
        u = np.clip((np.arange(n_out) - offset) / stride, 0, n_in - 1)
        lo = np.floor(u).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        w = (u - lo).astype("float32")
        shape = [1, 1, 1]
        shape[axis] = n_out
        w = w.reshape(shape)
        out = np.take(out, lo, axis=axis) * (1 - w) + np.take(out, hi, axis=axis) * w
    return out.astype("float32")


def _upsample(maps, size):
    """Bilinear resize of (N, h, w) maps to ``size`` with pixel centres aligned (when the model is unknown)."""
    import tensorflow as tf

    if maps.shape[1:] == tuple(size):
        return maps
    resized = tf.image.resize(maps[..., None], tuple(int(v) for v in size), method="bilinear")
    return resized.numpy()[..., 0]  # bilinear weights are convex: values stay in the maps' range


def _as_uint8_rgb(image):
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3:
        raise ValueError(f"image must be (height, width, channels), got shape {image.shape}.")
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    if image.shape[-1] != 3:
        raise ValueError(f"only 1- or 3-channel images can be drawn, got {image.shape[-1]} channels.")
    return np.clip(image, 0, 255).astype("uint8")


def overlay_heatmap(image, heatmap, alpha=0.45, colormap="jet"):
    """Blend a heatmap in [0, 1] over an RGB image in [0, 255]: returns a uint8 (H, W, 3) image.

    The heatmap is resized to the image if needed; ``alpha`` is the heatmap's opacity.
    """
    from keras_regnet._extras import require

    matplotlib = require("matplotlib", "explain", "keras_regnet.explanations.overlay_heatmap")

    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}.")
    rgb = _as_uint8_rgb(image)
    heatmap = np.asarray(heatmap, dtype="float32")
    if heatmap.ndim != 2:
        raise ValueError(f"heatmap must be 2D (height, width), got shape {heatmap.shape}.")
    heat = np.clip(_upsample(heatmap[None], rgb.shape[:2])[0], 0, 1)
    colored = matplotlib.colormaps[colormap](heat)[..., :3] * 255.0
    return np.round((1 - alpha) * rgb + alpha * colored).astype("uint8")


def plot_explanations(images, heatmaps, titles=None, path=None, alpha=0.45, colormap="jet"):
    """A figure with one row per image: the image, and the heatmap over it; saved as PNG when ``path`` is given.

    Uses matplotlib's object API (Agg canvas, no pyplot state), so it works headless. The file is written to a
    temporary name and renamed, so an existing file is never left half-written.

    Returns:
        the ``matplotlib.figure.Figure``.
    """
    from keras_regnet._extras import require

    require("matplotlib", "explain", "keras_regnet.explanations.plot_explanations")
    from matplotlib.figure import Figure

    images = np.asarray(images)
    heatmaps = np.asarray(heatmaps)
    if images.ndim == 3:
        images, heatmaps = images[None], heatmaps[None]
    if len(images) != len(heatmaps):
        raise ValueError(f"got {len(images)} images but {len(heatmaps)} heatmaps.")
    titles = list(titles) if titles is not None else [""] * len(images)
    if len(titles) != len(images):
        raise ValueError(f"got {len(images)} images but {len(titles)} titles.")
    fig = Figure(figsize=(6, 3 * len(images)), layout="constrained")
    axes = fig.subplots(len(images), 2, squeeze=False)
    for row, (image, heatmap, title) in enumerate(zip(images, heatmaps, titles)):
        axes[row, 0].imshow(_as_uint8_rgb(image))
        axes[row, 0].set_title("input")
        axes[row, 1].imshow(overlay_heatmap(image, heatmap, alpha, colormap))
        axes[row, 1].set_title(title)
        for ax in axes[row]:
            ax.axis("off")
    if path is not None:
        path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(suffix=".png", dir=directory)
        os.close(fd)
        try:
            fig.savefig(tmp, format="png", dpi=100)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    return fig

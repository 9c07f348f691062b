"""The default inference path: ``model(x, training=False)`` and ``predict`` run the fast path (folded BatchNorm,
one traced graph) from the second use on, and stay exactly the Keras graph's answer after every weight change."""

import os
import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import keras_regnet  # noqa: E402
from keras_regnet import inference  # noqa: E402

from conftest import TINY, TINY_SE  # noqa: E402
from test_inference import _randomize  # noqa: E402

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the fast path is a TF graph")


def _model(spec=TINY_SE, size=32):
    return _randomize(keras_regnet.AnyNet(**spec, input_shape=(size, size, 3), classes=3, classifier_activation=None))


def _images(n=4, size=32, seed=1):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


def _keras_graph(model, x):
    """What the Keras graph computes (the fast path switched off for this one call)."""
    inference.set_fast_path(model, False)
    try:
        return keras.ops.convert_to_numpy(model(x, training=False))
    finally:
        inference.set_fast_path(model, True)


def _fast(model, x):
    """``model(x, training=False)`` twice (the fast path is built on the second use); asserts the fast path ran."""
    model(x, training=False)
    before = inference.fast_path_info(model)["calls"]
    out = model(x, training=False).numpy()
    info = inference.fast_path_info(model)
    assert info["active"] and info["calls"] == before + 1, info
    return out


def _compile(model, optimizer=None):
    model.compile(optimizer=optimizer or keras.optimizers.SGD(0.1, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))


def test_call_predict_and_predict_on_batch_run_the_fast_path():
    model, x = _model(), _images()
    out = _fast(model, x)
    np.testing.assert_allclose(out, _keras_graph(model, x), rtol=1e-5, atol=1e-5)
    fast = inference._state(model).fast
    assert "ReadVariableOp" not in {op.type for op in fast.function.get_concrete_function().graph.get_operations()}
    assert fast.report["keras_layers"] == {}  # every layer ran as plain TF ops, every BatchNorm folded
    calls = inference.fast_path_info(model)["calls"]
    np.testing.assert_allclose(model.predict(x, batch_size=3, verbose=0), out, rtol=1e-5, atol=1e-5)  # 2 batches
    np.testing.assert_allclose(model.predict_on_batch(x), out, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model(x).numpy(), out, rtol=1e-5, atol=1e-5)  # training=None is inference too
    info = inference.fast_path_info(model)
    assert info["calls"] == calls + 4 and info["builds"] == 1, info
    # training=True is the Keras graph (batch statistics): different from inference on these weights.
    assert np.abs(model(x, training=True).numpy() - out).max() > 1e-3


def test_predict_of_an_array_skips_keras_predict_loop(capsys):
    """``predict(x)`` of an array or tensor answers batch by batch from the fast path, without Keras's tf.data
    pipeline and callback list (40 of a batch-1 predict's 53 ms on 2 cores): same outputs, Keras's default batch
    size and progress bar; data sets, callbacks and ``steps`` still run Keras's loop."""
    model, x = _model(), _images(7)
    want = _keras_graph(model, x)
    model(x[:1])  # the fast path is built on the second use
    calls = inference.fast_path_info(model)["calls"]
    got = model.predict(x, batch_size=3, verbose=0)
    assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert inference.fast_path_info(model)["calls"] == calls + 3  # ceil(7 / 3) batches
    assert model.predict_function is None  # Keras's predict loop never ran
    np.testing.assert_allclose(model.predict(tf.constant(x), verbose=0), want, rtol=1e-5, atol=1e-5)  # one batch
    assert capsys.readouterr().out == ""
    model.predict(x, batch_size=3)  # verbose="auto": Keras's progress bar
    assert "3/3" in capsys.readouterr().out
    model.predict(x, batch_size=3, verbose=2)
    assert capsys.readouterr().out.strip().startswith("3/3 - ")
    # Keras's loop: a tf.data data set, callbacks (which must be called), steps
    ds = tf.data.Dataset.from_tensor_slices(x).batch(4)
    np.testing.assert_allclose(model.predict(ds, verbose=0), want, rtol=1e-5, atol=1e-5)
    assert model.predict_function is not None

    class Count(keras.callbacks.Callback):
        batches = 0

        def on_predict_batch_end(self, batch, logs=None):
            Count.batches += 1

    np.testing.assert_allclose(model.predict(x, batch_size=3, verbose=0, callbacks=[Count()]), want, rtol=1e-5,
                               atol=1e-5)
    assert Count.batches == 3
    np.testing.assert_allclose(model.predict(x, batch_size=3, verbose=0, steps=2), want[:6], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="empty batch"):
        model.predict(x[:0], verbose=0)


def test_predict_of_an_array_keeps_the_output_structure():
    """A multi-output model (the stage features) gets the same dict of arrays as Keras's predict returns."""
    model, x = _model(), _images(5)
    features = keras_regnet.feature_extractor(model)
    features(x[:1])
    got = features.predict(x, batch_size=2, verbose=0)
    want = keras.Model.predict(features, x, batch_size=2, verbose=0)
    assert isinstance(got, dict) and set(got) == set(want) and len(got) > 1
    for name in want:
        assert got[name].shape == want[name].shape
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # training before the exactness check
def test_exact_after_fit_and_predict_retraced():
    model, x, y = _model(), _images(8), np.arange(8) % 3
    _compile(model)
    before = model.predict(x, verbose=0)
    before = model.predict(x, verbose=0)  # second use: the predict function now runs the fast path
    builds = inference.fast_path_info(model)["builds"]
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    for _ in range(2):  # the first use after fit runs the Keras graph, the second rebuilds the fast path
        after = model.predict(x, verbose=0)
        np.testing.assert_allclose(after, _keras_graph(model, x), rtol=1e-5, atol=1e-5)
    assert np.abs(after - before).max() > 1e-3  # the weights really changed
    assert inference.fast_path_info(model)["builds"] == builds + 1
    np.testing.assert_allclose(_fast(model, x), after, rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # training before the exactness check
def test_exact_after_fit_with_frozen_batchnorm_and_train_on_batch():
    # No BatchNorm statistic moves: only the optimizer (which updates the underlying tf.Variables) changes weights.
    model, x, y = _model(), _images(8), np.arange(8) % 3
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    _compile(model)
    before = _fast(model, x)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    after = _fast(model, x)
    assert np.abs(after - before).max() > 1e-3
    np.testing.assert_allclose(after, _keras_graph(model, x), rtol=1e-5, atol=1e-5)
    model.train_on_batch(x, y)
    np.testing.assert_allclose(_fast(model, x), _keras_graph(model, x), rtol=1e-5, atol=1e-5)


def test_exact_after_set_weights_and_load_weights(tmp_path):
    model, x = _model(), _images()
    original = _fast(model, x)
    path = str(tmp_path / "w.weights.h5")
    model.save_weights(path)
    model.set_weights([w * 1.25 for w in model.get_weights()])
    changed = _fast(model, x)
    assert np.abs(changed - original).max() > 1e-3
    np.testing.assert_allclose(changed, _keras_graph(model, x), rtol=1e-5, atol=1e-5)
    model.get_layer("head_fc").bias.assign(np.full(3, 7.0, "float32"))  # one variable, assigned directly
    np.testing.assert_allclose(_fast(model, x), _keras_graph(model, x), rtol=1e-5, atol=1e-5)
    model.load_weights(path)
    np.testing.assert_allclose(_fast(model, x), original, rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # training before the exactness check
def test_freezing_rebuilds_and_stays_exact():
    model, x, y = _model(), _images(8), np.arange(8) % 3
    _fast(model, x)
    builds = inference.fast_path_info(model)["builds"]
    for layer in model.layers[: len(model.layers) // 2]:
        layer.trainable = False
    _compile(model)
    out = _fast(model, x)
    assert inference.fast_path_info(model)["builds"] == builds + 1  # the trainable flags are part of the key
    np.testing.assert_allclose(out, _keras_graph(model, x), rtol=1e-5, atol=1e-5)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    np.testing.assert_allclose(_fast(model, x), _keras_graph(model, x), rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # training before the exactness check
def test_exact_after_a_custom_training_loop_with_its_own_optimizer():
    model, x = _model(), _images()
    optimizer = keras.optimizers.Adam(1e-2)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model(x, training=True) ** 2)
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))

    step()  # traced before the fast path exists
    before = _fast(model, x)
    step()
    after = _fast(model, x)
    assert np.abs(after - before).max() > 1e-4
    np.testing.assert_allclose(after, _keras_graph(model, x), rtol=1e-5, atol=1e-5)


def test_gradients_user_functions_and_other_shapes_use_the_keras_graph():
    model, x = _model(TINY_SE), _images()
    _fast(model, x)
    # Under a gradient tape the variables must be used: gradients reach every weight.
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(x, training=False))
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None for g in grads)
    # A tf.function of the user's must not freeze today's weights into its graph.
    f = tf.function(lambda t: model(t, training=False))
    f(x)
    model.get_layer("head_fc").bias.assign_add(np.ones(3, "float32"))
    np.testing.assert_allclose(f(x).numpy(), _keras_graph(model, x), rtol=1e-5, atol=1e-5)
    # Symbolic calls build models as before; a batch of another size fails as the Keras graph fails.
    inputs = keras.Input((32, 32, 3))
    outer = keras.Model(inputs, model(inputs))
    np.testing.assert_allclose(outer.predict(x, verbose=0), _keras_graph(model, x), rtol=1e-5, atol=1e-5)
    with pytest.raises(Exception):
        model(_images(1, 40), training=False)


def test_top_level_calls_skip_keras_call_machinery_and_nested_calls_keep_their_training_flag(monkeypatch):
    model, x = _model(TINY_SE), _images()
    _fast(model, x)
    expected = _keras_graph(model, x)
    # model(x), model(x, training=False) and a numpy batch are answered without keras.Model.__call__.
    entered = []
    original = keras.Model.__call__
    monkeypatch.setattr(keras.Model, "__call__", lambda self, *a, **k: entered.append(1) or original(self, *a, **k))
    before = inference.fast_path_info(model)["calls"]
    for out in (model(x), model(x, training=False), model(tf.constant(x)), model(x, training=None)):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(out), expected, rtol=1e-5, atol=1e-5)
    assert inference.fast_path_info(model)["calls"] == before + 4 and not entered
    # training=True, and calls nested in another model's call (which pass its training flag on), run Keras.
    inputs = keras.Input((32, 32, 3))
    outer = keras.Model(inputs, model(inputs))
    mean = model.get_layer("s1_b1_bn_a").moving_mean.numpy().copy()
    calls = inference.fast_path_info(model)["calls"]
    with tf.GradientTape() as tape:  # so the batch statistics' gradient path is the Keras one
        train_out = outer(x, training=True)
    assert tape is not None and inference.fast_path_info(model)["calls"] == calls
    assert np.abs(model.get_layer("s1_b1_bn_a").moving_mean.numpy() - mean).max() > 0  # BN ran in training mode
    assert np.abs(keras.ops.convert_to_numpy(train_out) - expected).max() > 1e-4
    entered.clear()
    model(x, training=True)
    assert entered and inference.fast_path_info(model)["calls"] == calls
    # Without a tape, a nested training call still runs the Keras graph (the outer model's flag reaches ours).
    mean = model.get_layer("s1_b1_bn_a").moving_mean.numpy().copy()
    outer(x, training=True)
    assert np.abs(model.get_layer("s1_b1_bn_a").moving_mean.numpy() - mean).max() > 0
    assert inference.fast_path_info(model)["calls"] == calls


def test_calling_the_model_in_a_users_autograph_function_converts_cleanly():
    """The model's __call__ is user code to AutoGraph: what it runs inside a tf.function must convert without the
    "AutoGraph could not transform" warnings (an importlib call on that path made one per trace)."""
    import logging

    model, x = _model(TINY), _images()
    messages = []

    class Collect(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    handler = Collect()
    logging.getLogger("tensorflow").addHandler(handler)
    try:
        out = tf.function(lambda t: model(t, training=False))(x)
    finally:
        logging.getLogger("tensorflow").removeHandler(handler)
    assert not [m for m in messages if "AutoGraph" in m], messages
    np.testing.assert_allclose(out.numpy(), _keras_graph(model, x), rtol=1e-5, atol=1e-5)


def test_set_fast_path_off_runs_the_keras_graph():
    model, x = _model(TINY), _images()
    inference.set_fast_path(model, False)
    for _ in range(3):
        model(x, training=False)
    model.predict(x, verbose=0)
    info = inference.fast_path_info(model)
    assert info == {"active": False, "builds": 0, "calls": 0, "enabled": False, "failure": None}


@pytest.mark.slow
@pytest.mark.skipif(not __import__("importlib").util.find_spec("jax"), reason="needs jax")
def test_other_backends_keep_the_keras_graph():
    code = (
        "import numpy as np, keras, keras_regnet\n"
        "from keras_regnet import inference\n"
        "m = keras_regnet.AnyNet(depths=(1,1,1,1), widths=(8,16,24,32), bottleneck_ratios=(1,)*4,"
        " group_widths=(8,)*4, se_ratio=0.25, input_shape=(32,32,3), classes=3)\n"
        "x = np.random.default_rng(0).uniform(0, 255, (2,32,32,3)).astype('float32')\n"
        "a = [np.asarray(m(x, training=False)) for _ in range(3)]\n"
        "p = m.predict(x, verbose=0); p = m.predict(x, verbose=0)\n"
        "np.testing.assert_allclose(p, a[0], rtol=1e-5, atol=1e-6)\n"
        "assert inference.fast_path_info(m)['calls'] == 0\n"
        "print('backend', keras.backend.backend())\n"
    )
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "backend jax" in r.stdout


def test_mixed_precision_models_run_the_keras_graph_and_keep_their_float32_softmax():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = _randomize(keras_regnet.AnyNet(**TINY_SE, input_shape=(32, 32, 3), classes=3))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    x = _images()
    for out in (model.predict(x, verbose=0), model.predict(x, verbose=0), np.asarray(model(x)), np.asarray(model(x))):
        assert out.dtype == np.float32 and np.allclose(out.sum(axis=-1), 1, atol=1e-2)
    assert inference.fast_path_info(model)["active"] is False

"""keras_regnet.training: schedule vs the paper's formula, coupled weight decay and which weights it hits,
augmentation statistics, precise BN, strategies and clear errors for bad input."""

import json
import math
import os

import numpy as np
import pytest

from conftest import TINY

import keras  # required by [test]: a broken install must fail, not skip
import tensorflow as tf

from keras_regnet.training import pipeline  # noqa: E402
from keras_regnet.training.callbacks import PreciseBN, batchnorm_layers  # noqa: E402
from keras_regnet.training.optim import DecaySGD, is_kernel  # noqa: E402
from keras_regnet.training.presets import describe_defaults, make_config, resolve_defaults  # noqa: E402
from keras_regnet.training.schedules import WarmupCosine, paper_epoch_lr, scaled_learning_rate  # noqa: E402
from keras_regnet.training.strategy import global_batch_size, make_strategy  # noqa: E402


def _tiny(**kw):
    from keras_regnet import AnyNet

    kw.setdefault("input_shape", (32, 32, 3))
    kw.setdefault("classes", 4)
    return AnyNet(**TINY, stem="cifar", **kw)


# ------------------------------------------------------------------------------------------------ schedule


def test_linear_scaling_rule():
    assert scaled_learning_rate(128) == pytest.approx(0.1)
    assert scaled_learning_rate(1024) == pytest.approx(0.8)  # the paper's batch 1024 / lr 0.8
    assert scaled_learning_rate(256) == pytest.approx(0.2)
    with pytest.raises(ValueError):
        scaled_learning_rate(0)


def test_schedule_matches_the_paper_formula_at_chosen_steps():
    # Batch 1024 on ImageNet: base lr 0.8, 100 epochs, 1251 steps per epoch, warm-up 5 epochs from 0.1x.
    s = WarmupCosine(0.8, epochs=100, steps_per_epoch=1251)
    expected = {
        0: 0.08,  # epoch 0: 0.8 * 0.1
        1250: 0.08,  # still epoch 0: set once per epoch
        1251: 0.8 * 0.5 * (1 + math.cos(math.pi / 100)) * (0.1 * 0.8 + 0.2),  # epoch 1: alpha 0.2
        3 * 1251 + 7: 0.8 * 0.5 * (1 + math.cos(3 * math.pi / 100)) * (0.1 * 0.4 + 0.6),
        5 * 1251: 0.8 * 0.5 * (1 + math.cos(5 * math.pi / 100)),  # warm-up over
        50 * 1251 + 600: 0.4,  # half way: cos(pi/2) = 0
        99 * 1251: 0.8 * 0.5 * (1 + math.cos(99 * math.pi / 100)),
        100 * 1251 + 5: 0.0,  # past the end: stays at the floor
    }
    for step, lr in expected.items():
        assert float(s(step)) == pytest.approx(lr, rel=1e-5, abs=1e-7), step
        assert paper_epoch_lr(min(step // 1251, 100), 0.8, 100) == pytest.approx(lr, rel=1e-6, abs=1e-9)
    # Per-step variant: the same curve at fractional epochs.
    smooth = WarmupCosine(0.8, epochs=100, steps_per_epoch=1251, per_epoch=False)
    step = 2 * 1251 + 625
    assert float(smooth(step)) == pytest.approx(paper_epoch_lr(step / 1251, 0.8, 100), rel=1e-5)
    assert float(smooth(step)) > float(s(step))  # still warming up: later position, higher rate
    # min_lr is a floor relative to the peak (pycls OPTIM.MIN_LR).
    floor = WarmupCosine(1.0, epochs=10, steps_per_epoch=1, warmup_epochs=0, min_lr=0.1)
    assert float(floor(10)) == pytest.approx(0.1)
    # Serialisable (checkpoints store the optimizer with its schedule).
    again = WarmupCosine.from_config(s.get_config())
    assert float(again(3 * 1251 + 7)) == pytest.approx(float(s(3 * 1251 + 7)))
    with pytest.raises(ValueError, match="warmup_epochs"):
        WarmupCosine(0.1, epochs=5, steps_per_epoch=10, warmup_epochs=5)


# ------------------------------------------------------------------------------------------------ weight decay


def test_coupled_weight_decay_matches_pytorch_sgd_nesterov():
    """Two steps of DecaySGD equal PyTorch's SGD(momentum, nesterov, weight_decay) update, written out in NumPy."""
    lr, mom, wd = 0.1, 0.9, 0.05
    w0 = np.array([1.0, -2.0, 3.0], np.float32)
    grads = [np.array([0.5, 0.1, -0.3], np.float32), np.array([-0.2, 0.4, 0.1], np.float32)]
    var = keras.Variable(w0, name="kernel")
    opt = DecaySGD(learning_rate=lr, momentum=mom, nesterov=True, l2_decay=wd)
    for g in grads:
        opt.apply([tf.constant(g)], [var])
    # torch.optim.SGD: d = g + wd * w; buf = mom * buf + d (buf = d at first); d = d + mom * buf; w -= lr * d
    w, buf = w0.astype(np.float64), None
    for g in grads:
        d = g + wd * w
        buf = d if buf is None else mom * buf + d
        w = w - lr * (d + mom * buf)
    np.testing.assert_allclose(var.numpy(), w, rtol=1e-6)
    # The decay is coupled: it differs from running the same optimizer without decay by more than lr*wd*w.
    plain = keras.Variable(w0, name="kernel")
    opt2 = keras.optimizers.SGD(learning_rate=lr, momentum=mom, nesterov=True)
    for g in grads:
        opt2.apply([tf.constant(g)], [plain])
    assert not np.allclose(var.numpy(), plain.numpy())


def test_weight_decay_hits_all_weights_or_only_kernels():
    model = _tiny()
    kernels = [v for v in model.trainable_variables if is_kernel(v)]
    others = [v for v in model.trainable_variables if not is_kernel(v)]
    # Kernels: every Conv2D/GroupConv2D/Dense layer's; the rest are BN gamma/beta and biases.
    n_kernel_layers = sum(isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)) for layer in model.layers)
    assert len(kernels) == n_kernel_layers
    assert all(v.path.split("/")[-1] in ("gamma", "beta", "bias") for v in others) and others

    lr, wd = 0.5, 0.01
    for decay_on, decayed in (("kernels", set(map(id, kernels))), ("all", set(map(id, kernels + others)))):
        m = _tiny()
        before = [v.numpy().copy() for v in m.trainable_variables]
        opt = DecaySGD(learning_rate=lr, momentum=0.0, nesterov=False, l2_decay=wd, decay_on=decay_on)
        opt.apply([tf.zeros_like(v) for v in m.trainable_variables], m.trainable_variables)
        kern_ids = {v.path for v in m.trainable_variables if is_kernel(v)}
        for v, b in zip(m.trainable_variables, before):
            hit = decay_on == "all" or v.path in kern_ids
            expected = b * (1 - lr * wd) if hit else b
            np.testing.assert_allclose(v.numpy(), expected, rtol=1e-6, atol=1e-8, err_msg=f"{decay_on} {v.path}")
        assert len(decayed) == (len(kernels) if decay_on == "kernels" else len(kernels) + len(others))
    with pytest.raises(ValueError, match="decay_on"):
        DecaySGD(decay_on="bn")


# ------------------------------------------------------------------------------------------------ augmentation


def test_inception_crop_areas_and_aspect_ratios():
    n = 96
    rows, cols = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    image = tf.constant(np.stack([rows, cols, np.zeros_like(rows)], -1).astype(np.float32))
    areas, aspects = [], []
    for i in range(60):
        out = pipeline.inception_crop(image, tf.constant([i, 7]), 24).numpy()
        h = out[..., 0].max() - out[..., 0].min() + 1
        w = out[..., 1].max() - out[..., 1].min() + 1
        areas.append(h * w / n**2)
        aspects.append(w / h)
        assert out.shape == (24, 24, 3)
    areas, aspects = np.array(areas), np.array(aspects)
    # Bilinear resizing shrinks the visible extent by up to ~1 source pixel per side: allow a small margin.
    assert areas.min() >= 0.08 * 0.8 and areas.max() <= 1.0 + 1e-6
    assert aspects.min() >= 0.75 * 0.85 and aspects.max() <= (4 / 3) * 1.15
    assert 0.25 < areas.mean() < 0.75 and areas.std() > 0.1  # genuinely random sizes
    # Stateless: the same seed gives the same crop.
    a = pipeline.inception_crop(image, tf.constant([3, 1]), 24)
    np.testing.assert_array_equal(a.numpy(), pipeline.inception_crop(image, tf.constant([3, 1]), 24).numpy())


def test_pca_lighting_adds_the_alexnet_colour_noise():
    image = tf.zeros((4, 4, 3))
    offsets = np.array([pipeline.pca_lighting(image, tf.constant([i, 0]), 0.1).numpy() for i in range(400)])
    # The same RGB offset on every pixel.
    assert np.allclose(offsets, offsets[:, :1, :1, :])
    offsets = offsets[:, 0, 0, :]
    vecs, vals = np.array(pipeline.EIG_VECS), np.array(pipeline.EIG_VALS)
    expected_cov = 255.0**2 * (vecs * (0.1 * vals) ** 2) @ vecs.T
    np.testing.assert_allclose(np.cov(offsets.T), expected_cov, rtol=0.2, atol=1e-3)
    # alpha recovered by inverting the eigenvectors has std 0.1.
    alphas = np.linalg.solve(vecs, offsets.T / 255.0).T / vals
    assert np.allclose(alphas.std(0), 0.1, rtol=0.15)


def test_eval_transform_is_the_shared_center_crop_and_makes_grey_rgb():
    from keras_regnet.preprocessing import resize_and_center_crop

    img = tf.constant(np.random.RandomState(0).randint(0, 255, (40, 60, 3)).astype(np.uint8))
    np.testing.assert_allclose(
        pipeline.eval_transform(img, 32, 0.875).numpy(),
        resize_and_center_crop(img, 32, 0.875, "bilinear").numpy(),
    )
    grey = tf.constant(np.full((40, 40, 1), 9, np.uint8))
    out = pipeline.eval_transform(grey, 32, 1.0).numpy()
    assert out.shape == (32, 32, 3) and np.allclose(out, 9)


def test_train_dataset_batches_one_hot_and_is_reproducible():
    from keras_regnet.datasets import load_dataset

    ds, info = load_dataset("digits", "test")
    a = pipeline.train_dataset(ds, info, image_size=32, global_batch_size=16, seed=3)
    x1, y1 = next(iter(a))
    x2, _ = next(iter(pipeline.train_dataset(ds, info, image_size=32, global_batch_size=16, seed=3)))
    assert x1.shape == (16, 32, 32, 3) and y1.shape == (16, 10) and x1.dtype == tf.float32
    np.testing.assert_array_equal(y1.numpy().sum(1), np.ones(16))
    np.testing.assert_array_equal(x1.numpy(), x2.numpy())
    x3, _ = next(iter(pipeline.train_dataset(ds, info, image_size=32, global_batch_size=16, seed=4)))
    assert not np.array_equal(x1.numpy(), x3.numpy())


# ------------------------------------------------------------------------------------------------ precise BN


def test_precise_bn_sets_moving_stats_to_the_mean_of_batch_statistics():
    model = _tiny()
    rng = np.random.RandomState(1)
    batches = [rng.uniform(0, 255, (8, 32, 32, 3)).astype(np.float32) for _ in range(3)]
    data = tf.data.Dataset.from_tensor_slices((np.concatenate(batches), np.zeros((24, 4), np.float32))).batch(8)
    stem_bn = model.get_layer("stem_bn")
    stem_bn.moving_mean.assign(np.full(stem_bn.moving_mean.shape, 123.0, np.float32))
    bns = batchnorm_layers(model)
    assert stem_bn in bns and len(bns) == sum(isinstance(la, keras.layers.BatchNormalization) for la in model.layers)
    cb = PreciseBN(data, num_batches=3)
    cb.set_model(model)
    assert cb.recompute() == len(bns)
    # Reference for the first BN: its input (stem_conv output) does not depend on BN mode.
    conv = keras.Model(model.inputs, model.get_layer("stem_conv").output)
    outs = [conv(b).numpy() for b in batches]
    mean = np.mean([o.mean((0, 1, 2)) for o in outs], 0)
    n = outs[0].size // outs[0].shape[-1]
    var = np.mean([o.var((0, 1, 2)) * n / (n - 1) for o in outs], 0)
    np.testing.assert_allclose(stem_bn.moving_mean.numpy(), mean, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(stem_bn.moving_variance.numpy(), var, rtol=1e-4, atol=1e-4)
    # Frozen BN layers (fine-tuning) are left alone.
    stem_bn.trainable = False
    assert stem_bn not in batchnorm_layers(model)


# ------------------------------------------------------------------------------------------------ strategies


class _FakeStrategy:
    def __init__(self, n):
        self.num_replicas_in_sync = n


def test_global_batch_and_strategy_choice():
    assert global_batch_size(None, _FakeStrategy(4)) == 512  # 128 per replica
    assert global_batch_size(256, _FakeStrategy(4)) == 256
    with pytest.raises(ValueError, match="does not divide evenly over 3 replicas"):
        global_batch_size(100, _FakeStrategy(3))
    with pytest.raises(ValueError, match="unknown strategy 'horovod'"):
        make_strategy("horovod")
    auto = make_strategy("auto")
    if not tf.config.list_logical_devices("GPU"):
        assert isinstance(auto, tf.distribute.OneDeviceStrategy)
    assert make_strategy("one_device").num_replicas_in_sync == 1


def test_bad_tf_config_is_explained(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}')
    with pytest.raises(ValueError, match="TF_CONFIG must be JSON like"):
        make_strategy("multi_worker")


# ------------------------------------------------------------------------------------------------ config / CLI


def test_presets_and_config_errors(tmp_path):
    paper = make_config("imagenet")
    assert (paper.lr, paper.momentum, paper.nesterov, paper.weight_decay, paper.decay_on) == (0.1, 0.9, True, 5e-5, "all")
    assert (paper.epochs, paper.warmup_factor, paper.precise_bn_images) == (100, 0.1, 8192)
    assert (paper.label_smoothing, paper.ema) == (0.0, 0.0)
    # The data-adaptive settings are chosen when the data set is known; on ImageNet they are the paper's.
    imagenet = _info("imagenet2012", (None, None, 3), 1281167)
    paper, notes = resolve_defaults(paper, imagenet)
    assert (paper.image_size, paper.batch_size, paper.warmup_epochs, paper.lr_per_epoch) == (224, 128, 5, True)
    assert (paper.lighting_std, paper.min_crop_area, paper.flip, paper.eval_crop_pct) == (0.1, 0.08, True, 0.875)
    ft = make_config("finetune", dataset="digits")
    assert ft.weights == "imagenet" and ft.dataset == "digits" and ft.decay_on == "kernels"
    with pytest.raises(ValueError, match="unknown preset"):
        make_config("cifar")
    with pytest.raises(ValueError, match="unknown training settings"):
        make_config("imagenet", learning_rate=0.1)
    with pytest.raises(ValueError, match="precision must be"):
        make_config("imagenet", precision="float16")
    with pytest.raises(ValueError, match="--unfreeze-epoch needs --freeze-until"):
        make_config("finetune", unfreeze_epoch=2)


def _info(name, shape, n, classes=10):
    from keras_regnet.datasets import DatasetInfo

    return DatasetInfo(name=name, split="train", num_classes=classes, num_examples=n, image_shape=shape,
                       class_names=tuple(str(i) for i in range(classes)), source="tfds")


def test_defaults_fit_small_data_sets_and_given_values_win():
    """digits (1437 images of 32x32) for 3 epochs: 32 px, batch 32 (44 steps), warm-up capped at 0.3 epochs,
    rate every step, mild crops, no flips, no lighting, whole-image eval; the run of the issue: 224 px, batch 128,
    warm-up 5 > epochs."""
    digits = _info("digits", (32, 32, 3), 1437)
    config, notes = resolve_defaults(make_config("imagenet", dataset="digits", epochs=3), digits)
    assert (config.image_size, config.batch_size, config.warmup_epochs, config.lr_per_epoch) == (32, 32, 0.3, False)
    assert (config.min_crop_area, config.flip, config.lighting_std, config.eval_crop_pct) == (0.75, False, 0.0, 1.0)
    assert "1437 training images" in notes["batch_size"] and "32x32" in notes["image_size"]
    assert "--epochs 3" in notes["warmup_epochs"] and "digits" in notes["flip"]
    line = describe_defaults(config, notes, 0.025)
    for part in ("image size 32 (data set", "batch 32 (data set", "lr 0.025", "warm-up 0.3 epochs"):
        assert part in line
    # Given values are kept (and named "given"); 28x28 MNIST rounds up to 32; batches scale with the replicas.
    given, notes = resolve_defaults(make_config("imagenet", epochs=3, image_size=64, batch_size=16, warmup_epochs=1,
                                                flip=True), _info("mnist", (28, 28, 1), 60000))
    assert (given.image_size, given.batch_size, given.warmup_epochs, given.flip) == (64, 16, 1, True)
    assert "image_size" not in notes and "(given)" in describe_defaults(given, notes, 0.0125)
    mnist, _ = resolve_defaults(make_config("imagenet", epochs=3), _info("mnist", (28, 28, 1), 60000), replicas=2)
    assert (mnist.image_size, mnist.batch_size, mnist.flip) == (32, 256, False)
    # A tiny folder: the batch goes down to 8 per replica; variable-size images keep the recipe's 224.
    folder, _ = resolve_defaults(make_config("finetune", epochs=20), _info("/data/pets", (None, None, 3), 60, 3))
    assert (folder.image_size, folder.batch_size, folder.warmup_epochs, folder.lr_per_epoch) == (224, 8, 1.0, True)
    assert (folder.lighting_std, folder.min_crop_area, folder.flip) == (0.0, 0.08, True)


def test_errors_name_the_flag():
    with pytest.raises(ValueError, match=r"--warmup-epochs must be in \[0, --epochs 1\), got 5"):
        make_config("imagenet", epochs=1, warmup_epochs=5)
    with pytest.raises(ValueError, match="--image-size must be an integer >= 32"):
        make_config("imagenet", image_size=16)
    with pytest.raises(ValueError, match="--unfreeze-epoch needs --freeze-until"):
        make_config("finetune", unfreeze_epoch=2)
    with pytest.raises(ValueError, match="--bad-images must be 'skip' or 'error'"):
        make_config("imagenet", bad_images="ignore")


def test_yaml_config_with_python_tags_is_one_clear_line(tmp_path, capsys):
    from keras_regnet.training.presets import load_config_file

    cfg = tmp_path / "evil.yaml"
    cfg.write_text("epochs: 3\nmodel: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ValueError) as e:
        load_config_file(str(cfg))
    message = str(e.value)
    assert "evil.yaml" in message and "tag not allowed" in message and "python/object" in message
    assert "at line 2" in message and "\n" not in message
    bad = tmp_path / "bad.json"
    bad.write_text('{"epochs": 3,,}')
    with pytest.raises(ValueError, match=r"bad.json' is not valid JSON: .* at line 1"):
        load_config_file(str(bad))
    code, err = _cli(["--config", str(cfg), "--dataset", "digits"], capsys)
    assert code == 2 and "tag not allowed" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_parser_strategies_match_and_build_without_keras():
    import subprocess
    import sys

    from keras_regnet.commands import train as cmd
    from keras_regnet.training.strategy import STRATEGIES

    assert cmd.STRATEGIES == STRATEGIES
    code = ("import argparse, sys; from keras_regnet.commands import train; p = argparse.ArgumentParser(); "
            "train.add_arguments(p); print('keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr[-1500:]


def test_help_explains_every_flag(capsys):
    from keras_regnet.commands import train as cmd
    from keras_regnet.training.presets import FIELDS

    with pytest.raises(SystemExit):
        cmd.main(["--help"])
    text = capsys.readouterr().out
    flags = [f for f, *_ in cmd._FLAGS] + [f for f, *_ in cmd._SWITCHES] + ["--preset", "--config"]
    for flag in flags:
        assert flag in text
    # Every setting that a user would change is reachable from the command line.
    covered = {f for _, f, *_ in cmd._FLAGS} | {f for _, f, *_ in cmd._SWITCHES}
    assert set(FIELDS) - covered == {"preset", "verbose"}  # --preset is its own flag, --quiet sets verbose


def _cli(args, capsys):
    from keras_regnet.commands.train import main

    code = main(args)
    return code, capsys.readouterr().err


def test_cli_bad_input_fails_fast_with_clear_errors(tmp_path, capsys):
    out = ["--output-dir", str(tmp_path / "run")]
    code, err = _cli(["--dataset", "no_such_dataset_xyz"] + out, capsys)
    assert code == 2 and "unknown dataset 'no_such_dataset_xyz'" in err
    code, err = _cli(["--dataset", "imagenet2012", "--data-dir", str(tmp_path)] + out, capsys)
    assert code == 2 and "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar" in err and "--manual-dir" in err
    code, err = _cli(["--dataset", "imagenet2012", "--data-dir", str(tmp_path), "--manual-dir",
                      str(tmp_path / "missing")] + out, capsys)
    assert code == 2 and "does not exist" in err
    code, err = _cli(["--model", "RegNetZ9000", "--dataset", "digits"] + out, capsys)
    assert code == 2 and "unknown model 'RegNetZ9000'" in err
    code, err = _cli(["--dataset", "digits", "--batch-size", "4096", "--image-size", "32"] + out, capsys)
    assert code == 2 and "larger than the 1437 training images" in err
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("- a list\n")
    code, err = _cli(["--config", str(cfg)], capsys)
    assert code == 2 and "must hold a mapping" in err
    cfg.write_text(json.dumps({"epochs": 3, "learning_rate": 1}))
    os.rename(cfg, tmp_path / "bad.json")
    code, err = _cli(["--config", str(tmp_path / "bad.json")], capsys)
    assert code == 2 and "unknown training settings ['learning_rate']" in err


def test_encoded_jpeg_crop_decoding_equals_decode_then_crop(tmp_path):
    """decode=False data (ImageNet-style) decodes only the crop window of JPEGs: the same crop as full decoding."""
    from keras_regnet.datasets import load_dataset

    rng = np.random.RandomState(0)
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(3):
            img = rng.randint(0, 255, (48 + 8 * i, 64, 3)).astype(np.uint8)
            ext, enc = ("jpg", tf.io.encode_jpeg) if i < 2 else ("png", tf.io.encode_png)
            tf.io.write_file(str(tmp_path / c / f"{i}.{ext}"), enc(img))
    decoded, info = load_dataset(str(tmp_path), "train")
    encoded, einfo = load_dataset(str(tmp_path), "train", decode=False)
    assert einfo.encoded and not info.encoded and einfo.num_examples == info.num_examples == 6
    for (img, y), (data, y2) in zip(decoded, encoded):
        assert data.dtype == tf.string and int(y) == int(y2)
        for s in range(3):
            seed = tf.constant([s, 11])
            a = pipeline.train_transform(img, seed, 24)
            b = pipeline.train_transform(data, seed, 24)
            # Same crop window and pixels; libjpeg's chroma upsampling differs along the crop's edges only.
            close = np.isclose(a.numpy(), b.numpy(), atol=1e-3)
            assert close.mean() > 0.9 and np.abs(a.numpy() - b.numpy()).mean() < 2.0
            assert close[4:-4, 4:-4].all()
        np.testing.assert_allclose(pipeline.eval_transform(img, 24).numpy(), pipeline.eval_transform(data, 24).numpy())
    batch, _ = next(iter(pipeline.train_dataset(encoded, einfo, image_size=24, global_batch_size=4)))
    assert batch.shape == (4, 24, 24, 3)

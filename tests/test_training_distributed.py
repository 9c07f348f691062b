"""tf.distribute on CPU: MirroredStrategy over 2 logical CPU devices, MultiWorkerMirroredStrategy with 2 worker
processes on 127.0.0.1, and the canary that tells when keras-team/keras#20585 is fixed upstream.

Each run happens in fresh processes: logical devices and TF_CONFIG must be set before TensorFlow starts.
"""

import csv
import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import yaml

from conftest import TINY

import tensorflow as tf  # required by [test]: a broken install must fail, not skip

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(REPO, "recipes", "train.py")
TINY_SPEC = dict({k: list(v) for k, v in TINY.items()}, type="anynet", stem="cifar")


def _env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _learnable_folder(root, per_class=24):
    """Two classes told apart by brightness, with noise: a small net learns them in a few steps."""
    rng = np.random.RandomState(0)
    for c, level in enumerate((60, 190)):
        os.makedirs(os.path.join(root, f"class_{c}"))
        for i in range(per_class):
            img = np.clip(rng.normal(level, 25, (36, 40, 3)), 0, 255).astype(np.uint8)
            tf.io.write_file(os.path.join(root, f"class_{c}", f"{i}.png"), tf.io.encode_png(img))
    return root


def _tiny_config(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({"model": TINY_SPEC}))
    return str(path)


def _log(run_dir):
    with open(os.path.join(run_dir, "log.csv")) as f:
        return list(csv.DictReader(f))


_TWO_CPUS = textwrap.dedent(
    """
    import sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from keras_regnet.commands.train import main
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.mark.slow
def test_mirrored_strategy_over_two_logical_cpus_learns(tmp_path):
    data = _learnable_folder(str(tmp_path / "images"))
    script = tmp_path / "two_cpus.py"
    script.write_text(_TWO_CPUS)
    run_dir = str(tmp_path / "run")
    common = [
        "--config", _tiny_config(tmp_path), "--dataset", data, "--val-split", "none", "--image-size", "32",
        "--strategy", "mirrored", "--output-dir", run_dir, "--no-export", "--quiet",
    ]
    bad = subprocess.run([sys.executable, str(script), *common, "--batch-size", "15"], env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2, bad.stderr[-2000:]
    assert "does not divide evenly over 2 replicas" in bad.stderr

    args = common + ["--epochs", "5", "--batch-size", "16", "--steps-per-epoch", "3", "--lr", "0.8",
                     "--warmup-epochs", "0", "--precise-bn-images", "32", "--lighting-std", "0"]
    done = subprocess.run([sys.executable, str(script), *args], env=_env(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(os.path.join(run_dir, "config.json")) as f:
        saved = json.load(f)
    assert saved["replicas"] == 2 and saved["global_batch_size"] == 16
    assert saved["base_lr"] == pytest.approx(0.8 * 16 / 128)  # linear scaling with the global batch
    rows = _log(run_dir)
    losses = [float(r["loss"]) for r in rows]
    assert len(rows) == 5
    assert losses[-1] < 0.8 * losses[0], losses
    assert float(rows[-1]["accuracy"]) > 0.8


_WORKER_UNPATCHED = textwrap.dedent(
    """
    import numpy as np
    import tensorflow as tf
    import keras
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    x = np.random.RandomState(0).rand(32, 4).astype("float32")
    y = (x.sum(1) > 2).astype("int64")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).repeat()
    with strategy.scope():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
        model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(ds, epochs=1, steps_per_epoch=2, verbose=0)
    print("FIT-OK")
    """
)


def _run_workers(cmds, tmp_path, timeout=420):
    ports = _free_ports(len(cmds))
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for i, cmd in enumerate(cmds):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        out = open(tmp_path / f"worker_{i}.log", "w")
        procs.append((subprocess.Popen(cmd, env=_env(TF_CONFIG=tf_config), stdout=out, stderr=subprocess.STDOUT,
                                       cwd=str(tmp_path)), out))
    codes = []
    try:
        for p, out in procs:
            codes.append(p.wait(timeout=timeout))
            out.close()
    finally:
        for p, _ in procs:
            if p.poll() is None:
                p.kill()
    logs = [(tmp_path / f"worker_{i}.log").read_text() for i in range(len(cmds))]
    return codes, logs


@pytest.mark.slow
def test_multiworker_upstream_bug_still_present(tmp_path):
    """Canary for keras_regnet/training/multiworker_shim.py: plain Keras must still fail under
    MultiWorkerMirroredStrategy. If this test fails, keras-team/keras#20585 is fixed: delete the shim."""
    script = tmp_path / "plain.py"
    script.write_text(_WORKER_UNPATCHED)
    codes, logs = _run_workers([[sys.executable, str(script)]] * 2, tmp_path)
    assert any(c != 0 for c in codes), (
        "Keras now trains under MultiWorkerMirroredStrategy without keras_regnet's shim: keras-team/keras#20585 "
        "is fixed upstream; remove keras_regnet/training/multiworker_shim.py and this test."
    )
    assert any("PerReplica" in log or "Invalid reduction dimension" in log for log in logs), logs[0][-2000:]


@pytest.mark.slow
def test_multiworker_two_processes_train_to_identical_weights(tmp_path):
    import keras

    import keras_regnet.layers  # noqa: F401  (registers GroupConv2D and the training objects for loading)
    import keras_regnet.training.optim  # noqa: F401
    import keras_regnet.training.schedules  # noqa: F401

    run_dir = str(tmp_path / "run")
    cmd = [
        sys.executable, TRAIN, "--config", _tiny_config(tmp_path), "--dataset", "digits", "--image-size", "32",
        "--strategy", "multi_worker", "--epochs", "2", "--warmup-epochs", "1", "--batch-size", "16",
        "--steps-per-epoch", "2", "--val-steps", "1", "--precise-bn-images", "16", "--output-dir", run_dir,
        "--export-dir", str(tmp_path / "saved_models" / "tiny"), "--quiet",
    ]
    codes, logs = _run_workers([cmd, cmd], tmp_path)
    assert codes == [0, 0], "\n----\n".join(log[-3000:] for log in logs)
    with open(os.path.join(run_dir, "config.json")) as f:
        assert json.load(f)["replicas"] == 2
    chief = keras.saving.load_model(os.path.join(run_dir, "last.keras"), compile=False)
    other = keras.saving.load_model(os.path.join(run_dir, "workers", "worker_1", "last.keras"), compile=False)
    for a, b in zip(chief.get_weights(), other.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # The workers logged the same (all-reduced) losses; only the chief wrote the run's files and the export.
    rows, rows1 = _log(run_dir), _log(os.path.join(run_dir, "workers", "worker_1"))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert [r["loss"] for r in rows] == [r["loss"] for r in rows1]
    assert os.path.exists(tmp_path / "saved_models" / "tiny" / "1" / "saved_model.pb")
    assert not os.path.exists(os.path.join(run_dir, "backup"))  # per-worker backups removed after the run


@pytest.mark.slow
def test_sigkilled_process_resumes_where_its_backup_ends(tmp_path):
    """A real kill (SIGKILL, no clean-up) of `recipes/train.py` mid-run, then the same command again."""
    import signal
    import time

    from keras_regnet.training.schedules import paper_epoch_lr

    run_dir = str(tmp_path / "run")
    epochs = 10
    cmd = [
        sys.executable, TRAIN, "--config", _tiny_config(tmp_path), "--dataset", "digits", "--image-size", "32",
        "--strategy", "one_device", "--epochs", str(epochs), "--warmup-epochs", "3", "--batch-size", "32",
        "--steps-per-epoch", "6", "--val-steps", "1", "--precise-bn-images", "32", "--output-dir", run_dir,
        "--no-export", "--quiet",
    ]
    meta = os.path.join(run_dir, "backup", "worker_0", "training_metadata.json")
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with open(meta) as f:
                    if json.load(f)["epoch"] >= 2:
                        break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed:\n" + proc.communicate()[0][-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    with open(meta) as f:
        k = json.load(f)["epoch"]  # epochs 0..k-1 were backed up before the kill
    assert 2 <= k < epochs

    again = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    first = next(line for line in again.stdout.splitlines() if line.startswith("Epoch "))
    assert first.startswith(f"Epoch {k + 1}/{epochs}")  # restarted at the epoch after the last backup
    rows = _log(run_dir)
    assert [int(r["epoch"]) for r in rows] == list(range(epochs))  # each epoch once, none lost
    base = 0.1 * 32 / 128
    expected = [paper_epoch_lr(e, base, epochs, warmup_epochs=3) for e in range(epochs)]
    np.testing.assert_allclose([float(r["learning_rate"]) for r in rows], expected, rtol=1e-5)
    assert not os.path.exists(os.path.join(run_dir, "backup"))

"""Quiet output (keras_regnet._quiet): no TensorFlow start-up lines from the command line or its worker processes,
no C++ chatter from the TFLite converter or LiteRT, real warnings kept, and --debug / KERAS_REGNET_DEBUG=1 showing
everything."""

import os
import subprocess
import sys
import textwrap
import warnings

import pytest

from keras_regnet import _quiet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BANNER = ("absl::InitializeLog", "oneDNN", "cuda", "cpu_feature_guard", "XNNPACK")


def _python(code, debug=False, timeout=600):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # conftest sets one; a user's shell does not
    env.pop(_quiet.DEBUG_ENV, None)
    if debug:
        env[_quiet.DEBUG_ENV] = "1"
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          timeout=timeout)


def _banner_lines(text):
    return [line for line in text.splitlines() if any(word in line for word in BANNER)]


WORKER = """
    import json, multiprocessing, os, sys
    from keras_regnet import _quiet

    def work(stderr_path):
        fd = os.open(stderr_path, os.O_WRONLY | os.O_CREAT)
        os.dup2(fd, 2)  # this worker's own stderr file
        _quiet.worker_init()  # what a sweep/compare worker runs first (keras_regnet.design_space.sweep)
        import tensorflow as tf
        print(int(tf.reduce_sum(tf.ones((2, 2)))), flush=True)

    if __name__ == "__main__":
        ctx = multiprocessing.get_context("spawn")
        procs = []
        for debug in ("0", "1"):  # a worker inherits the parent's KERAS_REGNET_DEBUG when it starts
            os.environ[_quiet.DEBUG_ENV] = debug
            procs.append(ctx.Process(target=work, args=(os.path.join(sys.argv[1], f"stderr{debug}.txt"),)))
            procs[-1].start()
        for p in procs:
            p.join()
        print("exit", *[p.exitcode for p in procs])
"""


@pytest.mark.slow  # two spawned TensorFlow processes (~20 s)
def test_a_worker_start_prints_no_tensorflow_lines_and_debug_shows_them(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER))
    out = _python(f"import runpy, sys; sys.argv = ['worker', {str(tmp_path)!r}]; "
                  f"runpy.run_path({str(script)!r}, run_name='__main__')")
    assert out.returncode == 0 and out.stdout.split() == ["4", "4", "exit", "0", "0"], out.stdout + out.stderr
    quiet, loud = (tmp_path / "stderr0.txt").read_text(), (tmp_path / "stderr1.txt").read_text()
    assert _banner_lines(quiet) == [] and quiet.strip() == "", quiet
    assert _banner_lines(loud), "KERAS_REGNET_DEBUG=1 should show TensorFlow's start-up lines"


def test_the_sweep_worker_entry_point_starts_quietly():
    """The worker entry point of `sweep --workers N` / `compare` calls worker_init before importing TensorFlow."""
    import inspect

    from keras_regnet.design_space import sweep

    source = inspect.getsource(sweep._worker_main)
    assert source.index("worker_init()") < source.index("import tensorflow")


def test_quiet_drops_cpp_output_keeps_our_warnings_and_replays_on_error(capfd, monkeypatch):
    monkeypatch.setenv(_quiet.DEBUG_ENV, "0")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with _quiet.quiet():
            os.write(2, b"I0000 cpu_feature_guard.cc:210] chatter from C++\n")
            os.write(1, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
            warnings.warn("a real warning of ours", UserWarning)
            warnings.warn_explicit("Statistics for quantized inputs were expected", UserWarning,
                                   "convert.py", 846, module="tensorflow.lite.python.convert")
            print("our own line", file=sys.stderr)
    out, err = capfd.readouterr()
    assert "chatter" not in err and "XNNPACK" not in out
    assert "our own line" in err
    assert [str(w.message) for w in caught] == ["a real warning of ours"]
    with pytest.raises(RuntimeError, match="boom"):
        with _quiet.quiet():
            os.write(2, b"the C++ reason for the failure\n")
            raise RuntimeError("boom")
    assert "the C++ reason for the failure" in capfd.readouterr().err  # replayed: it may explain the error


def test_debug_switch_shows_everything(capfd, monkeypatch):
    monkeypatch.setenv(_quiet.DEBUG_ENV, "1")
    assert _quiet.debug()
    with _quiet.quiet():
        os.write(2, b"shown in debug mode\n")
    assert "shown in debug mode" in capfd.readouterr().err
    monkeypatch.setenv(_quiet.DEBUG_ENV, "0")
    assert not _quiet.debug()


def test_cli_debug_flag_reaches_worker_processes(monkeypatch):
    """`keras-regnet --debug ...` sets KERAS_REGNET_DEBUG=1 for the processes it starts."""
    from keras_regnet import cli
    from keras_regnet.commands import models as models_cmd

    monkeypatch.setenv(_quiet.DEBUG_ENV, "0")
    monkeypatch.delenv(_quiet.DEBUG_ENV)  # restored to whatever it was after the test
    seen = []
    monkeypatch.setattr(models_cmd, "run", lambda args: seen.append(os.environ.get(_quiet.DEBUG_ENV)) or 0)
    assert cli.main(["models"]) == 0 and seen == [None]
    assert cli.main(["--debug", "models"]) == 0 and seen[-1] == "1"
    assert _quiet.DEBUG_ENV not in os.environ  # only for that command: a later call is not in debug mode
    assert cli.main(["models"]) == 0 and seen[-1] is None


def test_our_calls_match_the_models_input_structure():
    """No "The structure of `inputs` doesn't match" UserWarning from train (precise BN's probe) or export (the
    reference logits): both call a sub-model built on the one input tensor with one tensor."""
    import numpy as np

    import keras_regnet
    from keras_regnet.export.common import reference_logits
    from keras_regnet.training.callbacks import PreciseBN

    model = keras_regnet.AnyNet(depths=(1, 1, 1, 1), widths=(8, 16, 24, 32), bottleneck_ratios=(1, 1, 1, 1),
                                group_widths=(8, 8, 8, 8), input_shape=(32, 32, 3), classes=3, weights=None)
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert reference_logits(model, images, "probabilities").shape == (2, 3)
        precise = PreciseBN(dataset=None, num_batches=1)
        precise.set_model(model)
        stats, bns = precise._build_probe()
        assert len(stats(images)) == len(bns) > 0
    assert [str(w.message) for w in caught if "structure of" in str(w.message)] == []

"""Quick errors: a missing file, folder or optional package is reported by every sub-command in well under a second,
before TensorFlow or Keras is imported (keras_regnet.cli.PRECHECKS)."""

import json
import os
import re
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import BLOCKER  # a fresh interpreter's finder that hides the BLOCKED packages

from keras_regnet import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAVY = ("tensorflow", "keras", "jax", "torch", "matplotlib", "scipy")



def _run_cases(cases, cwd):
    """Run ``keras-regnet ARGV`` for each (argv, blocked packages) in one fresh interpreter, one after the other:
    [(exit code, stderr, seconds inside main, heavy modules imported so far)] (nothing heavy is ever imported, so
    the cases cannot speed each other up)."""
    code = "BLOCKED = set()\n" + BLOCKER + textwrap.dedent(f"""
        import contextlib, io, json, sys, time
        from keras_regnet import cli
        results = []
        for argv, blocked in {cases!r}:
            BLOCKED.clear(); BLOCKED.update(blocked)
            start = time.perf_counter()
            with contextlib.redirect_stderr(io.StringIO()) as err:
                rc = cli.main(argv)
            seconds = time.perf_counter() - start
            results.append([rc, err.getvalue(), seconds, sorted(m for m in {HEAVY!r} if m in sys.modules)])
        print(json.dumps(results))
    """)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _assert_quick_one_line(command, rc, err, seconds, heavy, text):
    lines = err.strip().splitlines()
    assert rc == 2, (command, rc, err)
    assert len(lines) == 1 and lines[0].startswith(f"keras-regnet {command}: error: "), err
    assert text in lines[0], (text, lines[0])
    assert heavy == [], f"{command} imported {heavy} before reporting: {err}"
    assert seconds < 1.0, (command, seconds)  # parse, check, report (TensorFlow's import alone takes 5-20 s)


# (argv, text of the one-line error); every sub-command with a path argument, and its missing-path cases.
MISSING_PATHS = [
    (["predict", "/nonexistent/cat.jpg"], "image '/nonexistent/cat.jpg' does not exist"),
    (["predict", "{img}", "--model", "/nonexistent/best.keras"], "model file '/nonexistent/best.keras' does not"),
    (["predict", "{img}", "--model", "RegNetY600MF", "--weights", "/nonexistent/w.safetensors"],
     "weights file '/nonexistent/w.safetensors' does not exist"),
    (["predict", "{img}", "--model", "RegNetZ9000"], "unknown model name 'RegNetZ9000'"),
    (["explain", "/nonexistent/cat.jpg"], "image '/nonexistent/cat.jpg' does not exist"),
    (["export", "/nonexistent/best.keras"], "model file '/nonexistent/best.keras' does not exist"),
    (["export", "/nonexistent/spec.json"], "spec file '/nonexistent/spec.json' does not exist"),
    (["export", "RegNetX200MF", "--labels", "/nonexistent/labels.txt"], "labels file '/nonexistent/labels.txt'"),
    (["export", "RegNetX200MF", "--representative", "/nonexistent/cal.npy"], "representative data file"),
    (["convert", "/nonexistent/w.safetensors", "out.weights.h5"], "source weights '/nonexistent/w.safetensors' do not"),
    (["train", "--dataset", "/nonexistent/photos", "--epochs", "1"], "looks like a path but is not an existing"),
    (["train", "--dataset", "folder:/nonexistent/photos"], "image folder '/nonexistent/photos' does not exist"),
    (["train", "--config", "/nonexistent/run.yaml"], "config file '/nonexistent/run.yaml' does not exist"),
    (["sweep", "--space", "RegNetX", "--out", "r.jsonl", "--dataset", "./nonexistent"], "looks like a path"),
    (["compare", "--dataset", "/nonexistent/d"], "looks like a path but is not an existing directory"),
    (["edf", "/nonexistent/r.jsonl"], "results file '/nonexistent/r.jsonl' does not exist; run `keras-regnet sweep"),
    (["fit", "/nonexistent/r.jsonl"], "results file '/nonexistent/r.jsonl' does not exist"),
]


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("quick") / "img.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n")  # never decoded: the checks fail before
    return str(path)


@pytest.fixture(scope="module")
def results_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("quick-results") / "r.jsonl"
    path.write_text("")
    (path.parent / "r.jsonl.yaml").write_text("epochs: 1\n")
    return str(path)


def _argv(argv, image, results_file):
    return [a.replace("{img}", image).replace("{results}", results_file) for a in argv]


@pytest.fixture(scope="module")
def missing_path_results(image, results_file, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("cwd-paths")
    results = _run_cases([(_argv(argv, image, results_file), []) for argv, _ in MISSING_PATHS], str(cwd))
    assert list(cwd.iterdir()) == []  # nothing written
    return results


@pytest.mark.parametrize("case", range(len(MISSING_PATHS)), ids=[re.sub(r"[^\w.-]+", "_", "-".join(a[:2])).strip("_") for a, _ in MISSING_PATHS])
def test_missing_path_is_reported_in_under_a_second_without_tensorflow(case, missing_path_results):
    argv, text = MISSING_PATHS[case]
    _assert_quick_one_line(argv[0], *missing_path_results[case], text)


# Every sub-command that needs TensorFlow (or another extra), with an install that lacks it.
MISSING_EXTRAS = [
    (["predict", "{img}"], "tensorflow", "tensorflow"),
    (["explain", "{img}"], "tensorflow", "tensorflow"),
    (["explain", "{img}"], "tf_keras_vis", "explain"),
    (["export", "RegNetX200MF"], "tensorflow", "tensorflow"),
    (["export", "RegNetX200MF"], "ai_edge_litert", "export"),
    (["export", "RegNetX200MF", "--tflite", "none", "--onnx"], "tf2onnx", "export"),
    (["train", "--dataset", "digits"], "tensorflow", "tensorflow"),
    (["train", "--config", "{results}.yaml"], "yaml", "train"),
    (["sweep", "--space", "RegNetX", "--out", "r.jsonl"], "tensorflow", "tensorflow"),
    (["compare"], "tensorflow", "tensorflow"),
    (["compare"], "scipy", "design"),
    (["edf", "{results}"], "matplotlib", "design"),
    (["fit", "{results}", "--plot", "fit.png"], "matplotlib", "design"),
]


@pytest.fixture(scope="module")
def missing_extra_results(image, results_file, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("cwd-extras")
    return _run_cases([(_argv(argv, image, results_file), [blocked]) for argv, blocked, _ in MISSING_EXTRAS], str(cwd))


@pytest.mark.parametrize("case", range(len(MISSING_EXTRAS)), ids=[f"{a[0]}-{b}" for a, b, _ in MISSING_EXTRAS])
def test_missing_extra_is_reported_in_under_a_second(case, missing_extra_results):
    argv, blocked, extra = MISSING_EXTRAS[case]
    _assert_quick_one_line(argv[0], *missing_extra_results[case],
                           f"this command needs {blocked!r}, which is not installed; "
                           f"install it with: pip install 'keras-regnet[{extra}]'")


@pytest.mark.parametrize("argv", [["predict", "/nonexistent/cat.jpg"], ["train", "--dataset", "/nonexistent/d"],
                                  ["export", "/nonexistent/best.keras"]], ids=lambda a: a[0])
def test_the_console_command_itself_answers_quickly(argv, tmp_path):
    """The whole process, interpreter start included (a loaded test machine may stall a start: 3 s of slack; on an
    idle 2-core machine it is ~0.3-0.5 s, against 9-15 s when TensorFlow was imported first)."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "keras_regnet.cli", *argv], capture_output=True, text=True, env=env,
                         cwd=str(tmp_path), timeout=120)
    wall = time.perf_counter() - start
    assert out.returncode == 2 and out.stderr.startswith(f"keras-regnet {argv[0]}: error: "), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and wall < 3.0, (wall, out.stderr)


def test_export_without_tflite_does_not_need_litert(image, tmp_path):
    """The extras a command needs follow its flags: --tflite none does not ask for ai_edge_litert (the check passes
    and the command goes on to its own work, here refused by --calibration-images before any model is built)."""
    args = cli.build_parser("export").parse_args(["export", "RegNetX200MF", "--tflite", "none"])
    cli.precheck(args)  # no MissingExtraError, even where ai_edge_litert is missing
    needs = cli.PRECHECKS["export"][0]
    assert "ai_edge_litert" not in needs(args)
    assert "ai_edge_litert" in needs(cli.build_parser("export").parse_args(["export", "RegNetX200MF"]))


def test_every_precheck_names_real_arguments_and_every_command_is_declared():
    """A renamed flag cannot silently switch its check off."""
    assert set(cli.PRECHECKS) == set(cli.COMMANDS)
    for command, (_, rules) in cli.PRECHECKS.items():
        parser = cli.build_parser(command)
        sub = next(a for a in parser._actions if a.dest == "command").choices[command]
        dests = {a.dest for a in sub._actions}
        assert set(rules) <= dests, (command, set(rules) - dests)


def test_dataset_precheck_says_what_load_dataset_says(tmp_path):
    """The pre-check repeats keras_regnet.datasets.load_dataset's path rule; both give the same line."""
    from keras_regnet import datasets

    for name in (str(tmp_path / "missing"), "./missing-folder", f"folder:{tmp_path / 'missing'}"):
        with pytest.raises(FileNotFoundError) as ours:
            cli._dataset(name)
        with pytest.raises(FileNotFoundError) as theirs:
            datasets.load_dataset(name, "train")
        assert str(ours.value) == str(theirs.value)
    for name in ("digits", "imagenet2012", "cifar10", str(tmp_path)):
        cli._dataset(name)  # names and existing folders pass


def test_valid_arguments_pass_the_precheck(image, tmp_path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"")
    for argv in (["predict", image, "--model", "RegNetY-600MF", "--weights", "imagenet:tv2_in1k"],
                 ["predict", image, "--weights", str(weights)],
                 ["predict", image, "--model", "hf://someone/regnet"],
                 ["predict", str(tmp_path), "--weights", "none"],
                 ["export", '{"type": "regnet"}'],
                 ["train", "--dataset", "cifar10", "--model", "regnety_006"]):
        cli.precheck(cli.build_parser(argv[0]).parse_args(argv))

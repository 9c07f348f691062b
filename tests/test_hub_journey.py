"""The sharing journey in fresh processes, through the loopback Hub: fine-tune from a preset on the Hub
(`train --model hf://...`) on a 3-class folder, `push` the result, `predict --model hf://...` prints the class
names, and keras-hub's from_preset loads the same URI."""

import json
import os
import subprocess
import sys

import pytest

from conftest import TINY
from hub_server import HubServer, child_env
from test_journey import CLASSES, _make_folder

SIZE = 32


def _cli(args, env, cwd, timeout=900):
    return subprocess.run([sys.executable, "-m", "keras_regnet.cli"] + [str(a) for a in args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.slow
def test_finetune_from_the_hub_push_then_predict_and_keras_hub_in_fresh_processes(tmp_path):
    data = tmp_path / "pets"
    _make_folder(str(data))
    with HubServer() as hub:
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **child_env(hub, tmp_path))
        env.pop("HF_HUB_OFFLINE", None)
        # 0. a tiny backbone preset on the Hub, to fine-tune from
        code = ("import keras_regnet\n"
                f"m = keras_regnet.build_model(keras_regnet.AnyNetParams(**{TINY!r}), include_top=False)\n"
                f"keras_regnet.save_to_preset(m, {str(tmp_path / 'base')!r})\n"
                f"keras_regnet.upload_preset('hf://user/base', {str(tmp_path / 'base')!r})\n")
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        # 1. fine-tune from it
        run_dir = tmp_path / "run"
        proc = _cli(["train", "--preset", "finetune", "--model", "hf://user/base", "--dataset", data, "--epochs", "2",
                     "--image-size", SIZE, "--output-dir", run_dir, "--no-export", "--quiet"], env, tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        # 2. push the best model
        proc = _cli(["push", run_dir / "best.keras", "hf://user/pets", "--message", "pets, fine-tuned"], env, tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "pushed hf://user/pets" in proc.stdout and hub.messages[-1] == "pets, fine-tuned"
        card = hub.file("user/pets", "README.md").decode()
        assert "`cat`, `dog`, `fox`" in card and "**Training:**" in card
        # 3. predict from the Hub, in a fresh process with a fresh cache
        image = next((data / "dog").iterdir())
        env2 = dict(env, HF_HUB_CACHE=str(tmp_path / "other-cache"))
        proc = _cli(["predict", "--model", "hf://user/pets", "--top", "3", "--json", image], env2, tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        names = {row["label"] for row in json.loads(proc.stdout.strip().splitlines()[-1])["top"]}
        assert names == set(CLASSES)
        # 4. keras-hub's from_preset on the same URI, outputs equal to keras_regnet's
        if subprocess.run([sys.executable, "-c", "import keras_hub"], capture_output=True).returncode != 0:
            pytest.skip("keras-hub is not installed: the rest of the journey is keras-hub's")
        code = ("import numpy as np, keras_regnet, keras_hub\n"
                "x = np.random.RandomState(0).uniform(0, 255, (2, 32, 32, 3)).astype('float32')\n"
                "ours = keras_regnet.get_model('hf://user/pets')\n"
                "clf = keras_hub.models.ImageClassifier.from_preset('hf://user/pets')\n"
                "bb = keras_hub.models.Backbone.from_preset('hf://user/pets')\n"
                "print(type(clf).__name__, type(bb).__name__, sorted(bb.pyramid_outputs),"
                " float(np.abs(clf.predict(x, verbose=0) - ours.predict(x, verbose=0)).max()))\n")
        proc = subprocess.run([sys.executable, "-c", code], env=env2, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        kind, backbone, *levels, diff = proc.stdout.split()
        assert (kind, backbone) == ("RegNetImageClassifier", "RegNetBackbone") and float(diff) < 1e-5

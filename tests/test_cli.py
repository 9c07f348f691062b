"""The keras-regnet command line: help, the models table, error exits."""

import json
import subprocess
import sys

from keras_regnet import cli
from paper_table import PAPER


def test_models_table_matches_paper(capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert "24/24 models match the paper's flops, params and acts exactly." in out
    assert out.count("exact") == 24 + 1


def test_models_json_lines(capsys):
    assert cli.main(["models", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["model"] for r in rows] == list(PAPER)
    y600 = rows[list(PAPER).index("RegNetY-600MF")]
    assert (y600["flops"], y600["params"], y600["acts"]) == tuple(PAPER["RegNetY-600MF"][10:])
    assert y600["constructor"] == "RegNetY600MF"


def test_console_script_help_and_unknown_command():
    out = subprocess.run([sys.executable, "-m", "keras_regnet.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "models" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "keras_regnet.cli", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr

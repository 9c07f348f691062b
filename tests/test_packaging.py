"""Packaging: what `pip install keras-regnet[...]` pulls in, read from pyproject.toml and the installed metadata.

Nothing is installed here: the declared dependencies are compared with what the package's sources import, and
the minimum versions with ci/constraints-min.txt (which .ci/run installs and tests).
"""

import ast
import functools
import importlib.metadata
import os
import re
import sys
import tomllib

import pytest

import keras_regnet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "keras_regnet")

with open(os.path.join(ROOT, "pyproject.toml"), "rb") as _f:
    PYPROJECT = tomllib.load(_f)
PROJECT = PYPROJECT["project"]

CORE = {"keras", "numpy", "h5py", "safetensors", "huggingface-hub", "filelock"}
# Imported by the sources but deliberately in no extra: torch reads pycls .pyth checkpoints (the [torch] extra
# declares it, outside [all]); tf_keras is only the Keras 2 migration peer of the tests.
MODULE_TO_DIST = {
    "PIL": "pillow",
    "yaml": "pyyaml",
    "tf_keras_vis": "tf-keras-vis",
    "huggingface_hub": "huggingface-hub",
    "tensorflow_datasets": "tensorflow-datasets",
    "ai_edge_litert": "ai-edge-litert",
    "tf_keras": "tf-keras",
    "importlib_resources": "importlib-resources",
    "absl": "absl-py",
}
# Modules that come with a declared distribution (TensorFlow ships absl and tensorboard's summary API).
PROVIDED_BY = {"absl-py": "tensorflow", "tensorboard": "tensorflow"}


def _name(requirement: str) -> str:
    """PEP 503 normalised distribution name of a requirement string (``"jax[cpu]>=0.4"`` -> ``"jax"``)."""
    name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1)
    return re.sub(r"[-_.]+", "-", name).lower()


def _bounds(requirements):
    """{name: minimum version} of requirements written as ``name>=X`` (extras references excluded)."""
    out = {}
    for r in requirements:
        m = re.match(r"\s*([A-Za-z0-9._-]+)(\[[^\]]*\])?\s*>=\s*([0-9][^,;\s]*)", r)
        if m:
            out[_name(m.group(1))] = m.group(3)
    return out


def _extras():
    return PROJECT["optional-dependencies"]


def _expanded(extra, seen=()):
    """Distribution names an extra installs, following ``keras-regnet[...]`` self-references."""
    names = set()
    for r in _extras()[extra]:
        m = re.match(r"keras-regnet\[([^\]]+)\]", r)
        if m:
            for sub in m.group(1).split(","):
                if sub.strip() not in seen:
                    names |= _expanded(sub.strip(), seen + (extra,))
        else:
            names.add(_name(r))
    return names


def _third_party_imports():
    """{top-level module: [files]} imported anywhere in keras_regnet/ (absolute imports, not the package itself)."""
    found = {}
    for dirpath, _, files in os.walk(PACKAGE):
        for fname in files:
            if not fname.endswith(".py"):
                continue
            path = os.path.join(dirpath, fname)
            with open(path) as f:
                tree = ast.parse(f.read(), path)
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    mods = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    mods = [node.module]
                else:
                    continue
                for mod in mods:
                    top = mod.split(".")[0]
                    if top != "keras_regnet" and top not in sys.stdlib_module_names:
                        found.setdefault(top, []).append(os.path.relpath(path, ROOT))
            # require("module", "extra") calls import by name
            for node in ast.walk(tree):
                if (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "require"
                        and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                    found.setdefault(node.args[0].value.split(".")[0], []).append(os.path.relpath(path, ROOT))
    return found


@functools.lru_cache(maxsize=None)
def _packages_distributions():
    return importlib.metadata.packages_distributions()


def _dist_of(module):
    if module in MODULE_TO_DIST:
        return MODULE_TO_DIST[module]
    dists = _packages_distributions().get(module)
    return re.sub(r"[-_.]+", "-", dists[0]).lower() if dists else re.sub(r"[-_.]+", "-", module).lower()


def test_core_dependencies_are_what_the_models_need_on_any_backend():
    core = {_name(r) for r in PROJECT["dependencies"]}
    assert core == CORE
    for heavy in ("tensorflow", "tf-keras", "tensorflow-datasets", "scikit-learn", "scipy", "matplotlib", "torch"):
        assert heavy not in core


def test_installed_metadata_pulls_no_tensorflow_without_an_extra():
    """`pip install keras-regnet` (no extra) installs the unconditional requirements of the metadata only."""
    requires = importlib.metadata.requires("keras-regnet") or []
    unconditional = {_name(r) for r in requires if ";" not in r or "extra ==" not in r.split(";", 1)[1]}
    assert unconditional == CORE, "the installed metadata is stale: reinstall with pip install -e ."
    assert "tensorflow" not in unconditional
    conditional = {_name(r) for r in requires if ";" in r and "extra ==" in r.split(";", 1)[1]}
    assert "tensorflow" in conditional


def test_extras_are_the_documented_ones_and_all_includes_every_feature():
    extras = _extras()
    assert {"tensorflow", "train", "explain", "design", "export", "all", "test", "torch"} <= set(extras)
    assert "tensorflow" in _expanded("tensorflow") and "tensorflow" in _expanded("train")
    assert {"tensorflow-datasets", "pyyaml", "tensorboard"} <= _expanded("train")
    assert {"tf-keras-vis", "matplotlib"} <= _expanded("explain")
    assert {"scipy", "matplotlib"} <= _expanded("design")
    assert {"ai-edge-litert", "tf2onnx", "onnx", "onnxruntime", "pillow"} <= _expanded("export")
    features = set().union(*(_expanded(e) for e in ("tensorflow", "train", "explain", "design", "export")))
    assert _expanded("all") == features
    assert features <= _expanded("test") and {"pytest", "hypothesis", "jax"} <= _expanded("test")
    assert "torch" not in _expanded("all"), "torch (pycls .pyth files only) stays outside [all]"
    assert "scikit-learn" not in _expanded("test"), "the digits demo data ship with the package"


def test_every_imported_package_is_declared():
    declared = CORE | set().union(*(_expanded(e) for e in _extras()))
    missing = {}
    for module, files in sorted(_third_party_imports().items()):
        dist = _dist_of(module)
        if dist not in declared and PROVIDED_BY.get(dist) not in declared:
            missing[module] = sorted(set(files))[:3]
    assert not missing, f"imported but declared in no extra of pyproject.toml: {missing}"


def test_minimum_versions_are_the_ones_ci_installs():
    """ci/constraints-min.txt pins exactly the declared minimums (keras 3.7: BackupAndRestore(double_checkpoint=...);
    huggingface_hub 1.2: retry_on_errors=; tf2onnx 1.17: numpy 2)."""
    bounds = _bounds(PROJECT["dependencies"])
    for reqs in _extras().values():
        for name, version in _bounds(reqs).items():
            bounds.setdefault(name, version)
    assert set(bounds) >= CORE, "every core dependency has a lower bound"
    assert bounds["keras"] == "3.7" and bounds["tf2onnx"] == "1.17"
    pins = {}
    with open(os.path.join(ROOT, "ci", "constraints-min.txt")) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                name, version = line.split("==")
                pins[_name(name)] = version.strip()
    assert CORE | {"tensorflow"} <= set(pins)
    for name, pinned in pins.items():
        declared = bounds.get(name)
        assert declared is not None, f"{name} is pinned in ci/constraints-min.txt but has no '>=' bound"
        # a bound "3.7" is met exactly by the pin "3.7.0"
        assert pinned == declared or pinned.startswith(declared + ".") and set(pinned[len(declared):]) <= set(".0"), (
            f"{name}: pyproject says >={declared}, the minimum CI installs {pinned}"
        )


def test_python_requirement_and_version():
    assert PROJECT["requires-python"] == ">=3.10"
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "keras_regnet.__version__"}
    assert "version" in PROJECT["dynamic"] and "version" not in PROJECT
    assert importlib.metadata.version("keras-regnet") == keras_regnet.__version__


def test_entry_point_package_data_license_and_shim():
    assert PROJECT["scripts"] == {"keras-regnet": "keras_regnet.cli:main"}
    assert PYPROJECT["tool"]["setuptools"]["package-data"]["keras_regnet"] == ["data/*"]
    for name in ("imagenet_class_index.json", "digits.npz"):
        assert os.path.isfile(os.path.join(PACKAGE, "data", name))
    with open(os.path.join(ROOT, "LICENSE")) as f:
        text = f.read()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    assert PROJECT["license"] == "Apache-2.0"
    with open(os.path.join(ROOT, "setup.py")) as f:
        shim = [line for line in f.read().splitlines() if line.strip() and not line.startswith("#")]
    assert shim == ["from setuptools import setup", "setup()"]


@pytest.mark.parametrize("source, expected", [
    ("import tensorflow as tf\nfrom PIL import Image\nimport os\n", {"tensorflow", "PIL"}),
    ("from keras_regnet._extras import require\nyaml = require('yaml', 'train')\n", {"yaml"}),
])
def test_import_scanner_sees_imports_and_require_calls(tmp_path, monkeypatch, source, expected):
    """The scanner behind test_every_imported_package_is_declared finds plain imports and require() calls."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "m.py").write_text(source)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", str(pkg))
    monkeypatch.setattr(sys.modules[__name__], "ROOT", str(tmp_path))
    assert set(_third_party_imports()) == expected


def test_test_tiers_are_configured_documented_and_run_by_ci_in_order():
    """pytest -q is the fast tier (slow tests deselected), -m slow the slow tier; the README says what each covers
    and takes; .ci/run runs fast tier, slow tier, minimum versions in that order and summarises each."""
    import configparser

    ini = configparser.ConfigParser()
    ini.read(os.path.join(ROOT, "pytest.ini"))
    assert '-m "not slow"' in ini["pytest"]["addopts"]
    assert ini["pytest"]["markers"].strip().startswith("slow:")
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    for text in ("`pytest -q`, the fast tier", "`pytest -q -m slow`, the slow tier", 'pytest -q -m ""'):
        assert text in readme, text
    assert re.search(r"fast tier: every module, about \d+ minutes", readme)
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        ci = f.read()
    steps = [ci.index('step "fast tier"'), ci.index('step "slow tier"'), ci.index('step "minimum versions"')]
    assert steps == sorted(steps) and "-q -m slow" in ci and "CI summary:" in ci

"""Every ```python block of README.md and docs/*.md runs as written, so the documentation cannot drift.

README.md's blocks run in the fast tier, the docs/ pages' blocks in the slow tier (``pytest -q -m slow``).

Each block runs alone in a fresh interpreter (in a temporary directory, network off: HF_HUB_OFFLINE=1), with
``weights="..."`` arguments replaced by ``weights=None`` (pretrained weights need the network; the calls are the
same otherwise). A block that cannot run here (it needs your data, an exported model, a GPU) is preceded by
``<!-- readme-test: skip (reason) -->``; it is still checked for syntax and for names it uses but never defines
(missing imports, undefined variables).
"""

import ast
import builtins
import glob
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\s*\(([^)]*)\)\s*-->")
FENCE = re.compile(r"^(\s*)```python\s*$")


def python_blocks(path):
    """[(line number, code, skip reason or None)] of the ```python blocks in a Markdown file."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, start = len(m.group(1)), i + 1
        j = start
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        if j == len(lines):
            raise AssertionError(f"{path}:{i + 1}: ```python block is never closed")
        code = "\n".join(line[indent:] for line in lines[start:j]) + "\n"
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        skip = SKIP.search(lines[k]) if k >= 0 else None
        blocks.append((i + 1, code, skip.group(1) if skip else None))
        i = j + 1
    return blocks


def offline(code):
    """The block with every ``weights="..."`` argument replaced by ``weights=None``."""
    return re.sub(r"""\bweights\s*=\s*(["'])[^"']*\1""", "weights=None", code)


def undefined_names(code):
    """Names a block loads but never binds (imports, assignments, loops, defs, with/except targets, arguments)."""
    tree = ast.parse(code)
    bound, loaded = set(dir(builtins)), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return sorted(loaded - bound)


CASES = [
    pytest.param(path, line, code, skip, id=f"{os.path.relpath(path, ROOT)}:{line}")
    for path in DOCS
    for line, code, skip in python_blocks(path)
]


def test_the_docs_have_python_blocks():
    assert len(CASES) >= 6, [c.id for c in CASES]


@pytest.mark.parametrize("path, line, code, skip", CASES)
def test_block_defines_what_it_uses(path, line, code, skip):
    where = f"{os.path.relpath(path, ROOT)}:{line}"
    try:
        missing = undefined_names(code)
    except SyntaxError as e:
        pytest.fail(f"{where}: not valid Python: {e}")
    assert not missing, f"{where}: the block uses {missing} without importing or defining them"


# The fast tier runs README.md's blocks; the docs/ pages' blocks (each a fresh interpreter building models, 15-50 s
# on 2 cores) run in the slow tier. Every block's syntax and names are checked in the fast tier (above).
RUNNABLE = [pytest.param(*c.values, id=c.id, marks=() if c.values[0].endswith("README.md") else pytest.mark.slow)
            for c in CASES if c.values[3] is None]


@pytest.mark.parametrize("path, line, code, skip", RUNNABLE)
def test_block_runs(path, line, code, skip, tmp_path):
    where = f"{os.path.relpath(path, ROOT)}:{line}"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), MPLBACKEND="Agg")
    try:
        result = subprocess.run([sys.executable, "-c", offline(code)], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=600)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{where}: the block ran for more than 600 s")
    assert result.returncode == 0, f"{where} fails:\n{result.stderr[-3000:]}"


def test_offline_substitution_and_name_check_catch_what_they_should():
    assert offline('m = f(weights="imagenet:ra3_in1k", include_top=False)') == "m = f(weights=None, include_top=False)"
    assert offline("m = f(weights='path/to/model.safetensors')") == "m = f(weights=None)"
    assert offline('list_weights("RegNetY-8.0GF")') == 'list_weights("RegNetY-8.0GF")'
    assert undefined_names("keras_regnet.fit_quantized_linear(block_widths)\n") == ["block_widths", "keras_regnet"]
    assert undefined_names("import keras_regnet\nw, d = keras_regnet.generate_regnet(1)\nprint([x for x in w])\n") == []


def test_block_parser_reads_skips_and_indentation(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(
        "text\n\n<!-- readme-test: skip (needs network) -->\n```python\nimport a\n```\n\n"
        "- item\n\n  ```python\n  x = 1\n  ```\n```bash\nls\n```\n"
    )
    assert python_blocks(str(doc)) == [(4, "import a\n", "needs network"), (10, "x = 1\n", None)]

"""The package's import graph, read from the source with ``ast`` (module-level and function-local imports).

Used by ``tests/test_layering.py``; run it directly for the figures (loops, function-local imports, longest
functions): ``python3 tests/import_graph.py``.
"""

from __future__ import annotations

import ast
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "keras_regnet")
PACKAGE = "keras_regnet"


def modules(root=ROOT):
    """``{module name: file path}`` of every module of the package."""
    out = {}
    for folder, _dirs, files in os.walk(root):
        for file in files:
            if not file.endswith(".py"):
                continue
            path = os.path.join(folder, file)
            rel = os.path.relpath(path, os.path.dirname(root))[:-3].replace(os.sep, ".")
            out[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return out


def _resolve(name, known):
    """The longest known module that ``name`` (a dotted import target) starts with."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imports(module, path, known):
    """``[(target module, line, local)]``: our modules that ``module`` imports (``local``: inside a function)."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    is_package = path.endswith("__init__.py")
    out = []

    def visit(node, local):
        for child in ast.iter_child_nodes(node):
            inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.split(".")[0] == PACKAGE:
                        target = _resolve(alias.name, known)
                        if target:
                            out.append((target, child.lineno, local))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = module.split(".")
                    parts = parts if is_package else parts[:-1]
                    parts = parts[: len(parts) - (child.level - 1)]
                    base = ".".join(parts + ([base] if base else []))
                if base.split(".")[0] != PACKAGE:
                    continue
                for alias in child.names:
                    target = _resolve(f"{base}.{alias.name}", known) if alias.name != "*" else None
                    if target is None or target == base and f"{base}.{alias.name}" not in known:
                        target = _resolve(base, known)
                    if target:
                        out.append((target, child.lineno, local))
            visit(child, inner)

    visit(tree, False)
    return [(t, line, local) for t, line, local in out if t != module]


def graph(root=ROOT):
    """``{module: [(target, line, local)]}`` for the whole package."""
    known = modules(root)
    return {m: imports(m, p, known) for m, p in sorted(known.items())}


def cycles(g):
    """Strongly connected components with more than one module (import loops), each sorted, via Tarjan."""
    edges = {m: sorted({t for t, _l, _loc in targets if t in g}) for m, targets in g.items()}
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in edges:
        if v not in index:
            strong(v)
    return out


def local_imports(g):
    """``[(module, line, target)]`` of function-local imports of our own modules."""
    return [(m, line, t) for m, targets in g.items() for t, line, local in targets if local]


def longest_functions(root=ROOT, n=10):
    """``[(lines, "module:function")]`` of the ``n`` longest functions/methods."""
    found = []
    for module, path in modules(root).items():
        tree = ast.parse(open(path, encoding="utf-8").read(), path)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((node.end_lineno - node.lineno + 1, f"{module}:{node.name}"))
    return sorted(found, reverse=True)[:n]


def main():
    g = graph()
    loops = cycles(g)
    local = local_imports(g)
    print(f"modules: {len(g)}")
    print(f"import loops: {len(loops)}")
    for loop in loops:
        print(f"  {len(loop)} modules: {' '.join(loop)}")
    print(f"function-local imports of our own modules: {len(local)}")
    print("longest functions (lines):")
    for lines, name in longest_functions():
        print(f"  {lines:4d} {name}")


if __name__ == "__main__":
    main()

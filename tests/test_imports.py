"""The project's imports form no cycle, and data flows one way between its packages.

Read from the source (every ``import``, function-local ones included; ``if
TYPE_CHECKING:`` blocks are for type checkers only and left out): no module of
``bench``, ``custom_models`` or ``hyper`` reaches itself through others; ``bench``
never imports the tuner (it reads tuned parameters as files, :mod:`bench.tuned`),
except its command line and benchmarks, which sit on top of everything; and a model
file imports from ``bench`` only the leaf modules: the row helpers and the shims (a
trainer also the harness trainer it extends).
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("bench", "custom_models", "hyper")
ON_TOP = ("bench.benchmarks", "bench.cli", "bench.__main__")  # entry points: may import anything
MODEL_MAY_IMPORT = {"bench.rows", "bench.compat"}
TRAINER_MAY_IMPORT = MODEL_MAY_IMPORT | {"bench.training"}


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = REPO) -> dict[str, set[str]]:
    """module -> the project modules it imports (at any depth of its code)."""
    files = {_module_name(p, root): p for pkg in PACKAGES for p in (root / pkg).rglob("*.py")}

    def owner(name: str) -> str | None:  # the project module that a dotted name lives in
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for node in ast.walk(tree)
                       if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                       for stmt in node.body for n in ast.walk(stmt)}
        imported = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        package = package.rpartition(".")[0]
                    base = f"{package}.{base}" if base else package
                imported |= {f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names}
        graph[module] = {m for m in map(owner, imported) if m and m != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle_through_a_function_local_import(tmp_path):
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "__init__.py").write_text("")
    (tmp_path / "bench" / "a.py").write_text("from bench.b import f\n")
    (tmp_path / "bench" / "b.py").write_text("def f():\n    from bench import a\n")
    (tmp_path / "bench" / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                             "    from bench.d import X\n")
    (tmp_path / "bench" / "d.py").write_text("from .c import *\n")
    graph = import_graph(tmp_path)
    assert graph["bench.b"] == {"bench.a"} and graph["bench.d"] == {"bench.c"} and graph["bench.c"] == set()
    assert cycles(graph) == [["bench.a", "bench.b"]]


def test_no_module_imports_itself_through_others():
    assert cycles(import_graph()) == []


def test_bench_never_imports_the_tuner_but_from_its_entry_points():
    graph = import_graph()
    reaching = {m: sorted(d for d in deps if d.split(".")[0] == "hyper") for m, deps in graph.items()
                if m.split(".")[0] == "bench" and not m.startswith(ON_TOP)}
    assert {m: d for m, d in reaching.items() if d} == {}


def test_models_import_only_the_leaf_modules_of_bench():
    graph = import_graph()
    for module, deps in graph.items():
        if module.split(".")[0] != "custom_models":
            continue
        allowed = TRAINER_MAY_IMPORT if module.endswith("_trainer") else MODEL_MAY_IMPORT
        assert {d for d in deps if d.split(".")[0] == "bench"} <= allowed, module
    for leaf in MODEL_MAY_IMPORT:  # and the leaves import nothing of ours back
        assert not {d for d in graph[leaf] if d.split(".")[0] != "bench"}, leaf

"""The structure contract, read from the source (no imports, no data): layers, no import cycles, no framework names.

Layers, bottom to top; a module may import its own layer and the ones below, never one above:

    interface   toolkit.cli, toolkit.recipes, toolkit.deploy, exporters.cli, benchmarks.cli, edgepack (may import all)
    pipelines   exporters, toolkit.compress, benchmarks (harness, child, report, diagnostics)
    runtime     runtimes/ (runners, the .epk codec, the ONNX reader, metrics, machine facts, timing)
    frameworks  toolkit.backends (the Framework interface and its implementations), toolkit.api
    core        toolkit.errors, .data, .arch, .train, .record, .outputs, .sparsity, .executors, ... and the package inits

Within the pipelines layer, exporters and the benchmark harness do not import each other: both stand on the
runtime layer. Every import counts, lazy ones inside functions included, and so do module names given to
importlib as string constants (the registries)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edgepack", "toolkit", "runtimes", "exporters", "benchmarks")   # edgepack/: the namespace that holds the other three

# (layer, module prefixes); "=name" matches that module only (package inits)
LAYERS = [
    ("core", ["=edgepack.toolkit", "=edgepack.benchmarks", "edgepack.toolkit.errors", "edgepack.toolkit.progress", "edgepack.toolkit.tf_import", "edgepack.toolkit.outputs",
              "edgepack.toolkit.record", "edgepack.toolkit.data", "edgepack.toolkit.arch", "edgepack.toolkit.train", "edgepack.toolkit.sparsity",
              "edgepack.toolkit.options", "edgepack.toolkit.tflite_convert", "edgepack.toolkit.tasks",
              "edgepack.toolkit.executors"]),
    ("frameworks", ["edgepack.toolkit.backends", "edgepack.toolkit.api"]),
    ("runtime", ["edgepack.runtimes"]),
    ("pipelines", ["edgepack.toolkit.compress", "edgepack.exporters", "edgepack.benchmarks"]),
    ("interface", ["edgepack.toolkit.cli", "edgepack.toolkit.recipes", "edgepack.toolkit.deploy", "=edgepack", "edgepack.__main__", "edgepack.toolkit.demo", "edgepack.exporters.cli", "edgepack.benchmarks.cli"]),
]
INDEPENDENT = [(["edgepack.exporters"], ["edgepack.benchmarks.harness", "edgepack.benchmarks.child", "edgepack.benchmarks.report", "edgepack.benchmarks.diagnostics"])]
FRAMEWORK_NAMES = {"torch", "keras"}


def _modules() -> dict[str, Path]:
    """Module name (as installed: edgepack.toolkit.api) -> source file (toolkit/api.py)."""
    mods = {}
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(f.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(["edgepack", *parts] if pkg != "edgepack" else parts)] = f
    return mods


def _resolve(name: str, mods) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    edges = {m: set() for m in mods}
    for m, f in mods.items():
        tree = ast.parse(f.read_text(), str(f))
        targets = []
        uses_importlib = False
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = m if f.name == "__init__.py" else m.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        pkg = pkg.rpartition(".")[0]
                    base = f"{pkg}.{base}" if base else pkg
                targets += [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            elif isinstance(node, ast.Call):
                fn = node.func
                if getattr(fn, "attr", getattr(fn, "id", "")) in ("import_module", "__import__"):
                    uses_importlib = True
        if uses_importlib:                # registries: module names listed as strings
            targets += [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
                        and n.value in mods]
        edges[m] = {r for t in targets if (r := _resolve(t, mods)) and r != m}
    return edges


def _matches(m: str, prefix: str) -> int:
    if prefix.startswith("="):
        return len(prefix) if m == prefix[1:] else 0
    return len(prefix) + 1 if m == prefix or m.startswith(prefix + ".") else 0


def layer_of(m: str) -> int:
    best = max(((_matches(m, p), i) for i, (_, ps) in enumerate(LAYERS) for p in ps), default=(0, -1))
    if not best[0]:
        raise AssertionError(f"module {m} is in no layer: add it to LAYERS in tests/test_structure.py")
    return best[1]


def cycles(edges) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_no_import_cycles_lazy_imports_included(graph):
    assert cycles(graph) == []


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_layers_hold(graph):
    up = [f"{a} ({LAYERS[layer_of(a)][0]}) -> {b} ({LAYERS[layer_of(b)][0]})"
          for a, bs in graph.items() for b in bs if layer_of(b) > layer_of(a)]
    assert up == []


def test_siblings_stay_independent(graph):
    def inside(m, prefixes):
        return any(m == p or m.startswith(p + ".") for p in prefixes) and LAYERS[layer_of(m)][0] == "pipelines"
    crossing = [f"{a} -> {b}" for left, right in INDEPENDENT for a, bs in graph.items() for b in bs
                if (inside(a, left) and inside(b, right)) or (inside(a, right) and inside(b, left))]
    assert crossing == []


def test_the_contract_sees_lazy_and_registry_imports(graph):
    # a lazy import inside a function, and a registry's module list, are edges like any other
    assert "edgepack.runtimes.epk" in graph["edgepack.runtimes.archive"]
    assert "edgepack.exporters.tflite" in graph["edgepack.exporters.registry"]
    assert "edgepack.toolkit.backends.torch" in graph["edgepack.toolkit.backends"]


def _framework_name_comparisons(tree: ast.AST) -> list[int]:
    def names(node) -> set[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return set().union(*(names(e) for e in node.elts)) if node.elts else set()
        return set()
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            if any(names(x) & FRAMEWORK_NAMES for x in [node.left, *node.comparators]):
                hits.append(node.lineno)
    return hits


def test_no_framework_name_is_compared_outside_the_framework_implementations():
    found = []
    for m, f in _modules().items():
        if m.startswith("edgepack.toolkit.backends"):
            continue
        tree = ast.parse(f.read_text(), str(f))
        found += [f"{f.relative_to(ROOT)}:{line}" for line in _framework_name_comparisons(tree)]
        # comparing two frameworks by name (`a.NAME == b.NAME`) counts too
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and any(isinstance(x, ast.Attribute) and x.attr == "NAME"
                                                     for x in [node.left, *node.comparators]):
                found.append(f"{f.relative_to(ROOT)}:{node.lineno}")
    assert found == []


def test_the_name_check_catches_the_forms_it_forbids():
    src = 'if fw == "torch": pass\nif b.NAME != "keras": pass\nok = name in ("torch", "keras")\nfine = x == "onnx"\n'
    assert _framework_name_comparisons(ast.parse(src)) == [1, 2, 3]


def test_the_unit_tier_runs_without_the_data_folder(tmp_path):
    """`make test-unit` on a machine without the data sets: its tests run (not skipped) and pass."""
    import os
    import subprocess
    import sys
    env = {**os.environ, "EDGEPACK_TEST_DATA": str(tmp_path / "no-data")}
    env.pop("EDGEPACK_REQUIRE_DATA", None)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not integration and not slow",
                        "tests/test_options.py", "tests/test_data.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
    tail = r.stdout.strip().splitlines()[-1]
    assert r.returncode == 0 and " passed" in tail and "skipped" not in tail and "error" not in tail, r.stdout[-2000:]
    # and the integration tier says why it does not run there
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/test_data.py"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "integration tier: no data folder" in r.stdout, r.stdout[-2000:]

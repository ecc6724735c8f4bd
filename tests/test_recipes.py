import json

import pytest

from tests.conftest import MNIST_DIR, ROOT
from edgepack.toolkit.errors import OptionError
from edgepack.toolkit.recipes.runner import Runner, run_recipe
from edgepack.toolkit.recipes.schema import load_recipe

RECIPE = f"""
[recipe]
name = "tiny"

[data]
name = "mnist"
dir = "{MNIST_DIR}"

[[step]]
id = "t"
kind = "train"
framework = "keras"
arch = "mnist-tutorial"
epochs = 1
batch_size = 256

[[step]]
id = "p"
kind = "compress"
input = "t"
steps = [{{ technique = "prune", sparsity = 0.5, epochs = 1 }}]
batch_size = 256

[[step]]
id = "x"
kind = "export"
input = "p"
formats = ["tflite-int8", "sparse"]
calibration_samples = 50

[[step]]
id = "b"
kind = "bench"
inputs = ["x"]
runs = 5
min_seconds = 0.0
"""


def _write(tmp_path, text, name="r.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("edit,needle", [
    (lambda t: t.replace('kind = "bench"', 'kind = "benchmark"'), "unknown kind 'benchmark'"),
    (lambda t: t.replace('arch = "mnist-tutorial"\n', ""), "missing key 'arch'"),
    (lambda t: t.replace("epochs = 1\nbatch_size = 256", 'epochs = "one"\nbatch_size = 256'), "key 'epochs' should be int"),
    (lambda t: t.replace("runs = 5", "rnus = 5"), "unknown key 'rnus'"),
    (lambda t: t.replace('input = "t"', 'input = "later"'), "not an earlier step id"),
    (lambda t: t.replace("sparsity = 0.5", "sparsity = 1.5"), "sparsity must be in [0, 1)"),
    (lambda t: t.replace('"sparse"]', '"coreml"]'), "unknown format"),
    (lambda t: t.replace("[[step]]\nid = \"b\"", "[[step\nid = \"b\""), "not valid TOML"),
])
def test_bad_recipes_are_rejected_before_any_work(tmp_path, edit, needle):
    p = _write(tmp_path, edit(RECIPE))
    with pytest.raises(OptionError) as e:
        load_recipe(p)
    assert needle in str(e.value) and str(p) in str(e.value)


def test_errors_name_the_line_of_the_step(tmp_path):
    p = _write(tmp_path, RECIPE.replace("runs = 5", "runs = 5.5"))
    with pytest.raises(OptionError, match=r"r\.toml:\d+: step 4 \(b\): key 'runs' should be int"):
        load_recipe(p)


@pytest.mark.integration
def test_run_skip_rerun_and_resume(tmp_path, monkeypatch):
    recipe = _write(tmp_path, RECIPE)
    out = tmp_path / "run"
    run_recipe(recipe, out, verbose=False)
    for f in ("report.md", "results.json", "results.csv", "t/model.keras", "x/model.int8.tflite", "x/model.sparse.epk",
              "b/pareto_latency.png", "t/history.png"):
        assert (out / f).is_file(), f
    rows = json.loads((out / "results.json").read_text())["results"]
    assert len(rows) == 2 and all(r["ok"] for r in rows)
    report = (out / "report.md").read_text()
    assert "## Exports" in report and "## Benchmark" in report and "prune" in report
    assert "every step as last run" in report                   # the time a recipe costs, across resumed invocations
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and ".edgepack" not in str(p)}

    calls = []
    orig = Runner.step_export
    monkeypatch.setattr(Runner, "step_export", lambda self, s, d: calls.append(s.id) or orig(self, s, d))
    run_recipe(recipe, out, verbose=False)                      # nothing changed: every step skipped
    assert calls == []
    assert (out / "t" / "model.keras").stat().st_mtime_ns == stamp[out / "t" / "model.keras"]

    recipe2 = _write(tmp_path, RECIPE.replace("calibration_samples = 50", "calibration_samples = 60"))
    monkeypatch.setattr(Runner, "step_bench", lambda self, s, d: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):                      # export reruns, then the run is interrupted in bench
        run_recipe(recipe2, out, verbose=False)
    assert calls == ["x"]
    assert (out / "t" / "model.keras").stat().st_mtime_ns == stamp[out / "t" / "model.keras"]   # upstream untouched
    assert not any(p.name.startswith(".b.partial") and any(p.iterdir()) for p in out.iterdir() if p.is_dir())
    assert (out / "b" / "results.json").is_file()               # the old finished bench stays until a new one finishes
    monkeypatch.undo()
    run_recipe(recipe2, out, verbose=False)                     # resumes: export skipped (done), bench reruns
    state = json.loads((out / ".edgepack" / "state.json").read_text())
    assert set(state["steps"]) == {"t", "p", "x", "b"}
    assert not (out / ".b.partial").exists()

    calls.clear()
    orig_bench = Runner.step_bench
    monkeypatch.setattr(Runner, "step_bench", lambda self, s, d: calls.append(s.id) or orig_bench(self, s, d))
    monkeypatch.setattr(Runner, "step_export", lambda self, s, d: calls.append(s.id) or orig(self, s, d))
    run_recipe(recipe2, out, verbose=False, redo=["b"])         # a quieter machine: measure again, keep the models
    assert calls == ["b"]
    with pytest.raises(OptionError, match="--redo: no step 'bnch'"):
        run_recipe(recipe2, out, verbose=False, redo=["bnch"])


def test_example_recipes_are_valid():
    names = {p.name for p in (ROOT / "examples").glob("*.toml")}
    assert {"quickstart.toml", "mnist_tflite.toml", "cifar10_torch.toml", "kd_lowrank.toml", "framework_compare.toml"} <= names
    for p in (ROOT / "examples").glob("*.toml"):
        assert load_recipe(p).steps


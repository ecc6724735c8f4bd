"""Grids in recipes: named axes expand into ordinary steps (each grid step over the axes it uses, itself or through
the grid steps it reads), later steps read every cell, and every mistake is refused before any work with the file,
line, step and what was expected."""
import pytest

from edgepack.toolkit.errors import OptionError
from edgepack.toolkit.recipes.schema import load_recipe

HEAD = """[recipe]
name = "g"

[data]
name = "mnist"

[[step]]
id = "base"
kind = "train"
framework = "keras"
arch = "mnist-tutorial"
epochs = 1
"""
GRID = """
[[grid]]
axes = { sparsity = [0.5, 0.8], qat = { no-qat = [], qat = [{ technique = "qat", epochs = 1 }] }, format = ["tflite-int8", "onnx-int8"] }

[[grid.step]]
id = "pruned"
kind = "compress"
input = "base"
steps = [{ technique = "prune", sparsity = "{sparsity}", epochs = 1 }, "{qat}"]

[[grid.step]]
id = "export"
kind = "export"
input = "pruned"
formats = ["{format}"]
"""
TAIL = """
[[step]]
id = "bench"
kind = "bench"
inputs = ["export"]
"""


def _load(tmp_path, text):
    p = tmp_path / "r.toml"
    p.write_text(text)
    return load_recipe(p)


def test_grid_expands_each_step_over_the_axes_it_uses(tmp_path):
    steps = {s.id: s for s in _load(tmp_path, HEAD + GRID + TAIL).steps}
    pruned = [i for i in steps if i.startswith("pruned-")]
    exports = [i for i in steps if i.startswith("export-")]
    assert len(pruned) == 4 and len(exports) == 8             # compress does not repeat per export format
    s = steps["pruned-sparsity0.8-qat"].options
    assert s["steps"] == [{"technique": "prune", "sparsity": 0.8, "epochs": 1}, {"technique": "qat", "epochs": 1}]
    assert steps["pruned-sparsity0.5-no-qat"].options["steps"] == [{"technique": "prune", "sparsity": 0.5, "epochs": 1}]
    e = steps["export-sparsity0.8-qat-onnx-int8"].options
    assert e["input"] == "pruned-sparsity0.8-qat" and e["formats"] == ["onnx-int8"]     # the cell with the same values
    assert steps["bench"].options["inputs"] == exports                                  # every cell, in order
    assert list(steps)[0] == "base" and list(steps)[-1] == "bench"                      # text order kept
    assert steps["export-sparsity0.5-no-qat-tflite-int8"].line == GRID_LINE


GRID_LINE = (HEAD + GRID).splitlines().index('id = "export"')          # the [[grid.step]] line (1-based: index of id)


@pytest.mark.parametrize("change,says", [
    (('"{sparsity}"', '"{sparsty}"'), "{sparsty} names no axis of this grid"),
    (("sparsity = [0.5, 0.8]", "sparsity = []"), "axis 'sparsity' is empty"),
    (('formats = ["{format}"]', 'formats = ["tflite-int8"]'), "axis 'format' is used by no grid step"),
    (("sparsity = [0.5, 0.8]", "sparsity = [0.5, 1.5]"), "(grid step pruned) (pruned-sparsity1.5-no-qat)"),
    (("[[grid]]\naxes", "[[grid]]\nseed = 1\naxes"), "unknown key(s) ['seed']"),
    (('formats = ["{format}"]', 'formats = ["{format}"]\nbogus = 1'), "unknown key 'bogus'"),
])
def test_grid_mistakes_are_refused_before_any_work(tmp_path, change, says):
    text = (HEAD + GRID + TAIL).replace(*change)
    assert text != HEAD + GRID + TAIL
    with pytest.raises(OptionError) as e:
        _load(tmp_path, text)
    msg = str(e.value)
    assert says in msg and "r.toml:" in msg and "\n" not in msg, msg


def test_a_later_single_input_cannot_name_a_grid_step_with_many_cells(tmp_path):
    text = HEAD + GRID + '\n[[step]]\nid = "more"\nkind = "export"\ninput = "pruned"\nformats = ["onnx"]\n'
    with pytest.raises(OptionError, match=r"grid step with 4 cells; name one cell \(pruned-sparsity0.5-no-qat, \.\.\.\)"):
        _load(tmp_path, text)


def test_value_needing_a_label_is_refused(tmp_path):
    text = (HEAD + GRID).replace("qat = { no-qat = [], qat = [{ technique = \"qat\", epochs = 1 }] }",
                                 "qat = [[], [{ technique = \"qat\" }]]")
    with pytest.raises(OptionError, match="needs a label; write the axis as a table of label = value"):
        _load(tmp_path, text)


def test_a_grid_runs_and_a_new_axis_value_runs_only_its_cells(tmp_path, monkeypatch):
    """Sequential run of a small grid on real digits; adding a value to an axis recomputes only the new cells."""
    import json

    from tests.conftest import MNIST_DIR
    from edgepack.toolkit.recipes.runner import Runner, run_recipe
    text = HEAD.replace('name = "mnist"', f'name = "mnist"\ndir = "{MNIST_DIR}"').replace("epochs = 1", "epochs = 1\nbatch_size = 256") + """
[[grid]]
axes = { format = ["tflite-int8", "onnx-int8"] }

[[grid.step]]
id = "x"
kind = "export"
input = "base"
formats = ["{format}"]
calibration_samples = 50
verify_images = 300

[[step]]
id = "b"
kind = "bench"
inputs = ["x"]
runs = 5
min_seconds = 0.0
"""
    recipe, out = tmp_path / "r.toml", tmp_path / "run"
    recipe.write_text(text)
    run_recipe(recipe, out, verbose=False)
    assert (out / "x-tflite-int8" / "model.int8.tflite").is_file() and (out / "x-onnx-int8" / "model.int8.onnx").is_file()
    rows = json.loads((out / "results.json").read_text())["results"]
    assert len(rows) == 2 and all(r["ok"] for r in rows)
    calls = []
    orig = Runner.step_export
    monkeypatch.setattr(Runner, "step_export", lambda self, s, d: calls.append(s.id) or orig(self, s, d))
    recipe.write_text(text.replace('["tflite-int8", "onnx-int8"]', '["tflite-int8", "onnx-int8", "onnx"]'))
    run_recipe(recipe, out, verbose=False)
    assert calls == ["x-onnx"]                                  # the two earlier cells were skipped by content hash
    assert len(json.loads((out / "results.json").read_text())["results"]) == 3

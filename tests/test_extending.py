"""docs/extending.md, proven: a runtime and a format that live outside edgepack (a throw-away module written by the
test) are registered in one line each, and then a model is exported to the new format, verified in the new runtime
and benchmarked by the harness like any built-in one. Nothing else in edgepack is touched."""
import importlib
import sys
import textwrap

import numpy as np
import pytest

PLUGIN = '''
"""A linear classifier stored as .npz (W, b), run by NumPy: the smallest format + runtime pair there is."""
import numpy as np

from edgepack.runtimes.base import Runner, RunnerInfo, TensorSpec
from edgepack.exporters.base import Exporter


class NpzLinearRunner(Runner):
    runtime = "numpy-linear"
    format = "npz-linear"
    suffixes = (".npzl",)
    needs = ("numpy",)
    label = "NumPy (linear)"

    def _load(self):
        with open(self.path, "rb") as f:
            z = np.load(f)
            self.w, self.b = z["w"], z["b"]
        self.inputs = [TensorSpec("x", (-1, self.w.shape[0]), np.dtype(np.float32))]
        self.outputs = [TensorSpec("logits", (-1, self.w.shape[1]), np.dtype(np.float32))]

    def _run(self, feed):
        return [feed.reshape(len(feed), -1) @ self.w + self.b]

    def info(self):
        return RunnerInfo(self.runtime, np.__version__, self.threads)

    @staticmethod
    def file_metrics(path):
        with open(path, "rb") as f:
            z = np.load(f)
            w, b = z["w"], z["b"]
        return {"params": int(w.size + b.size), "nonzero_params": int((w != 0).sum() + (b != 0).sum()),
                "macs": int(w.size)}


class NpzLinearExporter(Exporter):
    name = "npz-linear"
    tag = "linear"
    suffix = ".npzl"
    description = "a linear classifier's weights as .npz"
    runtime = "numpy-linear"
    atol = 1e-3

    def export(self, ctx, path):
        import onnx
        from onnx import numpy_helper
        inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(ctx.fp32_onnx())).graph.initializer}
        with open(path, "wb") as f:
            np.savez(f, w=inits["w"], b=inits["b"])
        return {"weights": int(inits["w"].size + inits["b"].size)}
'''


@pytest.fixture()
def plugin(tmp_path, monkeypatch):
    (tmp_path / "edgepack_plugin_demo.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("edgepack_plugin_demo")
    from edgepack import runtimes as runners
    from edgepack.exporters import registry
    runners._load(), registry._load_all()
    saved = dict(runners._REGISTRY), dict(registry._EXPORTERS)
    yield mod
    runners._REGISTRY.clear(), runners._REGISTRY.update(saved[0])
    registry._EXPORTERS.clear(), registry._EXPORTERS.update(saved[1])
    sys.modules.pop("edgepack_plugin_demo", None)


def _linear_onnx(path, ds):
    """An fp32 .onnx a user brings: a ridge-regression linear classifier of the 8x8 digits (Flatten + Gemm)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    x = ds.normalize(ds.x_train).reshape(len(ds.x_train), -1)
    targets = np.eye(ds.num_classes)[ds.y_train] * 10
    a = np.c_[x, np.ones(len(x))]
    w = np.linalg.solve(a.T @ a + 10 * np.eye(a.shape[1]), a.T @ targets).astype(np.float32)   # ridge: small weights
    h, wd, c = ds.input_shape
    g = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"]), helper.make_node("Gemm", ["flat", "w", "b"], ["logits"])],
        "linear", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, h, wd, c])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, ds.num_classes])],
        [numpy_helper.from_array(w[:-1], "w"), numpy_helper.from_array(w[-1], "b")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_a_runtime_and_a_format_from_outside_register_in_one_line_each(plugin, tmp_path):
    from edgepack.benchmarks.harness import BenchSettings, benchmark
    from edgepack.runtimes import all_runtimes, open_runner, register_runner
    from edgepack.exporters import list_exporters
    from edgepack.exporters.api import export_checkpoint
    from edgepack.exporters.registry import register_exporter
    from edgepack.toolkit.data import load_dataset

    assert "numpy-linear" not in all_runtimes() and "npz-linear" not in list_exporters()
    register_runner(plugin.NpzLinearRunner)            # the one line a runtime needs
    register_exporter(plugin.NpzLinearExporter)        # the one line a format needs
    assert "numpy-linear" in all_runtimes() and "npz-linear" in list_exporters()

    ds = load_dataset("digits", quiet=True)
    source = _linear_onnx(tmp_path / "linear.onnx", ds)
    (res,) = export_checkpoint(source, ["npz-linear"], tmp_path / "out", data="digits", verbose=False)
    assert res.ok, res.error                            # verified against the source, in the new runtime
    assert res.path.suffix == ".npzl" and res.path.is_file()
    src_logits = open_runner(source).predict(ds.normalize(ds.x_test))
    new_logits = open_runner(res.path).predict(ds.normalize(ds.x_test))
    assert np.abs(src_logits - new_logits).max() < 1e-3

    (row,) = benchmark([res.path], "digits", settings=BenchSettings(threads=[1], runs=5, warmup=1, min_seconds=0),
                       progress=lambda *a, **k: None)
    assert row.ok and row.runtime == "numpy-linear", row.error
    expected = 100 * float((src_logits.argmax(1) == ds.y_test).mean())
    assert row.accuracy is not None and abs(100 * row.accuracy - expected) < 1e-6 if row.accuracy <= 1 else \
        abs(row.accuracy - expected) < 1e-6
    assert expected > 80                                # a real classifier, not a chance-level one
    assert row.params == 28 * 28 * 10 + 10 and row.macs == 28 * 28 * 10     # read by the plug-in's own reader
    import io

    from edgepack.benchmarks.report import plot_all, print_table
    table = io.StringIO()
    print_table([row], file=table)
    assert "NumPy (linear)" in table.getvalue() or "numpy-linear" in table.getvalue()
    assert plot_all([row], tmp_path / "report")         # the report's figures draw the new runtime's row

    # a plug-in format without a reader: its figures are left empty, not made up
    bare = type("BareRunner", (plugin.NpzLinearRunner,), {"format": "npz-bare", "suffixes": (".npzb",),
                                                           "runtime": "numpy-bare", "file_metrics": None})
    register_runner(bare)
    import shutil

    from edgepack.benchmarks.harness import static_metrics
    shutil.copyfile(res.path, tmp_path / "bare.npzb")
    m = static_metrics(tmp_path / "bare.npzb")
    assert m["params"] is None and m["macs"] is None and m["size_bytes"] == res.path.stat().st_size


def test_a_budget_is_one_declaration_judged_alike_by_the_pick_and_the_search(monkeypatch):
    """A new budget (here: the gzipped size) is one Budget in BUDGETS: the CLI gets its flag, the pick rejects a row
    over it with its reason, and the search's score counts it, through the one formula both use."""
    import argparse
    import math

    from edgepack.toolkit.deploy import budgets as bmod
    from edgepack.toolkit.deploy.search import Config, Trial, _score
    from edgepack.toolkit.deploy.select import Row, pick

    gz = bmod.Budget("max_gzip", "--max-gzip", "largest gzipped file", bmod.parse_size, "gzip", True, "gzip size",
                     bmod._size_text)
    monkeypatch.setattr(bmod, "BUDGETS", bmod.BUDGETS + (gz,))
    monkeypatch.setattr(bmod, "BY_NAME", {**bmod.BY_NAME, "max_gzip": gz})

    p = argparse.ArgumentParser()
    bmod.add_budget_args(p)
    budgets = bmod.Budgets.from_args(p.parse_args(["--max-gzip", "20KB"]))
    assert budgets.max_gzip == 20_000 and "gzip size <= 20,000 B" in budgets.describe()

    rows = [Row("small", "a.tflite", "tflite-int8", "int8", "litert", p50_ms=0.03, size=23_000, gzip=19_000,
                accuracy=98.0, verified=True),
            Row("fast", "b.onnx", "onnx", "fp32", "onnxruntime", p50_ms=0.01, size=83_000, gzip=76_000,
                accuracy=98.1, verified=True)]
    assert pick(rows, budgets, None).label == "small"
    assert rows[1].reasons == ["gzip size too large (76,000 > 20,000 B)"]

    trial = Trial(0, Config("onnx-int8"), size=23_000, accuracy=98.0, p50_us=30.0)
    trial.gzip = 40_000                                  # 2x over the gzip budget
    score, feasible = _score(trial, budgets.for_search(), 98.0)
    assert not feasible and math.isclose(score, 30.0 * (2 + 1.0))
    trial.gzip = 10_000
    assert _score(trial, budgets.for_search(), 98.0) == (30.0, True)

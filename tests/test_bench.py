import json
import subprocess
import sys

import numpy as np
import pytest

from edgepack.benchmarks.harness import BenchResult, BenchSettings, benchmark, latency_stats
from edgepack.runtimes.metrics import file_metrics
from edgepack.benchmarks.report import plot_all, write_csv, write_json, write_markdown
from tests.conftest import MNIST_DIR
from edgepack.toolkit.errors import ModelError, OptionError

FAST = BenchSettings(threads=[1], warmup=2, runs=20, min_seconds=0.05)
JSON_FIELDS = {"model", "format", "runtime", "threads", "latency_ms", "load_ms", "size_bytes", "gzip_bytes", "params",
               "nonzero_params", "macs", "peak_rss_mb", "accuracy", "energy_mj", "machine"}


def _bench(models, settings=FAST, data="mnist", data_dir=MNIST_DIR):
    return benchmark([str(m) for m in models], data, str(data_dir), settings, progress=lambda m: None)


def test_latency_stats_from_raw_samples():
    s = latency_stats(list(range(1, 101)))
    assert s["min"] == 1 and s["p50"] == pytest.approx(50.5) and s["p90"] == pytest.approx(90.1)
    assert s["p99"] == pytest.approx(99.01) and s["runs"] == 100 and s["mean"] == pytest.approx(50.5)


@pytest.fixture(scope="module")
def bench_exports(exported):
    return {"onnx": exported["torch"]["onnx"].path, "onnx-int8": exported["torch"]["onnx-int8"].path,
            "tflite": exported["keras"]["tflite"].path, "tflite-int8": exported["keras"]["tflite-int8"].path,
            "sparse": exported["torch"]["sparse"].path}


def test_bench_writes_every_field_for_onnx_and_tflite(bench_exports, tmp_path):
    from edgepack.runtimes import open_runner
    from edgepack.toolkit.data import load_dataset
    files = [bench_exports["onnx-int8"], bench_exports["tflite-int8"], bench_exports["sparse"]]
    results = _bench(files, BenchSettings(threads=[1, 2], warmup=2, runs=20, min_seconds=0.05))
    assert len(results) == 6 and all(r.ok for r in results), [r.error for r in results]
    write_json(results, tmp_path / "r.json")
    rows = json.loads((tmp_path / "r.json").read_text())["results"]
    ds = load_dataset("mnist", MNIST_DIR)
    for row in rows:
        assert JSON_FIELDS <= set(row)
        assert set(row["latency_ms"]) == {"min", "p50", "p90", "p99", "mean", "std", "runs"}
        assert row["latency_ms"]["runs"] >= 20 and row["latency_ms"]["min"] <= row["latency_ms"]["p50"] <= row["latency_ms"]["p99"]
        assert row["energy_mj"]["method"].startswith(("estimated", "measured"))
        assert row["test_images"] == 10000 and row["macs"] == 93288 and row["params"] == 20410
        assert row["machine"]["cores"] >= 1 and "onnxruntime" in row["machine"]["runtimes"]
    # accuracy equals an independent in-process run over the full test set in the same runtime
    for path in files:
        r = open_runner(path)
        acc = float((r.predict(ds.normalize(ds.x_test)).argmax(1) == ds.y_test).mean())
        assert next(row for row in rows if row["model"] == str(path))["accuracy"] == pytest.approx(acc, abs=1e-12)


def test_accuracy_matches_exporter_verification_on_full_test_set(trained, tmp_path):
    from edgepack.exporters.api import export_checkpoint
    from edgepack.exporters.base import ExportOptions
    res = export_checkpoint(trained["keras"], ["tflite-int8"], tmp_path, data_dir=MNIST_DIR,
                            options=ExportOptions(verify_images=10000, calibration_samples=50), verbose=False)
    assert res[0].ok
    (row,) = _bench([res[0].path])
    assert row.accuracy == pytest.approx(res[0].verification.export_accuracy, abs=1e-12)


def test_files_not_written_by_edgepack(tmp_path, mnist_small):
    import torch
    from edgepack.toolkit.tf_import import import_tensorflow
    tf = import_tensorflow()
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 26 * 26, 10))
    torch.onnx.export(net, (torch.zeros(1, 1, 28, 28),), str(tmp_path / "plain.onnx"), dynamo=False, input_names=["x"])
    km = tf.keras.Sequential([tf.keras.Input((28, 28, 1)), tf.keras.layers.Conv2D(4, 3, activation="relu"),
                              tf.keras.layers.Flatten(), tf.keras.layers.Dense(10)])
    km.layers[-1].bias.assign(np.full(10, 0.1, np.float32))   # the converter drops an all-zero bias
    (tmp_path / "plain.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(km).convert())
    km.save(tmp_path / "plain.keras")                          # a Keras file with no edgepack record beside it
    results = _bench([tmp_path / "plain.onnx", tmp_path / "plain.tflite", tmp_path / "plain.keras"])
    assert all(r.ok for r in results), [r.error for r in results]
    for r in results[:2]:
        assert r.params == 4 * 9 + 4 + 4 * 26 * 26 * 10 + 10
        assert r.macs == 4 * 9 * 26 * 26 + 4 * 26 * 26 * 10
        assert 0 <= r.accuracy <= 1 and r.record is None
    assert results[2].runtime == "keras" and results[2].params == results[0].params
    assert results[2].accuracy == pytest.approx(results[1].accuracy, abs=2e-3)   # same function, same images


def test_bad_inputs_are_reported_and_the_rest_still_run(bench_exports, tmp_path):
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model")
    trunc = tmp_path / "trunc.tflite"
    trunc.write_bytes(bench_exports["tflite"].read_bytes()[:3000])
    trunc_onnx = tmp_path / "trunc.onnx"
    trunc_onnx.write_bytes(bench_exports["onnx"].read_bytes()[:5000])
    weird = tmp_path / "model.bin"
    weird.write_bytes(b"\0" * 10)
    models = [tmp_path / "missing.onnx", text, trunc, trunc_onnx, weird, bench_exports["onnx"]]
    results = _bench(models)
    by = {r.model: r for r in results}
    assert "file not found" in by[str(tmp_path / "missing.onnx")].error
    for bad in (text, trunc, trunc_onnx, weird):
        r = by[str(bad)]
        assert not r.ok and str(bad) in r.error and "\n" not in r.error
    assert by[str(bench_exports["onnx"])].ok


@pytest.mark.integration
def test_input_shape_that_does_not_fit_the_dataset_is_timed_on_random_input(tmp_path):
    import torch
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.Flatten(), torch.nn.LazyLinear(10))
    net(torch.zeros(1, 3, 32, 32))
    torch.onnx.export(net, (torch.zeros(1, 3, 32, 32),), str(tmp_path / "rgb.onnx"), dynamo=False)
    (r,) = _bench([tmp_path / "rgb.onnx"])
    assert r.ok and r.accuracy is None and r.latency_ms["p50"] > 0
    assert "does not fit mnist images (28, 28, 1)" in r.accuracy_note and "accuracy not measured" in r.accuracy_note
    assert r.input["source"] == "random" and r.input["shape"] == [1, 3, 32, 32]


def test_unknown_runtime_option_is_rejected():
    with pytest.raises(OptionError, match="graph_optimization"):
        BenchSettings(runtime_options={"graph_optimization": "fancy"})
    with pytest.raises(OptionError, match="unknown runtime option"):
        BenchSettings(runtime_options={"arena": "off"})


def test_runtime_path_imports_neither_torch_nor_tensorflow(bench_exports):
    script = f"""
import sys, json
sys.argv = ['x']
from edgepack.benchmarks.child import main
for m in [{str(bench_exports['onnx'])!r}, {str(bench_exports['tflite-int8'])!r}, {str(bench_exports['sparse'])!r}]:
    out = main({{"model": m, "data": "mnist", "data_dir": {str(MNIST_DIR)!r}, "threads": 1, "batch": 1, "warmup": 1,
                "runs": 5, "min_seconds": 0, "accuracy": True}})
    assert out["accuracy"] > 0.5
from edgepack.runtimes.metrics import file_metrics
file_metrics({str(bench_exports['onnx'])!r}); file_metrics({str(bench_exports['tflite-int8'])!r})
from edgepack.benchmarks.report import write_markdown
bad = [m for m in ('torch', 'tensorflow', 'keras', 'tf_keras', 'onnx') if m in sys.modules]
print(json.dumps(bad))
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == []


def test_metrics_from_file_match_the_architecture(tmp_path, mnist_small):
    """MACs/params read back from exported resnet8 (pads, residual adds, global pooling) equal the spec's."""
    from edgepack.toolkit.arch import get_arch
    from edgepack.toolkit.backends import get_backend
    from edgepack.toolkit.backends.torch.export import to_onnx
    spec = get_arch("resnet8")
    to_onnx(get_backend("torch").build(spec), tmp_path / "r8.onnx", spec.input_shape)
    m = file_metrics(tmp_path / "r8.onnx")
    c = spec.counts()
    assert m["macs"] == c["macs"]
    folded = c["trainable"] - c["non_trainable"]         # BatchNorm folded into the convs: gamma/beta/mean/var gone
    assert m["params"] in (c["trainable"], c["total"], folded)


def test_reports_render_from_records(bench_exports, tmp_path):
    results = _bench([bench_exports["onnx"], bench_exports["tflite"]])
    plots = plot_all([r.to_dict(raw=True) for r in results], tmp_path)
    assert {p.name for p in plots} == {"pareto_latency.png", "pareto_size.png", "latency_distribution.png", "confusion_matrices.png"}
    assert all(p.stat().st_size > 10_000 for p in plots)
    write_csv(results, tmp_path / "r.csv")
    header = (tmp_path / "r.csv").read_text().splitlines()[0]
    assert "latency_p50_ms" in header and "gzip_bytes" in header
    write_markdown(results, tmp_path / "report.md", plots, "edgepack bench ...")
    md = (tmp_path / "report.md").read_text()
    assert "## Machine" in md and "![pareto_latency](pareto_latency.png)" in md and "## Provenance" in md
    assert md.count("| onnxruntime |") == 1 and md.count("| litert |") == 1


def _fake(model, fmt, runtime, p50, params=1000, nnz=1000, int8=False, macs=10_000_000):
    return BenchResult(model, fmt, runtime, 1, latency_ms={"p50": p50}, params=params, nonzero_params=nnz, macs=macs,
                       input={"quantized": int8}, ops={"QuantizeLinear": 2} if int8 and fmt == "onnx" else {},
                       machine={"int8_dot_product": False}, record={"format": "tflite-int8" if int8 else "tflite"})


def test_diagnostics_explain_slow_int8_and_unhelpful_pruning():
    from edgepack.benchmarks.diagnostics import diagnose
    res = [_fake("/r/model.tflite", "tflite", "litert", 1.0), _fake("/r/model.int8.tflite", "tflite", "litert", 1.5, int8=True),
           _fake("/r/model.pruned.tflite", "tflite", "litert", 1.02, nnz=200)]
    res[2].record = {"format": "tflite"}
    diagnose(res)
    assert "slower than its fp32 sibling model.tflite" in res[1].diagnostics[0]
    assert "no int8 dot-product" in res[1].diagnostics[0]
    assert "dense kernels ignore unstructured zeros" in res[2].diagnostics[0]
    assert res[0].diagnostics == []


def test_cli_bench_end_to_end(bench_exports, tmp_path):
    r = subprocess.run([sys.executable, "-m", "edgepack.toolkit.cli", "bench", str(bench_exports["onnx"]), str(bench_exports["tflite"]),
                        str(tmp_path / "nope.tflite"), "--data", "mnist", "--data-dir", str(MNIST_DIR), "--runs", "10",
                        "--min-seconds", "0", "--json", str(tmp_path / "r.json"), "--csv", str(tmp_path / "r.csv"),
                        "--report", str(tmp_path / "rep")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 2                                  # one model failed ...
    assert "nope.tflite: file not found" in r.stderr and "Traceback" not in r.stderr
    rows = json.loads((tmp_path / "r.json").read_text())["results"]
    assert [x["ok"] for x in rows] == [True, True, False]      # ... the others were benchmarked and reported
    assert (tmp_path / "rep" / "report.md").is_file() and (tmp_path / "r.csv").is_file()


def test_metrics_of_sparse_encoded_tflite(exported, trained, mnist_small, tmp_path):
    """EXPERIMENTAL_SPARSITY stores weights behind DENSIFY ops: still counted, non-zeros from the stored values."""
    from edgepack.exporters.api import export_model
    from edgepack.exporters.base import ExportOptions
    from edgepack.toolkit.compress import compress_model
    from edgepack.toolkit.api import load_checkpoint
    from edgepack.toolkit.train import TrainConfig
    state, _ = compress_model(load_checkpoint(trained["keras"]).model, [{"technique": "prune", "sparsity": 0.8, "epochs": 1}],
                              mnist_small, train_config=TrainConfig(batch_size=256), verbose=False)
    (r,) = export_model(state.model, ["tflite-sparse"], mnist_small, tmp_path, ExportOptions(), verbose=False)
    m = file_metrics(r.path)
    assert "DENSIFY" in m["ops"] and m["params"] == 20410
    assert m["nonzero_params"] == pytest.approx(0.2 * 20410, rel=0.05)


def test_collect_publishes_a_run_and_keeps_hand_written_notes(tmp_path, monkeypatch):
    from tools import collect
    run = tmp_path / "runs" / "demo"
    (run / "b").mkdir(parents=True)
    (run / "b" / "pareto.png").write_bytes(b"\x89PNG fake")
    (run / "report.md").write_text("# demo\n![pareto](b/pareto.png)\n")
    (run / "results.json").write_text(json.dumps({"results": [{"file": "m.onnx", "latencies_ms": [0.1, 0.2], "p50_ms": 0.15}]}))
    (run / "results.csv").write_text("file,p50_ms\nm.onnx,0.15\n")
    monkeypatch.setattr(collect, "RESULTS", tmp_path / "results")
    dest = tmp_path / "results" / "demo"
    dest.mkdir(parents=True)
    (dest / "README.md").write_text("notes written by hand")
    (dest / "stale.png").write_bytes(b"old")
    assert collect.collect(run) == dest
    assert (dest / "README.md").read_text() == "notes written by hand"
    assert not (dest / "stale.png").exists() and (dest / "b" / "pareto.png").is_file()
    row = json.loads((dest / "results.json").read_text())["results"][0]
    assert "latencies_ms" not in row and row["p50_ms"] == 0.15


def test_litert_kernel_paths_are_timed_per_file(exported, tmp_path):
    from tools import litert_kernels
    out = tmp_path / "k.md"
    f = str(exported["keras"]["tflite-int8"].path)
    assert litert_kernels.main([f, "--runs", "20", "--out", str(out)]) == 0
    row = [l for l in out.read_text().splitlines() if l.startswith(f"| {f} |")][0]
    times = [float(c) for c in row.strip("|").split("|")[1:]]
    assert len(times) == 3 and all(t > 0 for t in times)
    assert times[2] > times[1]                       # reference kernels are slower than the optimized ones
    assert litert_kernels.main([str(tmp_path / "nope.tflite")]) == 2
    # the slow-int8 diagnostic backs its explanation with these kernel-path timings on the real files
    from edgepack.benchmarks.diagnostics import diagnose
    fp32, int8 = str(exported["keras"]["tflite"].path), str(exported["keras"]["tflite-int8"].path)
    res = [_fake(fp32, "tflite", "litert", 0.01), _fake(int8, "tflite", "litert", 0.03, int8=True)]
    diagnose(res)
    msg = res[1].diagnostics[0]
    assert "XNNPACK delegate speeds the fp32 file up" in msg and "on TFLite's built-in kernels alone int8/fp32 is x" in msg


def test_accuracy_intervals_and_the_machine_load_warning(tmp_path):
    from edgepack.benchmarks.report import busy_machine, wilson_interval, write_markdown
    lo, hi = wilson_interval(0.95, 360)
    assert 0.92 < lo < 0.95 < hi < 0.97                      # 360 images: about +-2.3 pp
    lo, hi = wilson_interval(0.95, 10000)
    assert hi - lo < 0.01
    row = {"model": "a/m.onnx", "format": "onnx", "runtime": "onnxruntime", "threads": 1, "ok": True, "error": None,
           "latency_ms": {"p50": 0.02, "p90": 0.03, "p99": 4.0, "std": 0.3, "min": 0.01, "mean": 0.05, "runs": 100},
           "batch": 1, "accuracy": 0.9, "test_images": 100, "machine": {}, "load_ms": 1.0, "size_bytes": 10, "gzip_bytes": 9,
           "params": 5, "nonzero_params": 5, "macs": 5, "peak_rss_mb": 1.0, "energy_mj": None}
    assert busy_machine(row)
    assert not busy_machine({**row, "latency_ms": {**row["latency_ms"], "p99": 0.05, "std": 0.01}})
    write_markdown([row], tmp_path / "r.md", [], "edgepack bench m.onnx")
    assert "Machine load warning" in (tmp_path / "r.md").read_text()


@pytest.mark.integration
@pytest.mark.slow
def test_torchscript_files_bench_and_full_pickles_say_what_would_work(tmp_path):
    import torch
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()
    torch.jit.script(net).save(str(tmp_path / "scripted.pt"))
    torch.save(net, tmp_path / "pickled.pt")
    ts, full = _bench([tmp_path / "scripted.pt", tmp_path / "pickled.pt"])
    assert ts.ok and ts.runtime == "torch" and ts.accuracy is not None and ts.runtime_info["settings"]["mode"] == "TorchScript"
    assert not full.ok and "full pickled model" in full.error and "TorchScript" in full.error


def test_int8_slower_note_does_not_depend_on_exact_nonzero_counts():
    """A trained fp32 model may hold a single exact zero: it is still the dense sibling of its int8 file."""
    from edgepack.benchmarks.diagnostics import diagnose
    from edgepack.benchmarks.harness import BenchResult
    common = {"machine": {"int8_dot_product": False}, "params": 20410}
    fp32 = BenchResult("d/model.onnx", "onnx", "onnxruntime", 1, latency_ms={"p50": 0.02}, nonzero_params=20409,
                       record={"format": "onnx", "parent": {"sha256": "x"}}, **common)
    int8 = BenchResult("d/model.int8.onnx", "onnx", "onnxruntime", 1, latency_ms={"p50": 0.04}, nonzero_params=20300,
                       record={"format": "onnx-int8", "parent": {"sha256": "x"}}, **common)
    diagnose([fp32, int8])
    assert any("slower" in d or "int8" in d for d in int8.diagnostics), int8.diagnostics


def test_text_table_keeps_large_numbers_apart():
    from edgepack.benchmarks.report import table_lines
    row = {"model": "m.onnx", "runtime": "onnxruntime", "threads": 1, "ok": True, "latency_ms": {"p50": 9.3, "p90": 9.7},
           "load_ms": 56.4, "size_bytes": 13960647, "gzip_bytes": 12877757, "params": 3475008, "nonzero_params": 3469760,
           "macs": 300774272, "peak_rss_mb": 63.1, "accuracy": None}
    cells = table_lines([row])[-1].split()
    assert ["13,960,647", "12,877,757", "3,475,008", "3,469,760", "300,774,272"] == cells[6:11]


@pytest.mark.slow
def test_a_bare_state_dict_says_what_would_work(tmp_path):
    import torch
    torch.save(torch.nn.Linear(4, 2).state_dict(), tmp_path / "weights.pt")
    (r,) = _bench([tmp_path / "weights.pt"])
    assert not r.ok and "keep the record weights.pt.json" in r.error and "--arch" not in r.error


def test_runtime_registry_is_keyed_by_format_and_runtime():
    from edgepack.runtimes import all_runtimes, format_of, runner_class, runtimes_for
    assert runtimes_for("m.onnx")[0] == "onnxruntime" and {"openvino", "openvino-f32"} <= set(runtimes_for("m.onnx"))
    assert runtimes_for("m.tflite") == ["litert", "tflite-micro"] and format_of("m.epk") == "edgepack-archive"
    assert runner_class("m.onnx", "openvino").extra == "openvino"
    with pytest.raises(OptionError, match="unknown runtime 'tvm'"):
        runner_class("m.onnx", "tvm")
    with pytest.raises(ModelError, match="openvino does not run tflite files"):
        runner_class("m.tflite", "openvino")
    with pytest.raises(OptionError, match="unknown runtime"):
        BenchSettings(runtimes=["tvm"])
    assert "litert" in all_runtimes()


def test_a_by_name_only_runtime_is_left_out_of_all_and_asks_for_its_extra(monkeypatch, tmp_path):
    """TFLite Micro runs a .tflite only when named: not in `--runtime all`, not among deploy's installed runtimes
    (even where its wheel is installed); named without the wheel, the error says which extra installs it; asked for
    more threads than it has, the error says so before anything loads."""
    from edgepack.benchmarks.harness import _runtimes_for
    from edgepack.runtimes import every_runtime_for, installed_runtimes, open_runner, runner_class
    from edgepack.toolkit.deploy.search import search_runtimes
    assert every_runtime_for("m.tflite") == ["litert"] and _runtimes_for(tmp_path / "m.tflite", ["all"]) == ["litert"]
    assert _runtimes_for(tmp_path / "m.tflite", ["tflite-micro"]) == ["tflite-micro"]
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: object())      # every package "installed"
    assert "tflite-micro" not in installed_runtimes("m.tflite") and "tflite-micro" not in search_runtimes("tflite-int8", None)
    assert "tflite-micro" in installed_runtimes("m.tflite", ["tflite-micro"])
    assert search_runtimes("tflite-int8", ["tflite-micro"]) == ["tflite-micro"]
    model = tmp_path / "m.tflite"
    model.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(24))
    monkeypatch.setitem(sys.modules, "tflite_micro", None)                          # not installed
    with pytest.raises(OptionError, match=r"needs the 'tflite_micro' package \(pip install 'edgepack\[micro\]'; "
                                          r"its wheels exist for Linux x86_64 only\)"):
        open_runner(model, runtime="tflite-micro")
    with pytest.raises(ModelError, match="TFLite Micro runs on at most 1 thread"):
        runner_class(model, "tflite-micro")(model, threads=2).load()


def test_one_onnx_file_on_every_runtime_side_by_side(exported, tmp_path):
    """The cross-consumer table: each runtime's accuracy and its top-1 agreement with the first, per file."""
    from edgepack.benchmarks.report import cross_runtime_rows, write_markdown
    onnx, tfl = exported["torch"]["onnx-int8"].path, exported["keras"]["tflite-int8"].path
    res = _bench([onnx, tfl], BenchSettings(runs=3, min_seconds=0, runtimes=["all"]))
    assert [(r.runtime, r.ok) for r in res] == [("onnxruntime", True), ("openvino", True), ("openvino-f32", True), ("litert", True)]
    cross = cross_runtime_rows(res)
    assert [c["runtime"] for c in cross] == ["onnxruntime", "openvino", "openvino-f32"]
    assert cross[0]["agreement"] == 1.0 and all(c["agreement"] > 0.98 for c in cross)
    # the default file has 7-bit weights: every consumer computes the same integers, to within requantization rounding
    # (the f32 hint keeps OpenVINO's float parts in f32 on every CPU; its default may use bf16 where AMX exists)
    assert abs(cross[2]["accuracy"] - cross[0]["accuracy"]) < 0.01
    write_markdown(res, tmp_path / "r.md", [], "edgepack bench --runtime all")
    assert "## Same file, several runtimes" in (tmp_path / "r.md").read_text()
    only = _bench([tfl], BenchSettings(runs=3, min_seconds=0, runtimes=["openvino"]))
    assert not only[0].ok and "none of the runtimes openvino runs .tflite files" in only[0].error


def test_an_exception_without_a_message_is_still_one_line(tmp_path, monkeypatch):
    """`str(e).splitlines()[0]` raised IndexError on an empty message; every one-line error uses first_line now."""
    import ai_edge_litert.interpreter as li
    from edgepack.runtimes.metrics import tflite_metrics
    from edgepack.toolkit.errors import first_line

    def broken(*a, **k):
        raise RuntimeError()
    monkeypatch.setattr(li, "Interpreter", broken)
    (tmp_path / "m.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(24))
    with pytest.raises(ModelError, match=r"not a loadable TFLite model \(RuntimeError\)"):
        tflite_metrics(tmp_path / "m.tflite")
    (tmp_path / "text.tflite").write_bytes(b"garbage\nmore")     # not a flatbuffer at all: said before any runtime opens it
    with pytest.raises(ModelError, match=r"not a TFLite model \(bytes 4-7 are b'age\\n'"):
        tflite_metrics(tmp_path / "text.tflite")
    assert first_line(ValueError()) == "ValueError" and first_line(ValueError("a\nb")) == "ValueError: a"


def test_macs_propagate_through_an_unfused_batchnorm(tmp_path):
    """tf2onnx leaves some BatchNormalization nodes unfused (Keras MobileNetV2): MACs were None after them."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from edgepack.runtimes.metrics import onnx_metrics
    c = np.ones(3, np.float32)
    inits = [numpy_helper.from_array(v, n) for v, n in ((c, "s"), (c * 0, "b"), (c * 0, "m"), (c, "v"))]
    inits.append(numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w"))
    g = helper.make_graph([helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"]),
                           helper.make_node("Conv", ["y", "w"], ["z"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4, 6, 6])], inits)
    data = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    assert onnx_metrics(data)["macs"] == 4 * 3 * 3 * 3 * 6 * 6


def test_budget_curve_plots_one_cpu_kind_and_leaves_untimed_runs_out(tmp_path):
    from edgepack.benchmarks.budget_curve import CurveError, load_runs, main, timed_runs
    csv_path = tmp_path / "budget.csv"
    csv_path.write_text("run,epochs,train_min,cpu,n,fp32,int8_onnx\n"
                        "short,10,,AMD EPYC,10000,0.77,0.77\n"          # no time recorded: not on a time axis
                        "long,80,74.0,AMD EPYC,10000,0.8356,0.8371\n"
                        "mid,30,20.5,AMD EPYC,10000,0.80,\n"            # a file not measured: that point is left out
                        "xeon,30,31.2,Intel Xeon,10000,0.8154,0.8144\n")
    rows, cols = load_runs(csv_path)
    assert cols == ["fp32", "int8_onnx"]
    cpu, runs = timed_runs(rows)                                    # the kind with the most timed runs, by time
    assert cpu == "AMD EPYC" and [r["run"] for r in runs] == ["mid", "long"]
    assert [r["run"] for r in timed_runs(rows, "xeon")[1]] == ["xeon"]
    with pytest.raises(CurveError, match="no timed run on a CPU matching 'arm'"):
        timed_runs(rows, "arm")
    assert main([str(csv_path)]) == 0 and (tmp_path / "budget.png").stat().st_size > 10_000
    assert main([str(csv_path), "--cpu", "xeon", "--out", str(tmp_path / "xeon.png")]) == 0   # one image per kind
    assert (tmp_path / "xeon.png").stat().st_size > 10_000
    assert main([str(csv_path), "--out", str(tmp_path / "xeon.jpg")]) == 2                     # PNG only, one line
    (tmp_path / "bad.csv").write_text("run,epochs,fp32\nx,1,0.5\n")
    assert main([str(tmp_path / "bad.csv")]) == 2                   # missing columns: a one-line error, exit 2
    with pytest.raises(CurveError, match="missing column"):
        load_runs(tmp_path / "bad.csv")


def test_budget_curve_headroom_keeps_stacked_labels_inside_the_axes():
    from edgepack.benchmarks.budget_curve import CurveError, headroom
    top = headroom(86.0, 20, 81.0, 200)             # a label 20 pt above 86% in a 200 pt tall axes from 81%
    assert top > 86.0
    assert 86.0 + 20 * (top - 81.0) / 200 == pytest.approx(top)   # the label's top lands exactly on the axis top
    assert headroom(86.0, 40, 81.0, 200) > top      # a higher stack needs more room
    with pytest.raises(CurveError, match="do not fit"):
        headroom(86.0, 200, 81.0, 200)

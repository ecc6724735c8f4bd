"""Never silently wrong, round two: figures that were wrong, checks that proved nothing, and failures that hung or
crashed for users' own models and data (each test failed before its fix)."""
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import MNIST_DIR, ROOT
from edgepack.toolkit.errors import EdgepackError, ModelError, OptionError


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "edgepack.toolkit.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=900, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


# ----------------------------------------------------------------------------------------------- unit tier
def test_an_onnx_with_external_data_is_sized_and_counted_with_its_weights(tmp_path):
    """torch.onnx.export writes large models as model.onnx + model.onnx.data: both files are the model."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgepack.benchmarks.harness import BenchSettings, benchmark
    rng = np.random.default_rng(0)
    w1, w2 = rng.normal(size=(784, 300)).astype(np.float32), rng.normal(size=(300, 10)).astype(np.float32)
    g = helper.make_graph([helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "w1"], ["h"]),
                           helper.make_node("MatMul", ["h", "w2"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 28, 28])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])],
                          [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(g, ir_version=8, opset_imports=[helper.make_opsetid("", 13)]), str(path),
              save_as_external_data=True, all_tensors_to_one_file=True, location="model.onnx.data", size_threshold=0)
    data = tmp_path / "model.onnx.data"
    assert data.stat().st_size >= w1.nbytes + w2.nbytes and path.stat().st_size < 1000
    (row,) = benchmark([path], "synthetic", settings=BenchSettings(runs=3, min_seconds=0), progress=lambda m: None)
    assert row.ok, row.error
    assert row.size_bytes == path.stat().st_size + data.stat().st_size
    assert row.params == w1.size + w2.size and row.nonzero_params == w1.size + w2.size
    assert row.external_data == ["model.onnx.data"] and row.macs == w1.size + w2.size
    data.unlink()
    (row,) = benchmark([path], "synthetic", settings=BenchSettings(runs=3, min_seconds=0), progress=lambda m: None)
    assert not row.ok and "model.onnx.data" in row.error and "not found" in row.error


def test_the_clear_margin_rule_without_evidence_says_so_and_judges_the_logits():
    from edgepack.toolkit.tasks import get_task
    from edgepack.toolkit.tasks.classification import compare, judge
    rng = np.random.default_rng(0)
    n, k = 600, 10
    ref = (1.0 + rng.normal(scale=0.01, size=(n, k))).astype(np.float32)  # a weak model: every input a near-tie
    y = rng.integers(0, k, n)
    bad = ref + rng.normal(scale=0.5, size=ref.shape).astype(np.float32)   # a broken file: 6 dB
    m = compare(bad, ref, y)
    assert m["confident"] == 0 and m["confident_agreement"] is None
    fails = judge(m, (None, None), 100.0)                                  # even with any accuracy drop allowed
    assert len(fails) == 1 and "logit SNR" in fails[0] and "no input is decided by a clear margin" in fails[0]
    good = ref + rng.normal(scale=0.03, size=ref.shape).astype(np.float32)  # int8-like noise: 30 dB, yet no margin
    m = compare(good, ref, y)
    assert m["confident"] == 0 and judge(m, (None, None), 1.0) == []
    notes = get_task("classification").notes(m, (None, None))
    assert any("no input is decided by a clear margin" in t and "logit SNR" in t for t in notes)


def test_a_source_at_chance_level_is_said_to_prove_nothing():
    from edgepack.toolkit.tasks import get_task
    from edgepack.toolkit.tasks.classification import compare
    rng = np.random.default_rng(1)
    ref = np.zeros((500, 10), np.float32)
    ref[:, 3] = 5.0                                                         # one class for every input
    y = rng.integers(0, 10, 500)
    m = compare(ref.copy(), ref, y)
    notes = get_task("classification").notes(m, (1e-4, 1.0))
    assert any("chance level" in t and "100%" in t for t in notes)
    ok = np.eye(10, dtype=np.float32)[y] * 5                               # a model that is right: nothing to say
    assert get_task("classification").notes(compare(ok, ok, y), (1e-4, 1.0)) == []


def test_a_wrong_ray_address_fails_in_seconds_naming_it():
    from edgepack.toolkit.executors import get_executor
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                                                               # a port nothing listens on
    t0 = time.time()
    with pytest.raises(OptionError, match=rf"--ray-address 127.0.0.1:{port}: no Ray cluster answers there"):
        get_executor("ray", f"127.0.0.1:{port}")
    assert time.time() - t0 < 10
    with pytest.raises(OptionError, match="expected HOST:PORT"):
        get_executor("ray", "nonsense")


def test_a_binary_recipe_is_one_line(tmp_path):
    from edgepack.toolkit.recipes.schema import load_recipe
    p = tmp_path / "r.toml"
    p.write_bytes(b"\x80\x81\xff\x00garbage")
    with pytest.raises(OptionError, match="not a text file"):
        load_recipe(p)


def test_a_full_disk_while_saving_a_checkpoint_is_one_line_and_leaves_no_debris(tmp_path, monkeypatch):
    import torch

    from edgepack.toolkit.backends.torch.model import save

    def full(obj, f, *a, **k):
        open(f, "wb").close()                                               # torch leaves a 0-byte file behind
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")
    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(EdgepackError, match=r"model.pt: cannot write it: no space left on the device"):
        save(torch.nn.Linear(2, 2), tmp_path / "model.pt")
    assert list(tmp_path.iterdir()) == []


def test_select_refuses_a_bundle_file_changed_since_the_bundle_was_written(tmp_path):
    """--select must never copy a file whose bytes are not the ones the device measured."""
    from edgepack.benchmarks.golden import BUNDLE_FILE, save_golden
    from edgepack.toolkit.deploy import select_for_device
    from edgepack.toolkit.record import sha256_file
    b = tmp_path / "bundle"
    (b / "a").mkdir(parents=True)
    (b / "b").mkdir()
    (b / "a" / "model.onnx").write_bytes(b"fast file")
    (b / "b" / "model.onnx").write_bytes(b"slow file")
    entries = [{"label": lab, "file": f"{lab}/model.onnx", "format": "onnx", "precision": "fp32", "float_layers": [],
                "sha256": sha256_file(b / lab / "model.onnx"), "size": 9, "accuracy": {"onnxruntime": 98.0},
                "kernel_classes": None, "golden": {}, "tolerance": {}} for lab in ("a", "b")]
    (b / BUNDLE_FILE).write_text(json.dumps({"edgepack_bundle_version": 1, "candidates": entries, "machine": {},
                                             "home_kernel_class": "exact"}))
    save_golden(b / "golden.npz", np.zeros((1, 2, 2, 1), np.float32), np.zeros(1), {"logits": np.zeros((1, 2))})
    machine = {"cpu": "test", "ort_int8_kernel_class": "exact"}
    dev = {"edgepack_bench_version": 1, "results": [
        {"model": f"{lab}/model.onnx", "runtime": "onnxruntime", "threads": 1, "ok": True, "machine": machine,
         "latency_ms": {"p50": p50}, "gzip_bytes": 9, "golden": {"sha256": e["sha256"], "passed": True}}
        for (lab, p50), e in zip((("a", 0.1), ("b", 0.2)), entries)]}
    (tmp_path / "dev.json").write_text(json.dumps(dev))
    (b / "a" / "model.onnx").write_bytes(b"replaced!")                      # the faster file, swapped after
    res = select_for_device(b, tmp_path / "dev.json", tmp_path / "out", progress=lambda m: None)
    assert res["best"].label == "b"
    a = next(r for r in res["rows"] if r.label == "a")
    assert "changed since the bundle was written" in a.error
    assert (tmp_path / "out" / "best.onnx").read_bytes() == b"slow file"


def test_a_failed_deploy_rewrites_its_report_and_keeps_the_earlier_pick(tmp_path):
    from edgepack.toolkit.deploy import choose
    from edgepack.toolkit.deploy.budgets import Budgets
    from edgepack.toolkit.deploy.select import Row
    out = tmp_path / "d"
    out.mkdir()
    f = tmp_path / "m.onnx"
    f.write_bytes(b"x" * 2000)
    (out / "best.onnx").write_bytes(b"an earlier pick")
    (out / "deploy.md").write_text("# old report: pick: old file\n")
    (out / "pareto.png").write_bytes(b"old plot")
    rows = [Row("onnx fp32", str(f), "onnx", "fp32", "onnxruntime", p50_ms=0.1, size=2000, accuracy=98.0, verified=True)]
    info = {"source": "m", "data": "mnist", "threads": 1, "machine": {"cpu": "test", "isa": []}}
    with pytest.raises(ModelError, match="no candidate meets the budgets"):
        choose(out, rows, Budgets(max_size=1000), 98.0, info, progress=lambda m: None)
    report = (out / "deploy.md").read_text()
    assert "old report" not in report and "**no pick**" in report and "size <= 1,000 B" in report
    assert (out / "best.onnx").read_bytes() == b"an earlier pick"
    assert not (out / "pareto.png").exists() or (out / "pareto.png").read_bytes() != b"old plot"


def test_messages_say_what_is_wrong_in_one_line(tmp_path, capsys, monkeypatch):
    from edgepack.toolkit.cli import main
    from edgepack.toolkit.compress.techniques import get_technique
    from edgepack.toolkit.data import load_dataset
    from edgepack.toolkit.errors import DataError
    with pytest.raises(OptionError, match="step 'prune': sparsity expects a number, got 'abc'"):
        get_technique("prune", sparsity="abc")
    assert main(["deploy", str(tmp_path / "m.pt"), "--out", str(tmp_path / "d"), "--executor", "nonsense"]) == 2
    assert "unknown executor 'nonsense'; expected one of local, ray" in capsys.readouterr().err
    for argv, says in ((["train", "--framework", "jax", "--arch", "x", "--data", "mnist", "--out", "o"],
                        "invalid choice: 'jax'"),
                       (["deploy", "m.pt", "--out", "d", "--max-size", "-5KB"], "written --flag=VALUE"),
                       (["report"], "required: merge")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and len(err.splitlines()) == 1 and says in err, err
    assert main(["train", "--framework", "torch", "--arch", "mnist-tutorial", "--data", "mnist", "--data-dir",
                 str(tmp_path / "nope"), "--out", str(tmp_path / "fresh")]) == 2
    assert "data directory does not exist" in capsys.readouterr().err
    assert not (tmp_path / "fresh").exists()                                 # no empty --out left behind
    monkeypatch.setenv("EDGEPACK_DATA", str(tmp_path / "missing"))
    with pytest.raises(DataError, match="EDGEPACK_DATA=.*missing: no such folder"):
        load_dataset("mnist")


def _enospc(*a, **k):
    import errno
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_leaves_no_empty_plot_or_report_under_its_final_name(tmp_path, monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from edgepack.toolkit.outputs import atomic_text, save_figure
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    real = Figure.savefig

    def half(self, fname, *a, **k):
        Path(fname).write_bytes(b"")                                    # what a full disk leaves: a 0-byte file
        _enospc()
    monkeypatch.setattr(Figure, "savefig", half)
    with pytest.raises(EdgepackError, match=r"pareto_latency.png: cannot write it: no space left on the device"):
        save_figure(fig, tmp_path / "pareto_latency.png")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(Figure, "savefig", real)
    save_figure(fig, tmp_path / "ok.png")
    assert (tmp_path / "ok.png").stat().st_size > 0 and [p.name for p in tmp_path.iterdir()] == ["ok.png"]
    (tmp_path / "r.json").write_text("earlier")
    monkeypatch.setattr(Path, "write_text", lambda self, *a, **k: (self.open("w").close(), _enospc()))
    with pytest.raises(EdgepackError, match="r.json: cannot write it: no space left"):
        atomic_text(tmp_path / "r.json", "new")
    monkeypatch.undo()
    assert (tmp_path / "r.json").read_text() == "earlier" and sorted(p.name for p in tmp_path.iterdir()) == ["ok.png", "r.json"]
    with pytest.raises(OptionError, match="is a folder; name a file"):
        atomic_text(tmp_path, "x")


def test_an_export_on_a_full_disk_leaves_no_partial_file(tmp_path, monkeypatch):
    import torch

    from edgepack.exporters.api import export_model
    from edgepack.exporters.registry import get_exporter
    from edgepack.toolkit.data import Dataset
    rng = np.random.default_rng(0)
    ds = Dataset("fake", "test", rng.integers(0, 255, (60, 4, 4, 1), dtype=np.uint8), np.arange(60) % 3,
                 rng.integers(0, 255, (30, 4, 4, 1), dtype=np.uint8), np.arange(30) % 3, ["a", "b", "c"], (0.5,), (0.25,))
    exp = get_exporter("onnx")

    def half(ctx, path):
        Path(path).write_bytes(b"half")
        _enospc()
    monkeypatch.setattr(type(exp), "export", lambda self, ctx, path: half(ctx, path))
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).eval()
    with pytest.raises(EdgepackError, match=r"model.onnx: cannot write it: no space left"):
        export_model(net, ["onnx"], ds, tmp_path / "x", verbose=False)
    assert [p.name for p in (tmp_path / "x").iterdir()] == []


# ----------------------------------------------------------------------------------------------- integration tier
def test_bench_finds_a_custom_named_data_set_through_the_record(tmp_path):
    """train --data NAME --data-dir DIR, export, then bench without --data-dir: the record's folder is used."""
    import shutil

    from edgepack.benchmarks.harness import BenchSettings, benchmark
    from edgepack.exporters.api import export_checkpoint
    from edgepack.exporters.base import ExportOptions
    from edgepack.toolkit.api import train
    from edgepack.toolkit.train import TrainConfig
    mine = tmp_path / "mydigits"
    shutil.copytree(MNIST_DIR, mine)
    res = train("torch", "mnist-tutorial", "mydigits", str(mine), out=tmp_path / "ckpt",
                config=TrainConfig(epochs=1, batch_size=128), verbose=False)
    (r,) = export_checkpoint(res.checkpoint, ["onnx"], tmp_path / "x", options=ExportOptions(verify_images=200),
                             verbose=False)
    assert r.ok, r.error
    (row,) = benchmark([r.path], None, settings=BenchSettings(runs=3, min_seconds=0), progress=lambda m: None)
    assert row.ok, row.error
    assert row.data["name"] == "mydigits" and row.accuracy == pytest.approx(res.metrics["test_accuracy"], abs=1e-3)


def test_a_model_whose_outputs_do_not_fit_the_data_is_refused_by_export_and_compress(tmp_path):
    import torch

    from edgepack.toolkit.arch import get_arch
    from edgepack.toolkit.backends import get_backend
    from edgepack.toolkit.compress import compress
    from edgepack.toolkit.record import ArtifactRecord
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 5)).eval()
    torch.onnx.export(net, (torch.zeros(1, 1, 28, 28),), str(tmp_path / "five.onnx"), dynamo=False)
    r = _cli("export", tmp_path / "five.onnx", "--to", "onnx", "--data", "mnist", "--data-dir", MNIST_DIR,
             "--out", tmp_path / "x")
    assert r.returncode == 2 and "the model has 5 outputs but mnist has 10 classes" in r.stderr, r.stderr[-1500:]
    spec = get_arch("mnist-tutorial", num_classes=5)
    backend = get_backend("torch")
    ckpt = backend.save(backend.build(spec), tmp_path / "five" / "model.pt") if (tmp_path / "five").mkdir() is None else None
    ArtifactRecord("checkpoint", "model.pt", framework="torch", format="torch", arch=spec.to_dict(),
                   dataset={"name": "mnist"}).save(ckpt)
    with pytest.raises(ModelError, match="the model has 5 outputs but mnist has 10 classes"):
        compress(ckpt, [{"technique": "prune", "sparsity": 0.5, "epochs": 1}], tmp_path / "c", "mnist", str(MNIST_DIR),
                 verbose=False)


def test_a_size_budget_nothing_meets_is_blamed_on_the_size_not_the_runtime(trained, tmp_path):
    """The fp32 reference is measured even over --max-size, so the error names the budget that failed."""
    r = _cli("deploy", trained["keras"], "--data-dir", MNIST_DIR, "--out", tmp_path / "d", "--runtime", "litert",
             "--no-mixed", "--max-size", "1KB", "--max-accuracy-drop", "0.5")
    assert r.returncode == 2, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert "no candidate meets the budgets (size <= 1,000 B" in last and "too large" in last, last
    assert "no fp32 file was measured" not in r.stderr
    assert "**no pick**" in (tmp_path / "d" / "deploy.md").read_text()


@pytest.mark.integration
def test_a_keras_applications_model_exports_to_int8_onnx_without_a_warning_per_batchnorm(tmp_path, capfd):
    """ORT warns once per rank-1 weight it cannot quantize per channel (BatchNorm vectors tf2onnx leaves): collected
    into the manifest instead of a dozen WARNING:root lines."""
    from edgepack.exporters.api import export_model
    from edgepack.exporters.base import ExportOptions
    from edgepack.toolkit.backends.keras.model import keras
    from edgepack.toolkit.data import Dataset
    rng = np.random.default_rng(0)
    ds = Dataset("fake", "test", rng.integers(0, 255, (200, 32, 32, 3), dtype=np.uint8), np.arange(200) % 10,
                 rng.integers(0, 255, (100, 32, 32, 3), dtype=np.uint8), np.arange(100) % 10,
                 [str(i) for i in range(10)], (0.5,) * 3, (0.25,) * 3)
    m = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), classes=10, classifier_activation=None,
                                       alpha=0.35)
    (r,) = export_model(m, ["onnx-int8"], ds, tmp_path, ExportOptions(verify_images=100, calibration_samples=20,
                                                                         verify_max_drop=100), verbose=False)
    out = capfd.readouterr()
    assert "out-of-range for weight" not in out.err + out.out
    assert r.path is not None and len(r.record.steps[-1]["details"]["per_tensor_fallbacks"]) > 0


def test_deploy_says_why_attribution_proposed_no_mixed_file():
    from edgepack.exporters.mixed import Attribution, LayerCost, propose, why_no_proposal
    flat = Attribution("onnx-int8", "onnxruntime", 1, 500, 100.0, 0.5, 0.98, 1.0,
                       [LayerCost("conv0", "Conv", 100.2, -0.2, 0.49, 0.01, 0.98),
                        LayerCost("fc", "Gemm", 99.9, 0.1, 0.48, 0.02, 0.98)])
    assert propose(flat) == []
    why = why_no_proposal(flat)
    assert "no mixed-precision candidate from onnx-int8" in why and "faster by more than 3.0 us" in why
    fast = Attribution("onnx-int8", "onnxruntime", 1, 500, 100.0, 0.5, 0.98, 1.0,
                       [LayerCost("conv0", "Conv", 80.0, 20.0, 0.49, 0.01, 0.98),
                        LayerCost("fc", "Gemm", 99.9, 0.1, 0.48, 0.02, 0.98)])
    assert propose(fast) == [["conv0"]] and why_no_proposal(fast) is None


@pytest.mark.integration
def test_a_torchvision_linear_head_split_by_onnx2tf_can_stay_float(tmp_path):
    """onnx2tf gives mobilenet_v3_small's classifier Linear two FULLY_CONNECTED ops; keeping it float keeps both
    (was: 'matches no layer of the source model', and no mixed candidate at all)."""
    import torch
    import torchvision

    from edgepack.exporters.api import export_model
    from edgepack.exporters.base import ExportOptions
    from edgepack.toolkit.data import Dataset
    rng = np.random.default_rng(0)
    ds = Dataset("fake", "test", rng.integers(0, 255, (120, 32, 32, 3), dtype=np.uint8), np.arange(120) % 10,
                 rng.integers(0, 255, (60, 32, 32, 3), dtype=np.uint8), np.arange(60) % 10,
                 [str(i) for i in range(10)], (0.5,) * 3, (0.25,) * 3)
    torch.manual_seed(0)
    m = torchvision.models.mobilenet_v3_small(num_classes=10).eval()
    (r,) = export_model(m, ["tflite-int8"], ds, tmp_path, ExportOptions(verify_images=60, calibration_samples=20,
                                                                       keep_float="classifier.0"), verbose=False)
    assert r.record is not None, r.error                      # placed and written (an untrained net may fail its check)
    details = r.record.steps[-1]["details"]
    assert details["float_layers"] == ["classifier.0"] and len(details["float_nodes"]) == 2


def test_progress_bars_stay_out_of_logs(monkeypatch):
    import io

    from edgepack.toolkit.progress import progress

    class Tty(io.StringIO):
        def isatty(self):
            return True
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    items = [1, 2, 3]
    assert progress(items, total=3, desc="epoch 1/1") is items               # a log: the plain iterable, no bar
    monkeypatch.setattr(sys, "stderr", Tty())
    assert list(progress(items, total=3, desc="epoch 1/1")) == items and progress(items) is not items


def test_report_merge_puts_devices_timed_at_different_thread_counts_in_one_row(tmp_path):
    from edgepack.toolkit.deploy.fleet import merge

    def device(name, cpu, threads, p50):
        rows = [{"model": f"/x/{f}", "format": "onnx", "runtime": "onnxruntime", "threads": threads, "ok": True,
                 "machine": {"cpu": cpu, "isa": []}, "latency_ms": {"p50": p50 * k}, "size_bytes": 1000 * k,
                 "gzip_bytes": 900 * k, "accuracy": 0.98, "test_images": 100,
                 "record": {"sizes": {"sha256": f"sha-{f}"}, "steps": [{"precision": "fp32"}]}}
                for k, f in ((1, "a.onnx"), (2, "b.onnx"))]
        (tmp_path / name).write_text(json.dumps({"edgepack_bench_version": 1, "results": rows}))
        return str(tmp_path / name)
    merge([device("pi.json", "Cortex-A76", 4, 0.5), device("laptop.json", "Core i7", 1, 0.1)], tmp_path / "fleet",
          progress=lambda m: None)
    md = (tmp_path / "fleet" / "fleet.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| x/a.onnx"))
    assert "0.5000 (4 thr)" in row and "0.1000 (1 thr)" in row and "each its own" in row, row

"""`edgepack deploy`: budgets with units, the pick and its reasons, layer naming for mixed precision, bad input in
one line with nothing lost, and (with data) the whole flow: candidates -> mixed precision found by measurement ->
pick; bundle -> device bench with golden vectors in a runtime-only venv -> select, two devices, two picks."""
import copy
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import MNIST_DIR, ROOT
from edgepack.toolkit.deploy.budgets import Budgets, parse_accuracy, parse_drop, parse_latency, parse_size
from edgepack.toolkit.deploy.select import Row, pick
from edgepack.toolkit.errors import ModelError, OptionError


# ----------------------------------------------------------------------------------------------- unit tier
@pytest.mark.parametrize("text,expected", [("120000", 120000), ("120KB", 120000), ("120 KiB", 122880), ("1.5MB", 1500000)])
def test_size_units(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text,expected", [("0.5", 0.5), ("0.5ms", 0.5), ("200us", 0.2), ("1s", 1000.0)])
def test_latency_units(text, expected):
    assert parse_latency(text) == pytest.approx(expected)


@pytest.mark.parametrize("fn,text,says", [
    (parse_size, "5ms", "a file size"), (parse_latency, "100KB", "a time in ms"),
    (parse_drop, "0.5%", "percentage points"), (parse_accuracy, "0.85", "looks like a fraction"),
    (parse_accuracy, "101", "(0, 100]"), (parse_size, "lots", "a file size")])
def test_budget_in_the_wrong_unit_is_refused(fn, text, says):
    with pytest.raises(OptionError) as e:
        fn(text)
    assert says in str(e.value)


def test_accuracy_units():
    assert parse_drop("0.5pp") == 0.5 and parse_drop("1") == 1.0
    assert parse_accuracy("98.5%") == 98.5 and parse_accuracy("98.5") == 98.5


def _rows():
    return [Row("fp32", "a.onnx", "onnx", "fp32", "onnxruntime", p50_ms=0.024, size=83_000, accuracy=98.16, verified=True),
            Row("mixed", "b.tflite", "tflite-int8", "mixed", "litert", p50_ms=0.012, size=23_700, accuracy=98.12,
                verified=True, float_layers=["conv0"]),
            Row("int8", "c.tflite", "tflite-int8", "int8", "litert", p50_ms=0.035, size=23_400, accuracy=97.20, verified=True),
            Row("broken", "d.onnx", "onnx-int8", "int8", "onnxruntime", p50_ms=0.001, size=100, accuracy=99.0,
                verified=False, error="verification failed: accuracy")]


def test_pick_fastest_within_budgets_with_reasons_for_the_rest():
    rows = _rows()
    best = pick(rows, Budgets(max_accuracy_drop=0.5), reference=98.16)
    assert best.label == "mixed" and best.picked
    by = {r.label: r for r in rows}
    assert any("below the accuracy floor" in x for x in by["int8"].reasons)
    assert by["broken"].reasons and by["broken"].reasons[0].startswith("failed")   # the fastest, but failed: never picked
    assert pick(_rows(), Budgets(prefer="size", min_accuracy=97), None).label == "int8"
    assert pick(_rows(), Budgets(max_size=50_000, max_latency_ms=0.02), None).label == "mixed"


def test_a_tensor_arena_budget_judges_the_arena_measured_and_never_an_unmeasured_one(tmp_path):
    """A microcontroller's RAM: --max-arena judges the tensor arena TFLite Micro measured; a row of a runtime that
    measures none is rejected for it (never waved through); the table gets the column where an arena was measured;
    asked without a runtime that measures arenas, deploy refuses before any work."""
    from edgepack.toolkit.deploy import deploy
    from edgepack.runtimes.base import arena_of
    from edgepack.toolkit.deploy.report import table
    from edgepack.toolkit.deploy.select import host_timing_note
    micro = [Row("int8", "c.tflite", "tflite-int8", "int8", "tflite-micro", p50_ms=1.1, size=23_700, accuracy=97.2,
                 verified=True, arena=arena_of({"settings": {"tensor_arena_bytes": 11_984}})),
             Row("fp32", "a.tflite", "tflite", "fp32", "tflite-micro", p50_ms=0.9, size=84_000, accuracy=97.5,
                 verified=True, arena=40_000),
             Row("int8", "c.tflite", "tflite-int8", "int8", "litert", p50_ms=0.1, size=23_700, accuracy=97.2, verified=True)]
    best = pick(micro, Budgets(max_arena=16 * 1024), None)
    assert (best.runtime, best.label) == ("tflite-micro", "int8")
    assert "not a board's" in host_timing_note(best, Budgets()) and host_timing_note(best, Budgets(prefer="size")) is None
    assert host_timing_note(micro[2], Budgets()) is None                     # LiteRT's latency is this CPU's own
    assert micro[1].reasons == ["tensor arena too large (40,000 > 16,384 B)"]
    assert micro[2].reasons == ["tensor arena not measured in litert (measured in: tflite-micro)"]
    lines = table(micro)
    assert "tensor arena B" in lines[0] and "| 11,984 | 97.20% | **picked** |" in "\n".join(lines)
    assert "tensor arena" not in table(_rows())[0]
    with pytest.raises(ModelError, match="tensor arena too large"):
        pick(micro[1:2], Budgets(max_arena=1000), None)
    with pytest.raises(OptionError, match="--max-arena judges the tensor arena a runtime measures"):
        deploy(tmp_path / "missing.pt", tmp_path / "out", budgets=Budgets(max_arena=1000), runtimes=["litert"])
    assert not (tmp_path / "out").exists()


def test_no_candidate_meets_the_budget_names_why():
    with pytest.raises(ModelError) as e:
        pick(_rows(), Budgets(max_size=1000, max_accuracy_drop=0.5), reference=98.16)
    msg = str(e.value)
    assert "no candidate meets the budgets" in msg and "too large" in msg and "\n" not in msg


def test_a_drop_budget_without_a_measured_reference_is_refused_not_ignored():
    with pytest.raises(ModelError, match="needs the fp32 reference accuracy"):
        pick(_rows(), Budgets(max_accuracy_drop=0.5), reference=None)


def test_candidates_are_made_only_for_the_runtimes_asked_for():
    from edgepack.runtimes import installed_runtimes
    from edgepack.toolkit.deploy import BASE_CANDIDATES, candidates_for
    here = [c for c in BASE_CANDIDATES if installed_runtimes("x." + c[1].split("-")[0])]   # formats runnable here
    assert candidates_for(None) == candidates_for(["all"]) == here
    assert {c[1] for c in here} >= {"onnx", "onnx-int8", "tflite", "tflite-int8", "pte", "pte-int8"}
    assert {c[1] for c in candidates_for(["litert"])} == {"tflite", "tflite-fp16", "tflite-dynamic", "tflite-int8"}
    assert {c[0] for c in candidates_for(["onnxruntime"])} == {"onnx-fp32", "onnx-int8", "onnx-int8-full-range",
                                                               "onnx-dynamic"}


def test_layers_named_as_the_source_and_matched_in_tflite(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgepack.exporters.layers import match_tflite, onnx_layers, resolve
    w1 = numpy_helper.from_array(np.zeros((4, 1, 3, 3), np.float32), "stem.conv0.weight")
    w2 = numpy_helper.from_array(np.zeros((16, 10), np.float32), "model/dense3/MatMul/ReadVariableOp:0")
    g = helper.make_graph([helper.make_node("Conv", ["x", "stem.conv0.weight"], ["c"], name="node_Conv_1"),
                           helper.make_node("Flatten", ["c"], ["f"]),
                           helper.make_node("MatMul", ["f", w2.name], ["y"], name="model/dense3/MatMul")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], [w1, w2])
    onnx.save(helper.make_model(g), tmp_path / "m.onnx")
    layers = onnx_layers(tmp_path / "m.onnx")
    assert [(x.name, x.op, x.node) for x in layers] == [("stem.conv0", "Conv", "node_Conv_1"),
                                                      ("dense3", "MatMul", "model/dense3/MatMul")]
    assert [x.name for x in resolve(layers, ["conv0"])] == ["stem.conv0"]          # a unique suffix is enough
    with pytest.raises(OptionError, match="not a compute layer.*stem.conv0, dense3"):
        resolve(layers, ["conv9"])
    ops = [{"op": "CONV_2D", "tensor": "t/conv", "out_channels": 4, "weight_count": 36},
           {"op": "FULLY_CONNECTED", "tensor": "t/fc", "out_channels": 10, "weight_count": 160}]
    assert match_tflite(layers, ops) == {"stem.conv0": ["t/conv"], "dense3": ["t/fc"]}
    # an op no layer has stays int8 (the rest is still placed); a layer split into two ops keeps both float
    extra = {"op": "CONV_2D", "tensor": "t/x", "out_channels": 8, "weight_count": 72}
    split = {"op": "FULLY_CONNECTED", "tensor": "t/fc2", "out_channels": 10, "weight_count": 160}
    assert match_tflite(layers, ops + [extra, split]) == {"stem.conv0": ["t/conv"], "dense3": ["t/fc", "t/fc2"]}
    from edgepack.exporters.layers import nodes_of
    assert nodes_of(match_tflite(layers, ops + [split]), resolve(layers, ["dense3"])) == ["t/fc", "t/fc2"]
    with pytest.raises(ModelError, match="stem.conv0 of the source match no compute op"):
        nodes_of(match_tflite(layers, ops[1:]), resolve(layers, ["conv0"]))


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "edgepack.toolkit.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)})


def _one_line_error(r, *words):
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [x for x in r.stderr.strip().splitlines() if x.startswith("edgepack: error")]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    for w in words:
        assert w in lines[0], lines[0]


def test_bad_input_is_one_line_and_keeps_earlier_results(tmp_path):
    import onnx
    from onnx import TensorProto, helper
    out = tmp_path / "out"
    out.mkdir()
    (out / "best.tflite").write_bytes(b"earlier pick")
    _one_line_error(_cli("deploy", tmp_path / "none.pt", "--out", out, "--max-size", "5ms"), "--max-size", "file size")
    _one_line_error(_cli("deploy", tmp_path / "none.pt", "--out", out, "--min-accuracy", "0.985"), "fraction")
    _one_line_error(_cli("deploy", tmp_path / "none.pt", "--out", out), "not found")
    _one_line_error(_cli("deploy", tmp_path / "none.pt", "--out", out, "--calibration-samples", "0"),
                    "--calibration-samples must be >= 1")
    _one_line_error(_cli("deploy", tmp_path / "none.pt", "--out", out, "--runtime", "tvm"), "unknown runtime", "tvm")
    g = helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"])], "two",
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in "ab"],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(g, ir_version=8, opset_imports=[helper.make_opsetid("", 13)]), tmp_path / "two.onnx")
    _one_line_error(_cli("deploy", tmp_path / "two.onnx", "--out", out), "2 inputs")
    assert (out / "best.tflite").read_bytes() == b"earlier pick"
    (tmp_path / "notbench.json").write_text('{"a": 1}')
    _one_line_error(_cli("report", "merge", tmp_path / "none.json", tmp_path / "notbench.json", "--out", out), "none.json: not found")
    _one_line_error(_cli("report", "merge", tmp_path / "notbench.json", tmp_path / "notbench.json", "--out", out),
                    "not an `edgepack bench --json` result")
    _one_line_error(_cli("report", "merge", tmp_path / "notbench.json", "--out", out), "at least two devices")


# ----------------------------------------------------------------------------------------------- integration tier
@pytest.fixture(scope="module")
def deployed(trained, tmp_path_factory):
    """The Keras mnist-tutorial checkpoint deployed with the issue's budget (mixed precision included)."""
    from edgepack.toolkit.deploy import deploy
    out = tmp_path_factory.mktemp("deploy")
    res = deploy(trained["keras"], out, "mnist", str(MNIST_DIR), Budgets(max_accuracy_drop=0.5),
                 runtimes=["onnxruntime", "litert"], progress=lambda m: None)
    return out, res


def test_deploy_picks_a_verified_file_no_slower_than_fp32(deployed):
    out, res = deployed
    best, rows = res["best"], res["rows"]
    fp32 = [r for r in rows if r.precision == "fp32" and not r.error]
    assert fp32 and best.p50_ms <= min(r.p50_ms for r in fp32)
    reference = json.loads((out / "deploy.json").read_text())["reference_accuracy"]
    assert best.accuracy >= reference - 0.5
    suffix = os.path.splitext(best.file)[1]
    assert (out / f"best{suffix}").read_bytes() == open(best.file, "rb").read()
    manifest = json.loads((out / f"best{suffix}.json").read_text())
    assert manifest["verification"]["passed"] and manifest["deploy"]["picked"]["label"] == best.label
    assert manifest["deploy"]["machine"]["cpu"]
    # mixed precision was found by measurement: the attribution ran and proposed float layers that were exported
    mixed = [r for r in rows if r.precision == "mixed"]
    assert mixed and all(r.float_layers for r in mixed)
    report = (out / "deploy.md").read_text()
    assert "Per-layer attribution" in report and "conv0" in report and "dense3" in report
    assert (out / "pareto.png").stat().st_size > 10_000
    labels = {r.label for r in rows}
    for want in ("onnx fp32", "tflite fp32", "tflite fp16", "tflite dynamic-range", "tflite int8",
                 "onnx int8 (portable 7-bit weights)", "onnx int8 (full-range weights)", "onnx dynamic-range"):
        assert want in labels


def test_deploy_nothing_within_budget_fails_in_one_line_keeping_the_pick(deployed, trained, tmp_path):
    out, res = deployed
    before = {p.name: p.read_bytes() for p in out.glob("best.*")}
    r = _cli("deploy", trained["keras"], "--data", "mnist", "--data-dir", MNIST_DIR, "--out", out, "--no-mixed",
             "--max-size", "2KB")
    _one_line_error(r, "no candidate meets the budgets", "too large")
    assert {p.name: p.read_bytes() for p in out.glob("best.*")} == before
    table = (out / "candidates.md").read_text()
    assert "too large" in table and "not timed" not in table         # over the size budget: judged without a benchmark


def meta_reference(meta):
    return next(c["accuracy"]["onnxruntime"] for c in meta["candidates"] if c["file"].startswith("candidates/onnx-fp32/"))


@pytest.mark.slow
def test_bundle_device_bench_and_select_two_devices(trained, runtime_venv, tmp_path):
    bundle = tmp_path / "bundle"
    r = _cli("deploy", trained["torch"], "--data", "mnist", "--data-dir", MNIST_DIR, "--out", bundle, "--no-mixed",
             "--candidates-only", "--runtime", "onnxruntime,litert")
    assert r.returncode == 0, r.stderr[-3000:]
    meta = json.loads((bundle / "bundle.json").read_text())
    assert meta["golden_images"] == 32 and len(meta["candidates"]) >= 6
    # the "device": only the runtime extra, no data set; the golden vectors are checked there
    dev = subprocess.run([str(runtime_venv), "-m", "edgepack.toolkit.cli", "bench", str(bundle), "--runs", "20", "--min-seconds",
                          "0", "--json", str(tmp_path / "dev-a.json")], capture_output=True, text=True, timeout=900,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path)
    assert dev.returncode == 0, dev.stderr[-3000:]
    rows = json.loads((tmp_path / "dev-a.json").read_text())["results"]
    assert rows and all(x["golden"] is not None for x in rows)
    # the bundle carries the test set: the device measured each file's accuracy on all of it, and --select uses that
    sent = meta["test_set"]
    assert sent["items"] == 10_000 and (bundle / sent["folder"]).is_dir()
    assert all(x["test_images"] == 10_000 and x["data"]["test_sha256"] == sent["test_sha256"] for x in rows if x["ok"])
    assert all(x["golden"]["passed"] for x in rows if "full-range" not in x["model"])
    pick_a = _cli("deploy", "--select", tmp_path / "dev-a.json", bundle, "--out", tmp_path / "a", "--max-accuracy-drop", "1")
    assert pick_a.returncode == 0, pick_a.stderr[-3000:]
    a_info = json.loads((tmp_path / "a" / "deploy.json").read_text())
    a = a_info["picked"]
    assert a["accuracy_from"] == "full test set, measured on the device"
    assert a["accuracy"] == 100 * next(x["accuracy"] for x in rows if x["golden"]["sha256"] == a["sha256"]
                                       and x["runtime"] == a["runtime"])
    # the drop budget is measured from the bundle's fp32 .onnx accuracy (it was silently not applied before)
    assert a_info["reference_accuracy"] == meta_reference(meta) and a["accuracy"] >= a_info["reference_accuracy"] - 1
    # a second device (a fixture made from the first: another CPU on which the first pick runs 10x slower, and a
    # file whose golden vectors fail there): the same bundle must give another pick, and the failing file is rejected
    data = json.loads((tmp_path / "dev-a.json").read_text())
    data_b = copy.deepcopy(data)
    for x in data_b["results"]:
        x["machine"] = {**x["machine"], "cpu": "second device (test fixture)"}
        if x["golden"]["sha256"] == a["sha256"] and x["runtime"] == a["runtime"]:
            x["latency_ms"]["p50"] *= 10
    failing = next(x for x in data_b["results"] if x["golden"]["sha256"] != a["sha256"])
    failing["golden"] = {**failing["golden"], "passed": False, "error": "golden vectors not reproduced (fixture)"}
    (tmp_path / "dev-b.json").write_text(json.dumps(data_b))
    pick_b = _cli("deploy", "--select", tmp_path / "dev-b.json", bundle, "--out", tmp_path / "b", "--max-accuracy-drop", "1")
    assert pick_b.returncode == 0, pick_b.stderr[-3000:]
    b = json.loads((tmp_path / "b" / "deploy.json").read_text())
    assert (b["picked"]["sha256"], b["picked"]["runtime"]) != (a["sha256"], a["runtime"])
    rejected = [c for c in b["candidates"] if c["sha256"] == failing["golden"]["sha256"] and c["runtime"] == failing["runtime"]]
    assert rejected and "on the device" in rejected[0]["reasons"][0]
    assert "second device (test fixture)" in (tmp_path / "b" / "deploy.md").read_text()
    # the fleet report: both devices side by side, files matched by content, a pick and a Pareto plot per device
    fleet = _cli("report", "merge", tmp_path / "dev-a.json", tmp_path / "dev-b.json", "--out", tmp_path / "fleet")
    assert fleet.returncode == 0, fleet.stderr[-3000:]
    merged = json.loads((tmp_path / "fleet" / "fleet.json").read_text())["devices"]
    assert [d["machine"]["cpu"] for d in merged] == [data["results"][0]["machine"]["cpu"], "second device (test fixture)"]
    assert all(d["label"].startswith(d["machine"]["cpu"] + " (") for d in merged)
    fastest_a = min((x for x in data["results"] if x["ok"] and x["golden"]["passed"]), key=lambda x: x["latency_ms"]["p50"])
    p1, p2 = merged[0]["picked"], merged[1]["picked"]
    assert (p1["sha256"], p1["runtime"]) == (fastest_a["golden"]["sha256"], fastest_a["runtime"])
    assert (p2["sha256"], p2["runtime"]) != (failing["golden"]["sha256"], failing["runtime"])
    if (p1["sha256"], p1["runtime"]) == (a["sha256"], a["runtime"]):        # 10x slower on the second device
        assert (p2["sha256"], p2["runtime"]) != (p1["sha256"], p1["runtime"])
    md = (tmp_path / "fleet" / "fleet.md").read_text()
    assert "dev 1 p50 ms | dev 1 accuracy | dev 2 p50 ms" in md and "golden vectors: golden vectors not reproduced" in md
    assert (tmp_path / "fleet" / "pareto-device1.png").is_file() and (tmp_path / "fleet" / "pareto-device2.png").is_file()
    # a tampered file fails its golden check on the device
    victim = bundle / meta["candidates"][0]["file"]
    victim.write_bytes(victim.read_bytes()[:-8] + b"\0" * 8)
    from edgepack.benchmarks.golden import check, read_bundle
    assert "changed since the bundle was written" in check(read_bundle(bundle), meta["candidates"][0])["error"]

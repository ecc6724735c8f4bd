"""The mixed-precision search of `edgepack deploy --mixed-search` (edgepack.toolkit.deploy.search).

Unit tier: the loop against a synthetic model run by a synthetic executor (each layer kept float saves or costs a known
time and removes a known accuracy loss; every timing batch is slower than the last by a drift factor the anchors must
remove), so what the search should find is known exactly. Integration tier: a real deploy whose trials run as Ray tasks.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgepack.toolkit.deploy import search as S
from edgepack.toolkit.deploy.budgets import Budgets
from edgepack.toolkit.errors import OptionError
from edgepack.toolkit.executors import Executor

ROOT = Path(__file__).resolve().parents[1]
SRC = S.Source("model.pt", "mnist", None)


class Synthetic(Executor):
    """Files of a synthetic model: p50 = 100 us (110 for tflite, +`slower[runtime]`) minus what each float layer
    saves (times `speedup[runtime]`); accuracy = 99% minus the loss of each layer left int8; size grows 1,000 B per
    float layer. Batch k's timings are scaled by (1 + drift * k)."""
    name = "synthetic"

    def __init__(self, saves: dict, losses: dict, drift: float = 0.5, slower=None, speedup=None):
        self.saves, self.losses, self.drift = saves, losses, drift
        self.slower, self.speedup = slower or {}, speedup or {}
        self.files, self.exported, self.batches = {}, [], []

    def true_p50(self, path, runtime=""):
        fmt, floats = self.files[path]
        return (100.0 + (10 if fmt == "tflite-int8" else 0) + self.slower.get(runtime, 0)
                - self.speedup.get(runtime, 1) * sum(self.saves[layer] for layer in floats))

    def map(self, fn, jobs, bench=False):
        if fn is S.export_trial:
            assert not bench
            out = []
            for _, fmt, floats, path, runtime in jobs:
                self.files[path] = (fmt, tuple(floats))
                self.exported.append((fmt, tuple(floats)))
                acc = 99.0 - sum(v for k, v in self.losses.items() if k not in floats)
                out.append({"size": 10_000 + 1_000 * len(floats), "accuracy": acc, "agreement": acc / 100, "node": "n"})
            return out
        assert fn is S.time_files and bench and len(jobs) == 1     # one timing task per batch, on a node to itself
        paths, x1, threads, runtimes = jobs[0]
        k = len(self.batches)
        self.batches.append(list(zip(paths, runtimes)))
        return [{"p50_us": [self.true_p50(p, rt) * (1 + self.drift * k) for p, rt in zip(paths, runtimes)], "node": "n", "pid": 1,
                 "start": 10.0 * k, "end": 10.0 * k + 1, "files": len(paths)}]


def _run(ex, layers, budgets, work, sampler="auto", trials=32, formats=("onnx-int8",), **kw):
    space = {f: list(layers) for f in formats}
    return S.run_search(space, SRC, np.zeros((1, 28, 28, 1), np.float32), 99.0, 2000, budgets, sampler, trials, ex,
                        1, Path(work), progress=lambda m: None, **kw)


@pytest.fixture
def work(tmp_path):
    return str(tmp_path)


def test_exhaustive_sampler_tries_each_combination_once_fewest_float_first():
    smp = S.ExhaustiveSampler({"onnx-int8": ["a", "b", "c"], "tflite-int8": ["a", "b", "c"]})
    seen = []
    while (a := smp.ask()) is not None:
        seen.append(a[0])
    assert len(seen) == len(set(seen)) == S.space_size({"x": ["a", "b", "c"], "y": ["a", "b", "c"]}) == 14
    assert [len(c.float_layers) for c in seen] == sorted(len(c.float_layers) for c in seen)
    assert seen[:2] == [S.Config("onnx-int8"), S.Config("tflite-int8")]        # the full-int8 anchors first
    assert all(len(c.float_layers) < 3 for c in seen)                           # all float is the fp32 file


def test_exhaustive_search_finds_the_optimum_with_drift_removed(work):
    # l0, l2 are faster float; l1, l3 slower float; l3 left int8 loses 2 pp (over the 0.5 pp budget)
    ex = Synthetic({"l0": 30, "l1": -5, "l2": 20, "l3": -5}, {"l3": 2.0})
    res = _run(ex, ["l0", "l1", "l2", "l3"], Budgets(max_accuracy_drop=0.5), patience=100, work=work)
    assert res.sampler == "exhaustive" and res.stop == "every combination tried"
    assert len(res.trials) == 15 and len(set(ex.exported)) == 15
    for t in res.trials:                          # batches were 1.5x, 2x, 2.5x slower: the anchor removed it
        assert t.p50_us == pytest.approx(ex.true_p50(t.file), rel=1e-9)
    assert [t.feasible for t in res.trials] == ["l3" in t.config.float_layers for t in res.trials]
    best = res.best()
    assert best[0].config.float_layers == ("l0", "l2", "l3") and best[0].p50_us == pytest.approx(55.0)
    assert all(t.feasible for t in best) and len(best) == 3
    assert all(ex.batches[k][-1] == (res.trials[0].file, "") for k in range(1, len(ex.batches)))   # anchor in each batch


def test_runtimes_are_a_dimension_of_the_search(work):
    # openvino: 20 us slower as full int8, but there each float layer saves twice as much
    ex = Synthetic({"l0": 30, "l1": 10}, {}, slower={"openvino": 20}, speedup={"openvino": 2})
    res = _run(ex, ["l0", "l1"], Budgets(), patience=100, work=work, runtimes={"onnx-int8": ["onnxruntime", "openvino"]})
    assert res.space_size == 6 and len(res.trials) == 6 and res.stop == "every combination tried"
    assert [t.config.runtime for t in res.trials[:2]] == ["onnxruntime", "openvino"]       # one anchor per runtime
    for t in res.trials:                         # drift removed per (format, runtime), each file in its own runtime
        assert t.p50_us == pytest.approx(ex.true_p50(t.file, t.config.runtime), rel=1e-9)
    best = res.best()                            # one candidate file per layer set: it is benchmarked in every runtime
    assert best[0].config == S.Config("onnx-int8", ("l0",), "openvino") and best[0].p50_us == pytest.approx(60)
    assert [(t.config.float_layers, t.config.runtime) for t in best] == [(("l0",), "openvino"), (("l1",), "onnxruntime")]


def test_search_runtimes_are_the_installed_ones_asked_for():
    import importlib.util
    assert S.search_runtimes("onnx-int8", None)[0] == "onnxruntime"             # the format's default first
    assert S.search_runtimes("tflite-int8", ["all"]) == ["litert"]
    assert S.search_runtimes("onnx-int8", ["onnxruntime", "litert"]) == ["onnxruntime"]
    assert S.search_runtimes("tflite-int8", ["onnxruntime"]) == []               # then tflite is not searched
    has_ov = importlib.util.find_spec("openvino") is not None
    assert ("openvino" in S.search_runtimes("onnx-int8", None)) == has_ov


def test_the_goal_stops_the_search_early(work):
    ex = Synthetic({"l0": 30, "l1": -5, "l2": 20, "l3": -5}, {})
    res = _run(ex, ["l0", "l1", "l2", "l3"], Budgets(max_latency_ms=0.075), patience=100, work=work)
    assert res.stop.startswith("goal met") and len(res.trials) < 15
    assert any(t.feasible and t.p50_us <= 75 for t in res.trials)


def test_budgets_decide_what_is_feasible(work):
    ex = Synthetic({"l0": 30, "l1": 25, "l2": 20, "l3": 15}, {"l3": 0.3})
    res = _run(ex, ["l0", "l1", "l2", "l3"], Budgets(max_size=11_500, max_accuracy_drop=0.5, prefer="size"),
               patience=100, work=work)
    for t in res.trials:
        assert t.feasible == (t.size <= 11_500)
        assert (t.score == t.size) if t.feasible else (t.score > 2 * t.size)
    # preferring size, no float layer beats the full-int8 file's 10,000 B: nothing to add as a candidate
    assert res.best() == []
    res = _run(Synthetic(ex.saves, ex.losses), ["l0", "l1", "l2", "l3"], Budgets(max_size=11_500), patience=100, work=work)
    assert [t.config.float_layers for t in res.best()] == [("l0",), ("l1",), ("l2",)]


def test_tpe_searches_a_space_too_large_to_enumerate(work):
    layers = [f"l{i}" for i in range(12)]
    saves = {layer: (12.0 if i % 4 == 0 else -2.0) for i, layer in enumerate(layers)}   # l0, l4, l8 faster float
    losses = {"l5": 1.5}                                                                # l5 must stay float
    runs = []
    for _ in range(2):
        ex = Synthetic(saves, losses)
        res = _run(ex, layers, Budgets(max_accuracy_drop=0.5), trials=40, formats=("onnx-int8", "tflite-int8"),
                   work=work, patience=40)
        runs.append(([t.config for t in res.trials], res))
    (configs, res), (configs2, _) = runs
    assert res.sampler == "tpe" and res.space_size == 2 * (2 ** 12 - 1)
    assert configs == configs2                                      # seeded: the same trials every time
    assert len(configs) == len(set(configs)) <= 40                  # a repeated proposal is not exported again
    assert configs[:2] == [S.Config("onnx-int8"), S.Config("tflite-int8")]
    best = res.best()
    assert best and best[0].feasible and "l5" in best[0].config.float_layers
    assert best[0].p50_us < min(t.p50_us for t in res.trials if not t.config.float_layers)


def test_patience_stops_a_search_that_finds_nothing_better(work):
    layers = [f"l{i}" for i in range(10)]
    ex = Synthetic({layer: -3.0 for layer in layers}, {})          # every float layer is slower: full int8 stays best
    res = _run(ex, layers, Budgets(), sampler="tpe", trials=100, work=work)
    assert res.stop.startswith("no better trial in the last 5") and res.stop.endswith("(patience 50)")
    assert 51 <= len(res.trials) <= 55                         # checked after each batch of 4
    assert res.best() == []


def test_repeated_proposals_are_told_not_exported(work):
    ex = Synthetic({"a": 5, "b": -1}, {})
    res = _run(ex, ["a", "b"], Budgets(), sampler="tpe", trials=20, work=work, patience=100)
    assert res.asked == 20 and len(ex.exported) == len(set(ex.exported)) <= 3


def test_bad_search_options_are_one_line(monkeypatch, work):
    with pytest.raises(OptionError, match="unknown --mixed-search 'random'"):
        S.make_sampler("random", {"onnx-int8": ["a"]}, 4)
    with pytest.raises(OptionError, match="--trials must be >= 1"):
        _run(Synthetic({"a": 1}, {}), ["a"], Budgets(), trials=0, work=work)
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(OptionError, match=r"pip install 'edgepack\[search\]'"):
        S.make_sampler("tpe", {"onnx-int8": ["a"]}, 4)
    from edgepack.toolkit.deploy import deploy
    with pytest.raises(OptionError, match="one or the other"):
        deploy("none.pt", work, mixed=False, mixed_search="tpe")


# ----------------------------------------------------------------------------------------------- integration tier
@pytest.mark.slow
@pytest.mark.integration
def test_deploy_search_through_ray(trained, tmp_path):
    """`edgepack deploy --mixed-search exhaustive --executor ray`: trials exported by Ray tasks (workers load the
    checkpoint themselves), timed by bench tasks that never overlap; the best trials verified and benchmarked as
    candidates; the search in the report."""
    pytest.importorskip("ray")
    from tests.conftest import MNIST_DIR
    # a checkpoint whose record names the folder it was trained from, and no --data/--data-dir/EDGEPACK_DATA: the
    # driver, the Ray workers and the bench harness's processes must all read the data set from that folder
    ckpt = tmp_path / "ckpt" / Path(trained["keras"]).name
    ckpt.parent.mkdir()
    shutil.copyfile(trained["keras"], ckpt)
    record = json.loads(Path(str(trained["keras"]) + ".json").read_text())
    record["dataset"]["source"] = str(MNIST_DIR)
    Path(str(ckpt) + ".json").write_text(json.dumps(record))
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "EDGEPACK_DATA"}
    r = subprocess.run([sys.executable, "-m", "edgepack.toolkit.cli", "deploy", str(ckpt), "--out", str(out), "--max-accuracy-drop", "0.5",
                        "--runtime", "onnxruntime,litert", "--mixed-search", "exhaustive", "--trials", "8",
                        "--executor", "ray"], capture_output=True, text=True, timeout=900,
                       env={**env, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads((out / "deploy.json").read_text())
    found = info["search"]
    assert found["sampler"] == "exhaustive" and found["stop"] == "every combination tried"
    trials = found["trials"]
    assert len(trials) == found["space_size"] == 6 and not any(t["error"] for t in trials)   # conv0, dense3 x 2 formats
    assert all(t["p50_us"] > 0 and t["size"] > 0 and 0 < t["accuracy"] <= 100 and t["node"] for t in trials)
    spans = sorted((b["start"], b["end"]) for b in found["timings"])
    assert spans and all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))      # no two timing batches at once
    searched = [c for c in info["candidates"] if "search trial" in c["label"]]
    for c in searched:                                   # a searched file is a verified, fully benchmarked candidate
        assert c["verified"] and c["float_layers"] and c["accuracy"] is not None
        assert json.loads(Path(c["file"] + ".json").read_text())["verification"]["passed"]
    assert [t for t in trials if t["feasible"]]
    assert "## Mixed-precision search" in (out / "deploy.md").read_text()
    assert not (out / "candidates" / ".search").exists()                       # the trials' unverified files went

"""Tasks (edgepack.toolkit.tasks): the registry, outputs matched by name, output fidelity, the anomaly task's ROC figures
against scikit-learn, its one-class view and scores; then (integration) the two models users brought that edgepack
used to judge as classifiers or crash on: a two-output model as `raw` and an autoencoder as `anomaly`, through
export (both int8 routes), bench and deploy, and the anomaly flow from training in both frameworks."""
import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from tests.conftest import MNIST_DIR, ROOT
from edgepack.toolkit.errors import ModelError, OptionError
from edgepack.toolkit.tasks import get_task, infer_task, match_outputs, task_names
from edgepack.toolkit.tasks.anomaly import delong, partial_auc, roc_curve
from edgepack.toolkit.tasks.base import MIN_INT8_SNR_DB, fidelity, judge_fidelity


# ----------------------------------------------------------------------------------------------- unit tier
def test_registry_names_every_task_and_refuses_unknown_ones():
    assert {"classification", "raw", "anomaly"} <= set(task_names())
    assert get_task(None).name == "classification"                    # records from before tasks: classifiers
    assert get_task({"name": "anomaly", "normal_classes": [3]}).to_dict() == {"name": "anomaly", "normal_classes": [3],
                                                                            "max_fpr": 0.1}
    with pytest.raises(OptionError, match="unknown task 'detector'; known: classification, raw, anomaly"):
        get_task("detector")
    with pytest.raises(OptionError, match="unknown option"):
        get_task({"name": "raw", "normal_classes": [0]})


def test_adding_a_task_is_one_module_and_one_registry_line():
    """Nothing outside toolkit/tasks names a task by name, except the classifier default and the CLI's help."""
    import edgepack.toolkit.tasks as reg
    assert reg.TASK_MODULES == tuple(f"edgepack.toolkit.tasks.{n}" for n in ("classification", "raw", "anomaly", "detection",
                                                                          "keyword_spotting"))
    for mod in reg.TASK_MODULES:
        cls = __import__(mod, fromlist=["TASK"]).TASK
        assert cls.name and cls.description
    offenders = []
    for pkg in ("toolkit", "exporters", "benchmarks"):
        for f in (ROOT / pkg).rglob("*.py"):
            if "tasks" in f.parts:
                continue
            text = f.read_text()
            if any(f'"{n}"' in text or f"'{n}'" in text for n in ("anomaly", "raw", "detection", "keyword-spotting")):
                offenders.append(str(f.relative_to(ROOT)))
    assert not offenders, offenders


def test_the_task_of_a_file_without_record_is_inferred_only_when_safe(mnist_like):
    assert infer_task({"logits": (-1, 10)}, mnist_like, "m.onnx").name == "classification"
    for shapes in ({"recon": (-1, 28, 28)}, {"boxes": (-1, 16), "scores": (-1, 40)}):
        with pytest.raises(ModelError, match=r"m.onnx: cannot tell its task from its outputs .*give --task"):
            infer_task(shapes, mnist_like, "m.onnx")
    with pytest.raises(ModelError, match=r"m.onnx: the model has 7 outputs but fake has 10 classes.*give --task"):
        infer_task({"logits": (-1, 7)}, mnist_like, "m.onnx")


def test_classification_refuses_outputs_it_cannot_read(mnist_like):
    task = get_task("classification")
    with pytest.raises(ModelError, match="2 outputs .*--task raw"):
        task.check_outputs({"a": (-1, 10), "b": (-1, 4)}, mnist_like, "m")
    with pytest.raises(ModelError, match=r"output shape \(-1, 28, 28\) is not one \[N, classes\] vector"):
        task.check_outputs({"a": (-1, 28, 28)}, mnist_like, "m")


def test_outputs_are_matched_by_name_then_rewritten_name_then_signature_position_then_shape():
    src = {"boxes": (-1, 16), "scores": (-1, 40)}
    assert match_outputs(src, {"scores": (-1, 40), "boxes": (-1, 16)}, "f")[0] == {"boxes": "boxes", "scores": "scores"}
    m, how = match_outputs(src, {"serving_default_scores:0": (1, 40), "serving_default_boxes:0": (1, 16)}, "f")
    assert m == {"boxes": "serving_default_boxes:0", "scores": "serving_default_scores:0"} and "renaming" in how
    # onnx2tf's TFLite signature: output_i is the source's i-th output, listed in another order
    m, how = match_outputs(src, {"output_1": (1, 40), "output_0": (1, 16)}, "f")
    assert m == {"boxes": "output_0", "scores": "output_1"} and "signature position" in how
    m, how = match_outputs(src, {"Identity_7": (1, 40), "Identity_3": (1, 16)}, "f")
    assert m == {"boxes": "Identity_3", "scores": "Identity_7"} and "by shape" in how
    same = {"a": (-1, 8), "b": (-1, 8)}
    with pytest.raises(ModelError, match=r"f: cannot match its outputs \(x \(-1, 8\), y \(-1, 8\)\)"):
        match_outputs(same, {"x": (-1, 8), "y": (-1, 8)}, "f")
    with pytest.raises(ModelError, match="1 output"):
        match_outputs(src, {"x": (-1, 56)}, "f")


def test_fidelity_figures_and_their_floors():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(200, 16)).astype(np.float32)
    noisy = ref + rng.normal(scale=0.1, size=ref.shape).astype(np.float32)   # signal power 1, noise 0.01: 20 dB
    f = fidelity({"a": noisy}, {"a": ref})["a"]
    assert abs(f["snr_db"] - 20.0) < 0.5 and 0.99 < f["cosine"] < 1.0
    assert f["max_abs_diff"] == pytest.approx(float(np.abs(noisy - ref).max()))
    assert judge_fidelity({"outputs": {"a": f}}, (None, None)) == []                  # int8: above the SNR floor
    broken = fidelity({"a": ref * 0.2}, {"a": ref})["a"]                                # a scale 5x off: ~2 dB
    assert broken["snr_db"] < MIN_INT8_SNR_DB
    assert "SNR" in judge_fidelity({"outputs": {"a": broken}}, (None, None))[0]
    assert "max abs difference" in judge_fidelity({"outputs": {"a": f}}, (1e-4, 1.0))[0]
    assert fidelity({"a": ref}, {"a": ref})["a"]["snr_db"] == float("inf")
    assert not fidelity({"a": ref[:, :8]}, {"a": ref})["a"]["shape_ok"]


def test_roc_figures_equal_scikit_learn_with_ties():
    from sklearn.metrics import roc_auc_score
    from sklearn.metrics import roc_curve as sk_roc
    rng = np.random.default_rng(1)
    for k in range(4):
        y = rng.integers(0, 2, 400)
        s = np.round(rng.normal(size=400) + 0.9 * y, 1)                # rounded: many tied scores
        (auc,), cov = delong(y, [s])
        assert auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        for max_fpr in (0.1, 0.37):
            assert partial_auc(y, s, max_fpr) == pytest.approx(roc_auc_score(y, s, max_fpr=max_fpr), abs=1e-12)
        fpr, tpr = roc_curve(y, s)
        sk_fpr, sk_tpr, _ = sk_roc(y, s, drop_intermediate=False)
        assert np.allclose(fpr, sk_fpr) and np.allclose(tpr, sk_tpr)
        assert 0 < cov[0, 0] < 0.01


def test_delong_standard_error_matches_the_spread_of_resampled_aucs():
    """The DeLong SE of one AUC agrees with a bootstrap of the same scores within 15%."""
    from sklearn.metrics import roc_auc_score
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 600)
    s = rng.normal(size=600) + 1.0 * y
    (_,), cov = delong(y, [s])
    boots = []
    for _ in range(400):
        i = rng.integers(0, 600, 600)
        boots.append(roc_auc_score(y[i], s[i]))
    assert abs(np.sqrt(cov[0, 0]) / np.std(boots) - 1) < 0.15


def test_anomaly_view_is_a_one_class_set_up(mnist_like):
    task = get_task({"name": "anomaly", "normal_classes": ["3"]})
    v = task.view(mnist_like)
    assert v.classes == ["normal", "anomaly"] and set(np.unique(v.y_train)) == {0}
    assert len(v.y_train) == int((mnist_like.y_train == 3).sum())
    assert np.array_equal(v.y_test, (mnist_like.y_test != 3).astype(np.int64))
    assert task.to_dict()["normal_classes"] == ["3"] and "normal = 3" in v.notes[-1]
    assert get_task("anomaly").view(mnist_like).y_train.size == int((mnist_like.y_train == 0).sum())   # default: 0
    with pytest.raises(OptionError, match="normal class 12 is not one of"):
        get_task({"name": "anomaly", "normal_classes": [12]}).view(mnist_like)
    with pytest.raises(OptionError, match="every class is normal"):
        get_task({"name": "anomaly", "normal_classes": list(range(10))}).view(mnist_like)


def test_anomaly_scores_read_the_reconstruction_in_its_layout_or_the_models_own_score():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 4, 5, 3)).astype(np.float32)                      # canonical NHWC
    task = get_task("anomaly")
    err = rng.normal(scale=0.1, size=x.shape).astype(np.float32)
    want = np.mean(err.reshape(6, -1) ** 2, axis=1)
    for out in ((x + err), (x + err).transpose(0, 3, 1, 2), (x + err).reshape(6, -1)):   # NHWC, NCHW, flat (H, W, C)
        assert np.allclose(task.scores({"recon": out}, x), want, rtol=1e-5)
    assert np.allclose(task.scores({"score": np.arange(6.0)[:, None]}, x), np.arange(6.0))
    with pytest.raises(ModelError, match="no output is a reconstruction"):
        task.check_outputs({"z": (-1, 7)}, replace_shape(x), "m")


def replace_shape(x):
    class D:
        input_shape = x.shape[1:]
    return D()


def test_task_flags_parse_in_one_line():
    import argparse

    from edgepack.toolkit.tasks import add_task_args, task_from_args
    p = argparse.ArgumentParser()
    add_task_args(p)
    assert task_from_args(p.parse_args([])) is None
    assert task_from_args(p.parse_args(["--task", "anomaly", "--normal-classes", "1,7"])) == \
        {"name": "anomaly", "normal_classes": "1,7"}
    assert get_task(task_from_args(p.parse_args(["--task", "anomaly", "--normal-classes", "1,7"]))).settings[
        "normal_classes"] == ["1", "7"]
    with pytest.raises(OptionError, match="unknown task"):
        task_from_args(p.parse_args(["--task", "segmentation"]))
    with pytest.raises(OptionError, match="--normal-classes goes with --task anomaly"):
        task_from_args(p.parse_args(["--normal-classes", "1"]))


def test_a_recipe_names_its_task_once_and_is_checked_before_any_work(tmp_path):
    from edgepack.toolkit.recipes.schema import load_recipe
    steps = ('[[step]]\nid = "fc"\nkind = "train"\nframework = "torch"\narch = "ae-fc"\n'
             '[[step]]\nid = "student"\nkind = "train"\nframework = "torch"\narch = "ae-fc"\nteacher = "fc"\n')
    p = tmp_path / "r.toml"
    p.write_text('[data]\nname = "mnist"\n[task]\nname = "anomaly"\nnormal_classes = ["0"]\n' + steps.split("[[step]]\nid = \"student\"")[0])
    assert load_recipe(p).task == {"name": "anomaly", "normal_classes": ["0"], "max_fpr": 0.1}
    p.write_text('[data]\nname = "mnist"\n[task]\nname = "anomaly"\n' + steps)
    with pytest.raises(OptionError, match="step student: distillation .* does not apply to task anomaly"):
        load_recipe(p)
    p.write_text('[data]\nname = "mnist"\n[task]\nname = "segmentation"\n' + steps)
    with pytest.raises(OptionError, match=r"r.toml: \[task\]: unknown task 'segmentation'"):
        load_recipe(p)


@pytest.fixture(scope="module")
def mnist_like():
    """Ten classes of 28x28x1 random images: the shape of MNIST, no data folder needed."""
    from edgepack.toolkit.data import Dataset
    rng = np.random.default_rng(0)
    return Dataset("fake", "test", rng.integers(0, 255, (300, 28, 28, 1), dtype=np.uint8), np.arange(300) % 10,
                   rng.integers(0, 255, (200, 28, 28, 1), dtype=np.uint8), np.arange(200) % 10,
                   [str(i) for i in range(10)], (0.5,), (0.25,))


# ----------------------------------------------------------------------------------------------- integration tier
def _cli(*args):
    return subprocess.run([sys.executable, "-m", "edgepack.toolkit.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=900, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.fixture(scope="module")
def users_models(tmp_path_factory):
    """The issue's two models as users export them (legacy exporter, opset 17, input 1x1x28x28, dynamic batch): a
    two-output model (a box head of 16 values, a class head of 40) and an autoencoder whose output is a 28x28 image;
    the autoencoder trained for two epochs on MNIST's zeros, so that its ROC AUC means something."""
    import torch
    from torch import nn
    from edgepack.toolkit.data import load_dataset
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("users")

    class Det(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(), nn.Flatten())
            self.box, self.cls = nn.Linear(16 * 49, 16), nn.Linear(16 * 49, 40)

        def forward(self, x):
            f = self.body(x)
            return self.box(f), self.cls(f)

    class AE(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 8), nn.ReLU(),
                                     nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 784))

        def forward(self, x):
            return self.net(x).reshape(-1, 28, 28)
    ds = load_dataset("mnist", MNIST_DIR)
    zeros = ds.normalize(ds.x_train[ds.y_train == 0], "NCHW")
    ae = AE()
    opt = torch.optim.Adam(ae.parameters(), 1e-3)
    for _ in range(2):
        for i in range(0, len(zeros), 64):
            xb = torch.from_numpy(zeros[i:i + 64])
            loss = ((ae(xb) - xb[:, 0]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    x = torch.zeros(1, 1, 28, 28)
    torch.onnx.export(Det().eval(), (x,), str(d / "det.onnx"), input_names=["input"], output_names=["boxes", "scores"],
                      opset_version=17, dynamic_axes={"input": {0: "b"}, "boxes": {0: "b"}, "scores": {0: "b"}}, dynamo=False)
    torch.onnx.export(ae.eval(), (x,), str(d / "ae.onnx"), input_names=["input"], output_names=["recon"],
                      opset_version=17, dynamic_axes={"input": {0: "b"}, "recon": {0: "b"}}, dynamo=False)
    return d


def test_a_two_output_model_without_task_is_refused_in_one_line_not_read_as_a_classifier(users_models, tmp_path):
    r = _cli("export", users_models / "det.onnx", "--to", "onnx-int8", "--data", "mnist", "--data-dir", MNIST_DIR,
             "--out", tmp_path / "x")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "cannot tell its task from its outputs (boxes (-1, 16), scores (-1, 40))" in r.stderr
    assert "--task" in r.stderr.strip().splitlines()[-1]


def test_a_two_output_model_goes_through_export_bench_and_deploy_as_raw(users_models, tmp_path):
    out = tmp_path / "exp"
    r = _cli("export", users_models / "det.onnx", "--to", "onnx-int8,tflite-int8", "--data", "mnist", "--data-dir",
             MNIST_DIR, "--task", "raw", "--out", out, "--verify-images", "500", "--calibration-samples", "100")
    assert r.returncode == 0, r.stderr[-3000:]
    for name, matched in (("det.int8.onnx", "by name"), ("det.int8.tflite", "signature position")):
        rec = json.loads((out / f"{name}.json").read_text())
        ver = rec["verification"]
        assert rec["task"] == {"name": "raw"} and ver["passed"], ver["failures"]
        assert matched in ver["output_match"]
        assert list(ver["outputs"]) == ["boxes", "scores"]                       # every output, by the source's name
        for f in ver["outputs"].values():
            assert f["snr_db"] >= MIN_INT8_SNR_DB and f["cosine"] > 0.99
    r = _cli("bench", out / "det.int8.onnx", out / "det.int8.tflite", "--data", "mnist", "--data-dir", MNIST_DIR,
             "--runs", "10", "--min-seconds", "0", "--json", tmp_path / "b.json")
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads((tmp_path / "b.json").read_text())["results"]
    assert all(d["ok"] and d["latency_ms"]["p50"] > 0 and d["accuracy"] is None for d in rows)
    assert all(d["task"] == {"name": "raw"} and "no quality figure" in d["accuracy_note"] for d in rows)
    from edgepack.toolkit.deploy import deploy
    res = deploy(users_models / "det.onnx", tmp_path / "dep", "mnist", str(MNIST_DIR), mixed=False,
                 runtimes=["onnxruntime", "litert"], progress=lambda m: None, task="raw")
    assert not [r.error for r in res["rows"] if r.error]
    assert res["best"].accuracy is None and res["best"].p50_ms == min(r.p50_ms for r in res["rows"])
    info = json.loads((tmp_path / "dep" / "deploy.json").read_text())
    assert info["task"] == {"name": "raw"} and info["metric"] is None
    r = _cli("deploy", users_models / "det.onnx", "--data", "mnist", "--data-dir", MNIST_DIR, "--task", "raw",
             "--max-accuracy-drop", "1", "--out", tmp_path / "dep2")
    assert r.returncode == 2 and "task raw has no quality figure" in r.stderr, r.stderr[-2000:]
    # a bundle for another device: golden vectors of both outputs, checked there, then the pick from its results
    deploy(users_models / "det.onnx", tmp_path / "bundle", "mnist", str(MNIST_DIR), mixed=False, candidates_only=True,
           runtimes=["onnxruntime"], progress=lambda m: None, task="raw")
    golden = np.load(tmp_path / "bundle" / "golden.npz")
    assert {"out__boxes", "out__scores"} <= set(golden.files)
    r = _cli("bench", tmp_path / "bundle", "--runs", "5", "--min-seconds", "0", "--json", tmp_path / "dev.json")
    assert r.returncode == 0, r.stderr[-2000:]
    dev = json.loads((tmp_path / "dev.json").read_text())["results"]
    assert dev and all(d["golden"]["passed"] and d["golden"]["agreement"] is None for d in dev)
    r = _cli("deploy", "--select", tmp_path / "dev.json", tmp_path / "bundle", "--out", tmp_path / "picked")
    assert r.returncode == 0 and "no quality figure" in r.stdout + r.stderr, r.stderr[-2000:]


def test_an_autoencoder_goes_through_export_bench_and_deploy_as_anomaly(users_models, tmp_path):
    out = tmp_path / "exp"
    r = _cli("export", users_models / "ae.onnx", "--to", "onnx-int8,tflite-int8", "--data", "mnist", "--data-dir",
             MNIST_DIR, "--task", "anomaly", "--out", out, "--verify-images", "1000", "--calibration-samples", "100")
    assert r.returncode == 0, r.stderr[-3000:]
    for name in ("ae.int8.onnx", "ae.int8.tflite"):
        ver = json.loads((out / f"{name}.json").read_text())["verification"]
        assert ver["passed"] and ver["task"]["name"] == "anomaly" and ver["task"]["normal_classes"] == ["0"]
        q = ver["quality"]
        assert q["source_auc"] > 0.9 and abs(q["auc"] - q["source_auc"]) < 0.01
    r = _cli("bench", out / "ae.int8.onnx", out / "ae.int8.tflite", users_models / "ae.onnx", "--task", "anomaly",
             "--data", "mnist", "--data-dir", MNIST_DIR, "--runs", "10", "--min-seconds", "0", "--report", tmp_path / "rep")
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads((tmp_path / "rep" / "results.json").read_text())["results"]
    auc = {os.path.basename(d["model"]): d["quality"]["value"] for d in rows}
    assert auc["ae.onnx"] > 0.9 and all(abs(v - auc["ae.onnx"]) < 0.01 for v in auc.values()), auc
    assert all(d["quality"]["normal"] == 980 and d["quality"]["anomalies"] == 9020 for d in rows)   # all 10,000
    assert (tmp_path / "rep" / "anomaly.png").is_file()
    assert "ROC AUC" in (tmp_path / "rep" / "report.md").read_text()
    from edgepack.toolkit.deploy import deploy
    from edgepack.toolkit.deploy.budgets import Budgets
    res = deploy(users_models / "ae.onnx", tmp_path / "dep", "mnist", str(MNIST_DIR), Budgets(max_accuracy_drop=1.0),
                 mixed=False, runtimes=["onnxruntime", "litert"], progress=lambda m: None, task="anomaly")
    best, info = res["best"], json.loads((tmp_path / "dep" / "deploy.json").read_text())
    assert info["metric"] == "ROC AUC" and best.accuracy >= info["reference_accuracy"] - 1.0
    assert "ROC AUC" in (tmp_path / "dep" / "deploy.md").read_text()


def test_anomaly_autoencoders_train_in_both_frameworks_and_keep_their_auc_in_int8(mnist, tmp_path):
    from edgepack.exporters.api import export_checkpoint
    from edgepack.exporters.base import ExportOptions
    from edgepack.toolkit.api import train
    from edgepack.toolkit.train import TrainConfig
    small = replace(mnist, x_train=mnist.x_train[:12000], y_train=mnist.y_train[:12000])
    for fw, arch in (("torch", "ae-fc"), ("keras", "ae-conv")):
        res = train(fw, arch, small, out=tmp_path / fw, config=TrainConfig(epochs=2, batch_size=64), verbose=False,
                    task={"name": "anomaly", "normal_classes": ["1"]})
        q = res.metrics["test_quality"]
        assert res.metrics["test_accuracy"] is None and q["metric"] == "ROC AUC" and q["value"] > 0.9, q
        results = export_checkpoint(res.checkpoint, ["onnx-int8", "tflite-int8"], tmp_path / f"x-{fw}", small,
                                    options=ExportOptions(verify_images=500, calibration_samples=100), verbose=False)
        for r in results:
            assert r.ok, r.error
            assert r.record.task["normal_classes"] == ["1"]
            assert abs(r.verification.quality["auc"] - r.verification.quality["source_auc"]) < 0.01
    with pytest.raises(ModelError, match="task anomaly trains an autoencoder"):
        train("torch", "mnist-tutorial", small, out=tmp_path / "bad", config=TrainConfig(epochs=1), verbose=False,
              task="anomaly")
    r = _cli("compress", tmp_path / "torch" / "model.pt", "--steps", "prune(sparsity=0.5,epochs=1)", "--out", tmp_path / "c")
    assert r.returncode == 2 and "do not apply to task anomaly" in r.stderr and "Traceback" not in r.stderr


def test_users_own_two_head_models_in_both_frameworks_export_output_by_output(mnist_small, tmp_path):
    """A PyTorch module returning a tuple and a Keras model with two named outputs, given to export_model as `raw`:
    every file keeps both outputs under the source's names (output_<i> for the tuple, Keras's names), each verified."""
    import torch
    from torch import nn

    from edgepack.exporters.api import export_model
    from edgepack.exporters.base import ExportOptions
    from edgepack.toolkit.backends.keras.model import keras

    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(1, 4, 3, 2, 1), nn.ReLU(), nn.Flatten())
            self.a, self.b = nn.Linear(4 * 196, 6), nn.Linear(4 * 196, 12)

        def forward(self, x):
            f = self.body(x)
            return self.a(f), self.b(f)
    inp = keras.Input((28, 28, 1))
    f = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, strides=2, activation="relu")(inp))
    k = keras.Model(inp, [keras.layers.Dense(6, name="boxes")(f), keras.layers.Dense(12, name="scores")(f)])
    opts = ExportOptions(verify_images=200, calibration_samples=50)
    for model, names in ((TwoHeads().eval(), ["output_0", "output_1"]), (k, ["boxes", "scores"])):
        results = export_model(model, ["onnx-int8", "tflite-int8"], mnist_small, tmp_path / names[0], opts,
                               verbose=False, task="raw")
        for r in results:
            assert r.ok, r.error
            assert list(r.verification.outputs) == names and r.record.task == {"name": "raw"}

"""The detection task: decoding (edgepack's grid head, Ultralytics' layout), NMS, one training loss in NumPy held equal
by both frameworks, and a detector through train -> export -> verify -> bench -> deploy (bundle, device JSON, select)
on a small derived set of real MNIST digits on canvases; bad input in one line."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import MNIST_DIR, ROOT
from edgepack.toolkit.errors import ModelError
from edgepack.toolkit.tasks import get_task
from edgepack.toolkit.tasks.detection import candidates, grid_loss_numpy, grid_targets, head_layout, nms
from edgepack.toolkit.tasks.detection_map import mean_average_precision


def _cli(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "edgepack.toolkit.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd)


def _random_boxes(rng, n, size=96, classes=10):
    out = []
    for _ in range(n):
        k = int(rng.integers(1, 5))
        xy = rng.uniform(0, size - 40, (k, 2))
        wh = rng.uniform(8, 40, (k, 2))
        out.append(np.c_[rng.integers(0, classes, k), xy, xy + wh].astype(np.float32))
    return out


def _perfect_logits(targets: np.ndarray, classes: int) -> np.ndarray:
    """The grid outputs that decode exactly to the targets' boxes: logit(offset), log sizes, sure objectness/class."""
    t = targets.astype(np.float64)
    out = np.zeros((*t.shape[:2], 5 + classes))
    off = np.clip(t[..., 1:3], 1e-6, 1 - 1e-6)
    out[..., 0:2] = np.log(off / (1 - off))
    out[..., 2:4] = t[..., 3:5]
    out[..., 4] = np.where(t[..., 0] > 0, 12.0, -12.0)
    out[..., 5:] = -8.0
    np.put_along_axis(out[..., 5:], t[..., 5:6].astype(int), 8.0, -1)
    return out.astype(np.float32)


def test_grid_decode_inverts_the_training_targets():
    """Targets -> the logits that mean them -> decode + NMS: every box back, mAP@0.5:0.95 exactly 1."""
    rng = np.random.default_rng(0)
    boxes = _random_boxes(rng, 30)
    # one box per cell: drop boxes whose centre shares a cell with an earlier one
    kept = []
    for b in boxes:
        cells = set()
        rows = []
        for r in b:
            c = (int((r[1] + r[3]) / 16), int((r[2] + r[4]) / 16))
            if c not in cells:
                cells.add(c)
                rows.append(r)
        kept.append(np.array(rows, np.float32))
    t = grid_targets(kept, (96, 96), 144)
    assert t.shape == (30, 144, 6) and t[..., 0].sum() == sum(len(b) for b in kept)
    out = _perfect_logits(t, 10)
    task = get_task("detection")
    dets, ms = task.detect({"grid": out}, (96, 96), 10)
    assert ms > 0
    for d, b in zip(dets, kept):
        assert len(d) >= len(b)
    m = mean_average_precision(kept, dets, 10)
    assert m["map"] == pytest.approx(1.0) and m["map50"] == pytest.approx(1.0)


def test_the_training_loss_is_one_definition_in_numpy_torch_and_keras():
    import torch

    from edgepack.toolkit.backends.keras.train import grid_loss as keras_loss
    from edgepack.toolkit.backends.keras.model import tf
    from edgepack.toolkit.backends.torch.train import grid_loss as torch_loss
    rng = np.random.default_rng(1)
    t = grid_targets(_random_boxes(rng, 6), (96, 96), 144)
    out = rng.normal(0, 2, (6, 144, 15)).astype(np.float32)
    ref = grid_loss_numpy(out, t)
    assert ref > 0
    got_t = float(torch_loss(torch.from_numpy(out), torch.from_numpy(t), None))
    got_k = float(keras_loss(tf.constant(out), tf.constant(t), None))
    assert got_t == pytest.approx(ref, rel=1e-5) and got_k == pytest.approx(ref, rel=1e-5)
    # the outputs that mean the targets cost little (the offsets' BCE keeps their entropy) and are a minimum: moving
    # any part of the head (offsets, sizes, objectness, classes) costs more
    perfect = _perfect_logits(t, 10)
    best = grid_loss_numpy(perfect, t)
    assert best < 0.02 * ref
    for part in (slice(0, 2), slice(2, 4), slice(4, 5), slice(5, 15)):
        moved = perfect.copy()
        moved[..., part] += rng.normal(0, 0.5, moved[..., part].shape).astype(np.float32)
        assert grid_loss_numpy(moved, t) > best


def test_ultralytics_layout_decodes_in_pixels_and_nms_keeps_one_box_per_object_and_class():
    """(N, 4 + classes, anchors), xywh in input pixels and class scores: two near-duplicates of one object (one kept),
    the same box with another class (kept: classes never suppress each other), one far box."""
    anchors = np.array([[30, 30, 20, 20], [31, 30, 20, 20], [30, 30, 20, 20], [70, 70, 10, 12]], np.float32)
    scores = np.zeros((4, 3), np.float32)
    scores[0, 1], scores[1, 1], scores[2, 2], scores[3, 0] = 0.9, 0.8, 0.7, 0.6
    out = np.concatenate([anchors, scores], 1).T[None]           # (1, 7, 4)
    assert head_layout({"output0": out.shape}, 3, "yolo.onnx") == ("output0", "yolo")
    assert head_layout({"output0": out.transpose(0, 2, 1).shape}, 3, "yolo.onnx") == ("output0", "yolo-t")
    cand = candidates(out, "yolo", (96, 96), 3, 0.001)[0]
    assert len(cand) == 4
    kept = nms(cand, 0.6, 100)
    assert sorted(kept[:, 0].tolist()) == [0, 1, 2]
    assert np.allclose(kept[kept[:, 0] == 1][0, 1:5], [20, 20, 40, 40])
    assert len(nms(cand, 0.6, 2)) == 2                            # max_det


def test_outputs_that_do_not_decode_as_boxes_are_refused_in_one_line():
    with pytest.raises(ModelError, match=r"cls.onnx: its outputs \(logits \(-1, 10\)\) do not decode as boxes for 10 "
                                         r"classes: expected one output \(N, cells, 5 \+ 10\)"):
        head_layout({"logits": (-1, 10)}, 10, "cls.onnx")
    with pytest.raises(ModelError, match="several outputs decode as boxes"):
        head_layout({"a": (-1, 144, 15), "b": (-1, 14, 84)}, 10, "two.onnx")


def test_a_square_grid_is_required_and_task_options_are_checked():
    with pytest.raises(ModelError, match="do not decode as boxes"):
        head_layout({"g": (-1, 143, 15)}, 10, "g.onnx")              # 143 cells: not a square grid
    from edgepack.toolkit.errors import OptionError
    with pytest.raises(OptionError, match="iou in"):
        get_task({"name": "detection", "iou": 0})
    assert get_task("detection").to_dict() == {"name": "detection", "conf": 0.001, "iou": 0.6, "max_det": 100}


def test_detection_asks_for_more_calibration_and_uint8_onnx_weights_unless_told():
    """The task's export defaults (measured on YOLOv8n: 200 calibration images and 7-bit weights each cost a point)
    reach every int8 export and deploy's candidates; an explicit option wins."""
    from edgepack.exporters.base import ExportOptions
    from edgepack.toolkit.deploy import candidates_for
    from edgepack.toolkit.errors import OptionError
    det, cls = get_task("detection"), get_task("classification")
    o = ExportOptions()
    assert (o.calibration_count(det), o.calibration_count(cls)) == (500, 200)
    assert (o.onnx_weight_type(det), o.onnx_weight_type(cls)) == ("uint8", "int8")
    o = ExportOptions(calibration_samples=64, onnx_weights="int8")
    assert (o.calibration_count(det), o.onnx_weight_type(det)) == (64, "int8")
    with pytest.raises(OptionError, match="uint8 ONNX weights .* go with uint8 activations"):
        ExportOptions(onnx_weights="uint8", onnx_activations="int8")
    with pytest.raises(OptionError, match="unknown onnx weights 'u4'"):
        ExportOptions(onnx_weights="u4")
    names = lambda task: [c[0] for c in candidates_for(None, task)]     # noqa: E731
    assert names(det) == names(cls)[:1] + ["onnx-int8-uint8"] + names(cls)[1:]
    assert dict((c[0], c[2]) for c in candidates_for(["onnxruntime"], det))["onnx-int8-uint8"] == {"onnx_weights": "uint8"}


# ---------------------------------------------------------------- end to end on real digits
@pytest.fixture(scope="module")
def canvases(tmp_path_factory):
    from edgepack.toolkit.data import load_dataset
    from edgepack.toolkit.data.detection import make_digit_canvases
    d = tmp_path_factory.mktemp("canvas")
    make_digit_canvases(load_dataset("mnist", MNIST_DIR, quiet=True), d, n_train=800, n_test=200, size=96, seed=3)
    return d


@pytest.fixture(scope="module")
def detector(canvases, tmp_path_factory):
    out = tmp_path_factory.mktemp("det")
    r = _cli("train", "--framework", "torch", "--arch", "tiny-det", "--data", "canv", "--data-dir", canvases,
             "--task", "detection", "--epochs", "6", "--batch-size", "32", "--lr", "0.003", "--out", out)
    assert r.returncode == 0, r.stderr[-3000:]
    return out / "model.pt", r.stdout


def test_a_detector_trains_exports_verifies_and_benches_by_map(detector, canvases, tmp_path):
    ckpt, log = detector
    rec = json.loads(ckpt.with_name("model.pt.json").read_text())
    assert rec["task"]["name"] == "detection" and rec["dataset"]["name"] == "canv"
    q = rec["metrics"]["test_quality"]
    assert q["metric"] == "mAP" and q["map50"] > 0.2, q              # learned something in 6 short epochs (0.42 on an
    # AMD EPYC in fp32; a CPU with AMX trains in bf16: some margin)
    assert "decode + NMS" in log
    out = tmp_path / "exp"
    r = _cli("export", ckpt, "--to", "onnx,onnx-int8,tflite-int8", "--out", out, "--calibration-samples", "100")
    assert r.returncode == 0, r.stderr[-3000:]
    for name in ("model.onnx", "model.int8.onnx", "model.int8.tflite"):
        ver = json.loads((out / f"{name}.json").read_text())["verification"]
        assert ver["passed"] and ver["task"]["name"] == "detection", (name, ver["failures"])
        assert ver["quality"]["source_map"] == pytest.approx(q["value"], abs=1e-4)
        assert abs(ver["quality"]["delta_pp"]) < 3
    r = _cli("bench", out / "model.onnx", out / "model.int8.tflite", "--runs", "10", "--min-seconds", "0",
             "--report", tmp_path / "rep")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "task detection: mAP@0.5:0.95" in r.stdout and "ms/image at conf 0.001" in r.stdout
    rows = json.loads((tmp_path / "rep" / "results.json").read_text())["results"]
    assert all(d["quality"]["metric"] == "mAP" and d["quality"]["images"] == 200 for d in rows)
    # the same figure in ORT as in torch (float rounding may reorder near-equal scores between CPU kinds: a margin)
    assert rows[0]["quality"]["value"] == pytest.approx(q["value"], abs=2e-3)
    assert (tmp_path / "rep" / "detection.png").is_file()


def test_a_detector_bundle_goes_to_a_device_json_and_select_picks_by_map(detector, tmp_path):
    ckpt, _ = detector
    bundle = tmp_path / "bundle"
    r = _cli("deploy", ckpt, "--out", bundle, "--candidates-only", "--no-mixed", "--runtime", "onnxruntime")
    assert r.returncode == 0, r.stderr[-3000:]
    golden = np.load(next(bundle.rglob("golden.npz")))
    assert any(k.startswith("out__") for k in golden.files)
    r = _cli("bench", bundle, "--json", tmp_path / "dev.json", "--runs", "5", "--min-seconds", "0")
    assert r.returncode == 0, r.stderr[-3000:]
    dev = json.loads((tmp_path / "dev.json").read_text())
    assert dev["results"] and all(d["ok"] and d["golden"]["passed"] for d in dev["results"])   # outputs checked there
    r = _cli("deploy", "--select", tmp_path / "dev.json", bundle, "--out", tmp_path / "picked",
             "--max-accuracy-drop", "1")
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads((tmp_path / "picked" / "deploy.json").read_text())
    assert info["metric"] == "mAP" and "mAP" in (tmp_path / "picked" / "deploy.md").read_text()
    best = info["picked"]
    assert best["metric"] == "mAP" and best["accuracy"] >= info["reference_accuracy"] - 1.0
    assert f"fp32 reference: mAP {info['reference_accuracy'] / 100:.4f}" in (tmp_path / "picked" / "deploy.md").read_text()


def test_detection_bad_input_is_one_line_and_keeps_earlier_results(detector, canvases, tmp_path):
    ckpt, _ = detector
    # a classifier's data for a detector
    r = _cli("export", ckpt, "--to", "onnx", "--data", "mnist", "--data-dir", MNIST_DIR, "--out", tmp_path / "x")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "expects input (96, 96, 1), data set mnist has (28, 28, 1)" in r.stderr.strip().splitlines()[-1]
    from edgepack.toolkit.data import load_dataset
    with pytest.raises(ModelError, match="mnist is a classification data set .*detection needs boxes"):
        get_task("detection").view(load_dataset("mnist", MNIST_DIR, quiet=True))
    # a classifier's file (of the canvases' size) judged as a detector: its outputs do not decode as boxes
    import torch
    from torch import nn
    net = nn.Sequential(nn.Conv2d(1, 4, 3, 4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    torch.onnx.export(net.eval(), (torch.zeros(1, 1, 96, 96),), str(tmp_path / "cls.onnx"), input_names=["input"],
                      output_names=["logits"], opset_version=17, dynamo=False,
                      dynamic_axes={"input": {0: "b"}, "logits": {0: "b"}})
    r = _cli("bench", tmp_path / "cls.onnx", "--task", "detection", "--data", "canv", "--data-dir", canvases,
             "--runs", "3", "--min-seconds", "0", "--json", tmp_path / "b.json")
    assert "do not decode as boxes" in r.stdout + r.stderr and "Traceback" not in r.stderr
    r = _cli("export", tmp_path / "cls.onnx", "--task", "detection", "--data", "canv", "--data-dir", canvases,
             "--to", "onnx-int8", "--out", tmp_path / "cx")
    assert r.returncode != 0 and "do not decode as boxes" in r.stderr.strip().splitlines()[-1]
    # a YOLO folder whose every label file is empty: refused, the earlier export untouched
    bad = tmp_path / "bad"
    for split in ("train", "test"):
        (bad / "images" / split).mkdir(parents=True)
        (bad / "labels" / split).mkdir(parents=True)
        from PIL import Image
        Image.fromarray(np.zeros((96, 96), np.uint8)).save(bad / "images" / split / "a.png")
        (bad / "labels" / split / "a.txt").write_text("")
    (bad / "classes.txt").write_text("\n".join(str(i) for i in range(10)))
    keep = tmp_path / "keep"
    r = _cli("export", ckpt, "--to", "onnx", "--out", keep)
    assert r.returncode == 0
    before = (keep / "model.onnx").read_bytes()
    r = _cli("export", ckpt, "--to", "onnx", "--data", "canv", "--data-dir", bad, "--out", keep, "--force")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "none of its 1 label files holds an object" in r.stderr.strip().splitlines()[-1]
    assert (keep / "model.onnx").read_bytes() == before


# ---------------------------------------------------------------- a user's YOLO-style file: decode head in the graph
@pytest.fixture(scope="module")
def yolo_like(tmp_path_factory):
    """An Ultralytics-style detector file: box and class convolutions, the decode head in the graph (anchor grid from
    the input's dynamic size, sigmoid, stride arithmetic, one concatenation of pixels and probabilities), exported
    with a dynamic image size as Ultralytics' `dynamic=True` does."""
    import torch
    from torch import nn

    class Yolo(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(),
                                      nn.Conv2d(16, 16, 3, 2, 1), nn.ReLU())
            self.box, self.cls = nn.Conv2d(16, 4, 1), nn.Conv2d(16, 10, 1)

        def forward(self, x):
            f = self.body(x)
            n, _, h, w = f.shape
            stride = x.shape[2] / h
            gy, gx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                                    indexing="ij")
            grid = torch.stack([gx, gy]).reshape(1, 2, -1) + 0.5
            b = self.box(f).reshape(n, 4, -1)
            xy = (grid + torch.tanh(b[:, :2])) * stride
            wh = torch.exp(b[:, 2:].clamp(-4, 3)) * stride
            return torch.cat([xy, wh, torch.sigmoid(self.cls(f).reshape(n, 10, -1))], 1)
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("yolo")
    torch.onnx.export(Yolo().eval(), (torch.zeros(1, 1, 96, 96),), str(d / "yolo.onnx"), input_names=["images"],
                      output_names=["output0"], opset_version=17, dynamo=False,
                      dynamic_axes={"images": {0: "b", 2: "h", 3: "w"}, "output0": {0: "b", 2: "a"}})
    return d / "yolo.onnx"


def test_the_decode_tail_is_found_in_onnx_and_kept_float_in_both_int8_formats(yolo_like, canvases, tmp_path):
    from edgepack.exporters.layers import onnx_tail
    import onnx
    ops = {n.name: n.op_type for n in onnx.load(str(yolo_like)).graph.node}
    decode = [ops[t] for t in onnx_tail(yolo_like, with_head=False)]
    assert {"Concat", "Sigmoid", "Mul", "Exp"} <= set(decode) and "Conv" not in decode
    head = [ops[t] for t in onnx_tail(yolo_like)]
    assert head.count("Conv") == 2 and set(head) - set(decode) == {"Conv"}      # the box and class convolutions
    out = tmp_path / "exp"
    r = _cli("export", yolo_like, "--task", "detection", "--data", "canv", "--data-dir", canvases, "--mean", "0",
             "--std", "1", "--to", "onnx-int8,tflite-int8", "--out", out, "--calibration-samples", "50",
             "--verify-images", "100", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]      # the dynamic image size fixed for onnx2tf: no Flex ops, int8 made
    assert not list(tmp_path.glob("*.data")) and not list(tmp_path.glob("*.onnx"))   # no temporaries left in the
    # working directory (ORT's pre-processing leaves some there on a model with a dynamic image size)
    for name in ("yolo.int8.onnx", "yolo.int8.tflite"):
        rec = json.loads((out / f"{name}.json").read_text())
        details = rec["steps"][-1]["details"]
        assert details["float_tail"] and details["float_tail_mode"] == "head", name
        assert details["calibration"]["samples"] == 50, name            # the option, not the task's 500
        assert rec["task"]["name"] == "detection" and rec["verification"]["output_match"]
    details = json.loads((out / "yolo.int8.onnx.json").read_text())["steps"][-1]["details"]
    assert details["weights"].startswith("uint8 per-channel, 8-bit") and not details["reduce_range"]
    weights = json.loads((out / "yolo.int8.onnx.json").read_text())["verification"]["kernel_classes"]["_weights"]
    assert weights["uint8_weight_tensors"] > 0 and weights["pairs_that_can_saturate"] == 0
    # the naive file: the same export with the tail quantized (what --int8-tail int8 asks for)
    r = _cli("export", yolo_like, "--task", "detection", "--data", "canv", "--data-dir", canvases, "--mean", "0",
             "--std", "1", "--to", "onnx-int8", "--int8-tail", "int8", "--out", tmp_path / "naive",
             "--calibration-samples", "50", "--verify-images", "100")
    assert r.returncode == 0, r.stderr[-3000:]
    details = json.loads((tmp_path / "naive" / "yolo.int8.onnx.json").read_text())["steps"][-1]["details"]
    assert details["float_tail"] == []


def test_deploy_of_a_detector_picks_by_map_and_draws_the_pick_beside_fp32(detector, tmp_path):
    ckpt, _ = detector
    r = _cli("deploy", ckpt, "--out", tmp_path / "dep", "--no-mixed", "--runtime", "onnxruntime",
             "--max-accuracy-drop", "1")
    assert r.returncode == 0, r.stderr[-3000:]
    md = (tmp_path / "dep" / "deploy.md").read_text()
    assert "![examples](examples.png)" in md and (tmp_path / "dep" / "examples.png").stat().st_size > 10_000
    info = json.loads((tmp_path / "dep" / "deploy.json").read_text())
    assert info["metric"] == "mAP" and info["picked"]["accuracy"] >= info["reference_accuracy"] - 1.0

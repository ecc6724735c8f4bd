"""Model files users bring (fp32 .onnx / .tflite) as sources of export and deploy: read in their own runtime (layout
and fixed batch from the file), refused in one line when quantized, multi-input, corrupt or not image models, and
(with data) exported and deployed with every file verified against the file the user gave."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import MNIST_DIR, ROOT
from edgepack.toolkit.backends import FRAMEWORKS, NotSupported, backend_for_file, get_backend
from edgepack.toolkit.errors import ModelError


def _onnx(path, inputs, nodes, inits, out_shape, in_type=1):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, in_type, s) for n, s in inputs],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    onnx.save(helper.make_model(g, ir_version=8, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def _linear_nchw_batch1(path, w):
    """A user's export without dynamic axes: input (1, 1, 4, 4) NCHW, flatten, matmul -> 3 logits."""
    from onnx import helper
    return _onnx(path, [("x", [1, 1, 4, 4])],
                 [helper.make_node("Reshape", ["x", "shape"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["y"])],
                 {"shape": np.array([1, 16], np.int64), "w": w}, [1, 3])


# ----------------------------------------------------------------------------------------------- unit tier
def test_imported_files_are_sources_not_training_frameworks():
    assert "onnx" not in FRAMEWORKS and "tflite" not in FRAMEWORKS       # --framework / recipe choices unchanged
    assert backend_for_file("m.onnx") is get_backend("onnx")
    assert backend_for_file("m.tflite") is get_backend("tflite")
    with pytest.raises(ModelError, match="fp32 .onnx/.tflite"):
        backend_for_file("m.epk")


def test_onnx_source_reads_layout_and_fixed_batch_from_the_file(tmp_path):
    w = np.random.default_rng(0).standard_normal((16, 3)).astype(np.float32)
    fw = backend_for_file(tmp_path / "m.onnx")
    model = fw.load(_linear_nchw_batch1(tmp_path / "m.onnx", w))
    assert model.layout((4, 4, 1)) == "NCHW" and model.fixed_batch == 1
    x = np.random.default_rng(1).standard_normal((5, 4, 4, 1)).astype(np.float32)     # canonical NHWC, 5 images
    np.testing.assert_allclose(fw.predict(model, x), x.transpose(0, 3, 1, 2).reshape(5, 16) @ w, rtol=1e-5, atol=1e-5)
    assert fw.count_params(model) == {"trainable": 48, "non_trainable": 0, "total": 48, "nonzero": 48}
    with pytest.raises(ModelError, match="does not fit images"):
        fw.check_input(model, (28, 28, 1))
    for call in (lambda: fw.fit(model, None, None), lambda: fw.build(None), lambda: fw.get_weights(model)):
        with pytest.raises(NotSupported, match="needs a checkpoint"):
            call()
    out = tmp_path / "copy.onnx"
    details = fw.to_onnx(model, out, (4, 4, 1))
    assert details["input_layout"] == "NCHW"
    np.testing.assert_array_equal(fw.predict(fw.load(out), x), fw.predict(model, x))


@pytest.mark.parametrize("case,says", [("quantized", "already quantized (DequantizeLinear, QuantizeLinear"), ("two", "2 inputs"),
                                       ("corrupt", "not a readable ONNX model"), ("flat", "not a batch of images"),
                                       ("fp16", "fp32 model")])
def test_onnx_sources_edgepack_cannot_start_from_are_refused_in_one_line(tmp_path, case, says):
    from onnx import TensorProto, helper
    path = tmp_path / f"{case}.onnx"
    if case == "quantized":
        _onnx(path, [("x", [1, 1, 4, 4])], [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
                                             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])],
              {"s": np.array(0.1, np.float32), "z": np.array(0, np.int8)}, [1, 1, 4, 4])
    elif case == "two":
        _onnx(path, [("a", [1, 1, 4, 4]), ("b", [1, 1, 4, 4])], [helper.make_node("Add", ["a", "b"], ["y"])], {},
              [1, 1, 4, 4])
    elif case == "corrupt":
        path.write_bytes(b"\x08\x07not an onnx model at all")
    elif case == "flat":
        _onnx(path, [("x", [1, 16])], [helper.make_node("Relu", ["x"], ["y"])], {}, [1, 16])
    else:
        _onnx(path, [("x", [1, 1, 4, 4])], [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)], {},
              [1, 1, 4, 4], in_type=TensorProto.FLOAT16)
    with pytest.raises(ModelError) as e:
        backend_for_file(path).load(path)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_compacted_int8_names_never_take_a_kept_input_or_output_name(tmp_path):
    """The legacy torch exporter names graph outputs '9', '12': compacting must not give an inner tensor that name."""
    import onnxruntime as ort
    from onnx import helper

    from edgepack.exporters.onnx_int8 import compact_names
    path = _onnx(tmp_path / "m.onnx", [("x", [1, 1, 4, 4])],
                 [helper.make_node("Relu", ["x"], ["inner"]), helper.make_node("Neg", ["inner"], ["y"])], {}, [1, 1, 4, 4])
    import onnx
    m = onnx.load(str(path))
    m.graph.output[0].name = "0"
    m.graph.node[1].output[0] = "0"
    onnx.save(m, str(path))
    assert compact_names(path)["compacted"]
    x = np.random.default_rng(0).standard_normal((1, 1, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(ort.InferenceSession(str(path)).run(["0"], {"x": x})[0], -np.maximum(x, 0))


def test_preprocessing_flags_parse_and_apply():
    from edgepack.toolkit.data.dataset import Dataset, parse_preprocessing
    from edgepack.toolkit.errors import OptionError
    assert parse_preprocessing(None, None, None) is None
    assert parse_preprocessing("0.5", "0.25", None) == {"scale": 1 / 255.0, "mean": [0.5], "std": [0.25]}
    for args, says in [(("0.5", None, None), "go together"), (("a", "1", None), "comma-separated numbers"),
                       (("0", "0", None), "> 0"), ((None, None, -1.0), "--scale must be > 0")]:
        with pytest.raises(OptionError, match=says):
            parse_preprocessing(*args)
    x = np.full((2, 4, 4, 3), 255, np.uint8)
    ds = Dataset("rgb", "mem", x, np.zeros(2, np.int64), x, np.zeros(2, np.int64), ["a"], (0.5,) * 3, (0.25,) * 3)
    assert ds.with_preprocessing(None) is ds
    raw = ds.with_preprocessing({"mean": [0.0], "std": [1.0], "scale": 1.0})      # a model that takes 0..255 pixels
    assert raw.normalize(x[:1]).max() == 255.0 and ds.normalize(x[:1]).max() == 2.0
    assert raw.preprocessing()["mean"] == [0.0, 0.0, 0.0] and raw.preprocessing()["scale"] == 1.0
    with pytest.raises(OptionError, match="has 2 values; rgb images have 3 channel"):
        ds.with_preprocessing({"mean": [0.1, 0.2], "std": [1.0]})


# ----------------------------------------------------------------------------------------------- integration tier
def _cli(*args):
    return subprocess.run([sys.executable, "-m", "edgepack.toolkit.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=900, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_export_from_a_users_fp32_tflite_is_verified_against_it(exported, tmp_path):
    """The Keras fp32 .tflite as a user would bring it (no record): tf2onnx makes its ONNX, every export is checked
    against the .tflite's own outputs in LiteRT; its int8 sibling is refused as a source."""
    src = tmp_path / "users.tflite"
    shutil.copyfile(exported["keras"]["tflite"].path, src)
    r = _cli("export", src, "--to", "onnx,onnx-int8,tflite-int8", "--data", "mnist", "--data-dir", MNIST_DIR,
             "--out", tmp_path / "out", "--verify-images", "500", "--calibration-samples", "100")
    assert r.returncode == 0, r.stderr[-3000:]
    for name in ("users.onnx", "users.int8.onnx", "users.int8.tflite"):
        rec = json.loads((tmp_path / "out" / f"{name}.json").read_text())
        assert rec["verification"]["passed"] and rec["framework"] == "tflite", name
        assert rec["parent"]["file"] == str(src)
    onnx_ver = json.loads((tmp_path / "out" / "users.onnx.json").read_text())["verification"]
    assert onnx_ver["max_abs_diff"] <= 1e-4 and onnx_ver["top1_agreement"] == 1.0    # tf2onnx == the .tflite in LiteRT
    int8 = tmp_path / "int8.tflite"
    shutil.copyfile(exported["keras"]["tflite-int8"].path, int8)
    r = _cli("export", int8, "--to", "onnx", "--data", "mnist", "--data-dir", MNIST_DIR, "--out", tmp_path / "o2")
    assert r.returncode == 2 and "already quantized" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]


def test_deploy_from_a_users_fixed_batch_nchw_onnx(trained, tmp_path):
    """A PyTorch model exported the way many users do (legacy exporter, batch fixed at 1, no record): deploy needs
    --data, then every candidate comes from that file, is verified against it, and the pick keeps the budget."""
    import torch

    from edgepack.toolkit.api import load_checkpoint
    from edgepack.toolkit.deploy import deploy
    from edgepack.toolkit.deploy.budgets import Budgets
    src = tmp_path / "users.onnx"
    model = load_checkpoint(trained["torch"]).model.eval()
    torch.onnx.export(model, (torch.zeros(1, 1, 28, 28),), str(src), dynamo=False, opset_version=17)
    r = _cli("deploy", src, "--out", tmp_path / "d")
    assert r.returncode == 2 and "pass --data" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    res = deploy(src, tmp_path / "d", "mnist", str(MNIST_DIR), Budgets(max_accuracy_drop=0.5), mixed=False,
                 runtimes=["onnxruntime", "litert"], progress=lambda m: None)
    rows = res["rows"]
    failed = [(r.label, r.error) for r in rows if r.error]
    assert not failed, failed
    assert {"tflite int8", "onnx int8 (portable 7-bit weights)", "tflite fp32"} <= {r.label for r in rows}
    best = res["best"]
    info = json.loads((tmp_path / "d" / "deploy.json").read_text())
    assert best.accuracy >= info["reference_accuracy"] - 0.5
    manifest = json.loads((tmp_path / "d" / f"best{best.file[best.file.rindex('.'):]}.json").read_text())
    assert manifest["framework"] == "onnx" and manifest["parent"]["file"] == str(src)
    assert manifest["verification"]["passed"]


def test_a_users_model_with_its_own_input_scale_exports_with_mean_std_flags(trained, tmp_path):
    """A model that takes [0, 1] pixels (its normalisation inside the graph), as many users export them: with
    --mean 0 --std 1 its source accuracy is the trained model's, both int8 routes (ORT calibration, onnx2tf with the
    scale folded into its mean/std) pass verification, and the records carry the preprocessing for `bench`."""
    import torch

    from edgepack.toolkit.api import dataset_for, load_checkpoint
    loaded = load_checkpoint(trained["torch"])
    ds = dataset_for(loaded, "mnist", str(MNIST_DIR))
    inner = loaded.model.eval()
    mean, std = float(ds.mean[0]), float(ds.std[0])

    class ZeroOne(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner((x - mean) / std)
    src = tmp_path / "zero_one.onnx"
    torch.onnx.export(ZeroOne().eval(), (torch.zeros(1, 1, 28, 28),), str(src), dynamo=False, opset_version=17,
                      dynamic_axes={"input": {0: "n"}}, input_names=["input"])
    r = _cli("export", src, "--to", "onnx-int8,tflite-int8", "--data", "mnist", "--data-dir", MNIST_DIR, "--mean", "0",
             "--std", "1", "--out", tmp_path / "out", "--verify-images", "500", "--calibration-samples", "100")
    assert r.returncode == 0, r.stderr[-3000:]
    x, y = ds.test_subset(500, seed=0)
    trained_acc = float((loaded.backend.predict(inner, ds.normalize(x, "NCHW")).argmax(1) == y).mean())
    for name in ("zero_one.int8.onnx", "zero_one.int8.tflite"):
        rec = json.loads((tmp_path / "out" / f"{name}.json").read_text())
        ver = rec["verification"]
        assert ver["passed"] and abs(ver["source_accuracy"] - trained_acc) < 0.005, (name, ver["source_accuracy"], trained_acc)
        assert rec["dataset"]["preprocessing"]["mean"] == [0.0] and rec["dataset"]["preprocessing"]["std"] == [1.0]


import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from edgepack.exporters import get_exporter, list_exporters
from edgepack.exporters.api import export_checkpoint, export_model, raise_on_failures
from edgepack.exporters.base import ExportOptions
from edgepack.exporters.verify import VerificationError
from tests.conftest import MNIST_DIR
from edgepack.toolkit.errors import OptionError

OPTS = ExportOptions(verify_images=512, calibration_samples=100)


def test_registry_lists_every_format_once():
    names = list_exporters()
    assert len(names) == len(set(names))
    assert {"onnx", "onnx-int8", "onnx-int8-dynamic", "tflite", "tflite-int8", "tflite-dynamic", "tflite-fp16",
            "tflite-sparse", "sparse", "weights-uint8"} <= set(names)
    with pytest.raises(OptionError, match="available"):
        get_exporter("coreml")


def test_missing_onnx2tf_is_one_line_saying_how_to_install(monkeypatch):
    """The `all` extra leaves onnx2tf out (its ai-edge-litert pin contradicts litert-torch's): --no-deps."""
    from edgepack.exporters.tflite import import_onnx2tf
    monkeypatch.setitem(sys.modules, "onnx2tf", None)            # import onnx2tf -> ImportError
    with pytest.raises(OptionError) as e:
        import_onnx2tf()
    assert "\n" not in str(e.value) and "edgepack[onnx2tf]" in str(e.value) and "--no-deps onnx2tf==" in str(e.value)


@pytest.mark.parametrize("fw", ["torch", "keras"])
@pytest.mark.parametrize("fmt", list_exporters())
def test_every_format_exports_and_verifies(exported, fw, fmt):
    from edgepack.toolkit.backends import get_backend
    exp = get_exporter(fmt)
    if not exp.accepts(get_backend(fw)):
        pytest.skip(f"{fmt} is not produced from {fw} ({exp.why_not(get_backend(fw))})")
    r = exported[fw][fmt]
    assert r.ok, r.error
    assert r.path.is_file() and r.path.suffix == exp.suffix
    v = r.verification
    assert v.images >= 512 and v.classes_covered == 10
    atol, min_agreement = exp.criteria(OPTS)
    if atol is not None:                                      # exact formats: same numbers, same decisions
        assert v.max_abs_diff <= atol and v.top1_agreement >= min_agreement
    else:                                                     # quantized: accuracy kept within its margin
        assert -v.accuracy_delta_pp <= v.max_accuracy_drop_pp + 2 * v.accuracy_delta_se_pp
        assert v.confident_agreement is None or v.confident_agreement >= v.min_confident_agreement
    man = json.loads(r.path.with_name(r.path.name + ".json").read_text())
    assert man["format"] == fmt and man["verification"]["passed"] is True
    assert man["sizes"]["bytes"] == r.path.stat().st_size
    assert man["sizes"]["gzip_bytes"] == len(gzip.compress(r.path.read_bytes(), 9, mtime=0))
    assert [s["step"] for s in man["steps"]] == ["train", "export"]
    assert "onnxruntime" in man["metrics"]["versions"]


def test_onnx_int8_is_qdq_with_per_channel_weights(exported):
    import onnx
    for fw in ("torch", "keras"):
        r = exported[fw]["onnx-int8"]
        m = onnx.load(str(r.path))
        ops = [n.op_type for n in m.graph.node]
        assert ops.count("QuantizeLinear") >= 2 and ops.count("DequantizeLinear") >= 3
        calib = r.record.steps[-1]["details"]["calibration"]
        assert calib["split"].startswith("train") and calib["samples"] == 100
        inits = {i.name: i for i in m.graph.initializer}
        weight_dq = [n for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
                     and len(inits[n.input[0]].dims) == 4]                       # conv weights
        assert weight_dq and all(inits[n.input[1]].dims[0] > 1 for n in weight_dq), "expected per-channel weight scales"


def test_int8_onnx_names_are_compacted_losslessly(exported):
    import onnx
    r = exported["torch"]["onnx-int8"]
    names = r.record.steps[-1]["details"]["names"]
    assert names["compacted"] and names["bytes_after"] < names["bytes_before"]
    m = onnx.load(str(r.path))
    assert m.graph.input[0].name == "input" and m.graph.output[0].name == "logits"
    assert max(len(i.name) for i in m.graph.initializer) <= 4 and not any(n.name for n in m.graph.node)
    assert r.ok and r.verification.passed                             # verified after compaction


def test_onnx_files_are_written_portable(exported):
    """torch's dynamo exporter tags every node with module paths and FX nodes (~300 B a node) and writes IR 10,
    which ONNX Runtime before 1.18 refuses; ORT's quantizer declares opsets no node uses. None of it in the files."""
    import onnx
    for fw, fmt in [(fw, fmt) for fw in ("torch", "keras") for fmt in ("onnx", "onnx-int8", "onnx-int8-dynamic")]:
        m = onnx.load(str(exported[fw][fmt].path))
        assert not any(len(n.metadata_props) for n in m.graph.node) and not len(m.graph.metadata_props), fmt
        assert m.ir_version == onnx.helper.find_min_ir_version_for(list(m.opset_import), ignore_unknown=True) <= 9, fmt
        assert {o.domain for o in m.opset_import} == {""} | {n.domain for n in m.graph.node}, (fw, fmt)
    fp32 = onnx.load(str(exported["torch"]["onnx"].path))                # names the layers are matched by stay
    assert any(i.name.endswith(".weight") for i in fp32.graph.initializer) and all(n.name for n in fp32.graph.node)


def test_portability_pass_lowers_ir_only_as_far_as_opsets_and_types_allow():
    import onnx
    from onnx import TensorProto, helper
    from edgepack.toolkit.backends.onnx_portable import make_portable

    def model(init_type=TensorProto.FLOAT, functions=()):
        node = helper.make_node("Relu", ["x"], ["y"])
        node.metadata_props.add(key="pkg.torch.onnx.fx_node", value="%relu : call_function[...]")
        graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                                  initializer=[helper.make_tensor("w", init_type, [1], [0])])
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1),
                                                    helper.make_opsetid("ai.onnx.training", 1)], functions=list(functions))
        m.ir_version = 10
        return m
    m = model()
    done = make_portable(m)
    onnx.checker.check_model(m)
    assert m.ir_version == 8 and done["ir_version"] == {"from": 10, "to": 8}           # opset 18 needs IR 8
    assert [o.domain for o in m.opset_import] == [""] and done["opsets_removed"] == ["com.microsoft", "ai.onnx.training"]
    assert not len(m.graph.node[0].metadata_props) and done["debug_metadata_removed"] == 1
    f8 = model(TensorProto.FLOAT8E4M3FN)
    make_portable(f8)
    assert f8.ir_version == 9                                                          # float8 types came with IR 9
    assert make_portable(f8) == {"debug_metadata_removed": 0}                          # a second pass changes nothing
    fn = helper.make_function("local", "f", ["a"], ["b"], [helper.make_node("Relu", ["a"], ["b"])],
                              [helper.make_opsetid("", 18)])
    with_fn = model(functions=[fn])
    make_portable(with_fn)
    assert with_fn.ir_version == 10 and len(with_fn.opset_import) == 3                 # local functions: left as they are


def test_onnx_dynamic_uses_weight_type_ort_runs(exported):
    import onnx
    from onnx import TensorProto
    m = onnx.load(str(exported["torch"]["onnx-int8-dynamic"].path))
    ops = {n.op_type for n in m.graph.node}
    assert "ConvInteger" in ops or "MatMulInteger" in ops or "DynamicQuantizeLinear" in ops
    inits = {i.name: i for i in m.graph.initializer}
    weights = [inits[n.input[1]] for n in m.graph.node if n.op_type in ("ConvInteger", "MatMulInteger") and n.input[1] in inits]
    assert weights and all(w.data_type == TensorProto.UINT8 for w in weights)


@pytest.mark.parametrize("fw", ["torch", "keras"])
def test_full_integer_tflite_has_only_integer_io_and_ops(exported, fw):
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_path=str(exported[fw]["tflite-int8"].path))
    interp.allocate_tensors()
    assert interp.get_input_details()[0]["dtype"] == np.int8
    assert interp.get_output_details()[0]["dtype"] == np.int8
    assert tuple(interp.get_input_details()[0]["shape"][1:]) == (28, 28, 1)          # NHWC, documented
    ops = {d["op_name"] for d in interp._get_ops_details()}
    assert "DEQUANTIZE" not in ops, ops
    conv = [d for d in interp.get_tensor_details() if d["dtype"] == np.float32]
    assert not conv, [d["name"] for d in conv][:5]


def test_files_load_in_their_runtime_alone(exported, tmp_path, mnist_small):
    files = [str(exported["torch"]["tflite-int8"].path), str(exported["keras"]["tflite"].path),
             str(exported["torch"]["onnx"].path), str(exported["keras"]["onnx-int8"].path)]
    x = mnist_small.normalize(mnist_small.x_test[:1])
    np.save(tmp_path / "x.npy", x)
    script = f"""
import sys, numpy as np
x = np.load({str(tmp_path / 'x.npy')!r})
import onnxruntime as ort
from ai_edge_litert.interpreter import Interpreter
for f in {files!r}:
    if f.endswith('.onnx'):
        s = ort.InferenceSession(f, providers=['CPUExecutionProvider'])
        i = s.get_inputs()[0]
        feed = x.transpose(0, 3, 1, 2) if i.shape[1] == 1 else x
        out = s.run(None, {{i.name: feed}})[0]
    else:
        it = Interpreter(model_path=f); it.allocate_tensors()
        d = it.get_input_details()[0]
        feed = x
        if d['dtype'] == np.int8:
            s_, z = d['quantization']; feed = np.round(x / s_ + z).clip(-128, 127).astype(np.int8)
        it.set_tensor(d['index'], feed); it.invoke(); out = it.get_tensor(it.get_output_details()[0]['index'])
    assert out.shape == (1, 10), out.shape
assert 'torch' not in sys.modules and 'tensorflow' not in sys.modules
print('ok')
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]


def test_sparse_archive_round_trip_is_bit_exact_and_small(trained, mnist_small, tmp_path):
    import onnx
    from onnx import numpy_helper
    from edgepack.exporters.sparse_archive import read_archive
    from edgepack.toolkit.api import load_checkpoint
    loaded = load_checkpoint(trained["torch"])
    with __import__("torch").no_grad():                     # 80% magnitude sparsity on every weight matrix
        for p in loaded.model.parameters():
            if p.ndim > 1:
                p[p.abs() <= p.abs().flatten().kthvalue(int(0.8 * p.numel())).values] = 0
    res = {r.format: r for r in export_model(loaded.model, ["onnx", "sparse"], mnist_small, tmp_path, OPTS, verbose=False)}
    assert res["sparse"].ok and res["onnx"].ok
    dense = onnx.load(str(res["onnx"].path))
    data, header = read_archive(res["sparse"].path)
    back = onnx.ModelProto()
    back.ParseFromString(data)
    onnx.checker.check_model(back)
    want = {i.name: numpy_helper.to_array(i) for i in dense.graph.initializer}
    got = {i.name: numpy_helper.to_array(i) for i in back.graph.initializer}
    assert want.keys() == got.keys()
    for k in want:
        assert want[k].dtype == got[k].dtype and want[k].tobytes() == got[k].tobytes(), k
    details = res["sparse"].record.steps[-1]["details"]
    assert details["sparsity"] > 0.79
    size = res["sparse"].path.stat().st_size
    assert size < len(gzip.compress(res["onnx"].path.read_bytes(), 9))
    assert size <= 1.15 * details["size_bound_bytes"]


def test_weights_uint8_archive_loads_back_to_float(exported):
    from edgepack.exporters.sparse_archive import read_archive
    import onnx
    data, header = read_archive(exported["torch"]["weights-uint8"].path)
    assert header["kind"] == "weights-uint8"
    m = onnx.ModelProto()
    m.ParseFromString(data)
    stored = {t["name"] for t in header["tensors"]}
    assert stored and all(t["encoding"] == "minmax-uint8" for t in header["tensors"])
    back = {i.name: i for i in m.graph.initializer}
    assert stored <= set(back) and all(back[n].data_type == onnx.TensorProto.FLOAT for n in stored)
    assert exported["torch"]["weights-uint8"].path.stat().st_size < 0.5 * exported["torch"]["onnx"].path.stat().st_size


def test_failed_verification_keeps_flagged_file_and_raises(trained, mnist_small, tmp_path, monkeypatch):
    from edgepack.exporters.onnx_int8 import OnnxInt8DynamicExporter
    from edgepack.toolkit.api import load_checkpoint
    monkeypatch.setattr(OnnxInt8DynamicExporter, "atol", 1e-9)          # impossible for int8
    loaded = load_checkpoint(trained["torch"])
    results = export_model(loaded.model, ["onnx-int8-dynamic"], mnist_small, tmp_path, OPTS, verbose=False)
    assert not results[0].ok and "max abs logit difference" in results[0].error
    assert results[0].path.name == "model.int8-dynamic.FAILED.onnx" and results[0].path.is_file()
    assert json.loads(results[0].path.with_name(results[0].path.name + ".json").read_text())["verification"]["passed"] is False
    assert not (tmp_path / "model.int8-dynamic.onnx").exists()
    with pytest.raises(VerificationError, match="onnx-int8-dynamic"):
        raise_on_failures(results)


def test_format_framework_mismatch_and_bad_options(trained, tmp_path):
    with pytest.raises(OptionError, match="cannot be produced from a torch model"):
        export_checkpoint(trained["torch"], ["tflite-sparse"], tmp_path, data_dir=MNIST_DIR)
    with pytest.raises(OptionError, match="calibration method"):
        ExportOptions(calibration_method="kl")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "edgepack.toolkit.cli", *args], capture_output=True, text=True, timeout=300)


def test_unreadable_torch_checkpoints_say_what_the_file_is_not(tmp_path):
    import torch
    from edgepack.toolkit.backends.torch.model import load
    from edgepack.toolkit.errors import ModelError
    torch.save({"w": torch.zeros(100)}, tmp_path / "good.pt")
    (tmp_path / "truncated.pt").write_bytes((tmp_path / "good.pt").read_bytes()[:300])
    (tmp_path / "text.pt").write_bytes(b"not a checkpoint")
    for name, says in (("truncated.pt", "a damaged or truncated torch.save archive: "),
                       ("text.pt", "neither a torch.save archive nor a pickle: ")):
        with pytest.raises(ModelError) as e:
            load(tmp_path / name)
        assert says in str(e.value) and "weights_only" not in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_cli_export_lists_formats_and_rejects_bad_input(tmp_path, trained):
    r = _cli("export", "--help")
    assert r.returncode == 0 and "tflite-int8" in r.stdout and "weights-uint8" in r.stdout
    corrupt = tmp_path / "broken.pt"
    corrupt.write_bytes(b"not a checkpoint")
    for args, needle in [((str(tmp_path / "missing.pt"), "--to", "onnx"), "missing.pt: not found"),
                         ((str(trained["torch"]), "--to", "onnx,bogus"), "unknown export format"),
                         ((str(corrupt), "--to", "onnx"), "not a readable PyTorch checkpoint")]:
        r = _cli("export", *args, "--data-dir", str(MNIST_DIR), "--out", str(tmp_path / "o"))
        assert r.returncode != 0 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_cli_export_end_to_end(trained, tmp_path):
    r = _cli("export", str(trained["keras"]), "--to", "tflite-int8,onnx", "--data-dir", str(MNIST_DIR),
             "--out", str(tmp_path), "--io-dtype", "uint8")
    assert r.returncode == 0, r.stderr[-1500:]
    man = json.loads((tmp_path / "model.int8.tflite.json").read_text())
    assert man["steps"][-1]["details"]["io_dtype"] == "uint8" and man["verification"]["passed"]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".json")) == ["model.int8.tflite", "model.onnx"]


def test_onnx2tf_route_from_a_keras_model_keeps_nhwc(trained, mnist_small, tmp_path):
    """tf2onnx graphs take NHWC input; onnx2tf must be told, or it reads (N, 28, 28, 1) as NCHW and int8 fails."""
    from edgepack.toolkit.api import load_checkpoint
    loaded = load_checkpoint(trained["keras"])
    import gc
    import warnings
    path_before, cwd_before = os.environ.get("PATH"), os.getcwd()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        res = export_model(loaded.model, ["tflite-int8"], mnist_small, tmp_path,
                           ExportOptions(tflite_route="onnx2tf", calibration_samples=50), verbose=False)
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning) and "devnull" in str(w.message)]
    assert res[0].ok, res[0].error
    assert res[0].record.steps[-1]["details"]["route"] == "onnx2tf"
    assert os.environ.get("PATH") == path_before and os.getcwd() == cwd_before     # nothing process-wide left changed


def test_export_uses_the_data_folder_recorded_at_training(tmp_path):
    from edgepack.toolkit.api import train
    from edgepack.toolkit.train import TrainConfig
    res = train("torch", "mnist-tutorial", "mnist", str(MNIST_DIR), out=tmp_path / "ckpt",
                config=TrainConfig(epochs=1, batch_size=512, val_fraction=0.0), verbose=False)
    (r,) = export_checkpoint(res.checkpoint, ["onnx"], tmp_path / "out", verbose=False)     # no --data, no --data-dir
    assert r.ok and r.record.dataset["source"] == str(MNIST_DIR)


@pytest.mark.slow
def test_users_own_models_export_and_verify(tmp_path):
    """Models not built from an edgepack description: a torchvision network and a plain Keras Sequential."""
    import torchvision
    from edgepack.toolkit.data import Dataset
    from edgepack.toolkit.tf_import import import_tensorflow
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (600, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, 600)
    ds = Dataset("synthetic", "random pixels", x[:512], y[:512], x, y, [str(i) for i in range(10)], (0.5,) * 3, (0.25,) * 3)
    tv = torchvision.models.mobilenet_v2(num_classes=10).eval()
    res = export_model(tv, ["onnx", "sparse"], ds, tmp_path / "tv", ExportOptions(verify_images=600), verbose=False)
    assert all(r.ok for r in res), [r.error for r in res]
    assert res[0].record.arch is None and res[0].verification.max_abs_diff <= 1e-4
    tf = import_tensorflow()
    km = tf.keras.Sequential([tf.keras.Input((32, 32, 3)), tf.keras.layers.Conv2D(8, 3, activation="relu"),
                              tf.keras.layers.GlobalAveragePooling2D(), tf.keras.layers.Dense(10)])
    res = export_model(km, ["tflite", "onnx"], ds, tmp_path / "keras", ExportOptions(verify_images=600), verbose=False)
    assert all(r.ok for r in res), [r.error for r in res]


def _weight_scales(path):
    """{weight tensor shape: number of quantization scales} for the int8 constant tensors of a .tflite file."""
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_path=str(path))
    return {tuple(d["shape"]): len(d["quantization_parameters"]["scales"]) for d in interp.get_tensor_details()
            if d["dtype"] == np.int8 and len(d["shape"]) >= 2 and d["shape"][0] > 1}


def test_dense_per_tensor_weights_keep_convs_per_channel(trained, mnist_small, tmp_path):
    from edgepack.toolkit.api import load_checkpoint
    loaded = load_checkpoint(trained["keras"])
    opts = ExportOptions(verify_images=512, calibration_samples=100, dense_per_channel=False)
    (res,) = export_model(loaded.model, ["tflite-int8"], mnist_small, tmp_path, opts, verbose=False)
    assert res.ok, res.error
    scales = _weight_scales(res.path)
    assert scales[(10, 2028)] == 1                    # FullyConnected weights: one scale
    assert scales[(12, 3, 3, 1)] == 12                # conv weights: still one per filter
    assert res.record.steps[-1]["details"]["weights"] == "int8 per-channel (Dense per-tensor)"
    # dynamic range: per-channel Dense weights need a newer runtime (FULLY_CONNECTED v12) than the last
    # tflite-runtime, so the default there is per tensor; asked for, per channel is written, recorded and explained
    from edgepack.exporters.tflite import LAST_TFLITE_RUNTIME, _newer
    (default,) = export_model(loaded.model, ["tflite-dynamic"], mnist_small, tmp_path / "d",
                              ExportOptions(verify_images=512), verbose=False)
    (per_channel,) = export_model(loaded.model, ["tflite-dynamic"], mnist_small, tmp_path / "pc",
                                  ExportOptions(verify_images=512, dense_per_channel=True), verbose=False)
    assert default.ok and per_channel.ok
    d, pc = (r.record.steps[-1]["details"] for r in (default, per_channel))
    assert d["weights"] == "int8 per-channel (Dense per-tensor)" and pc["weights"] == "int8 per-channel"
    assert _weight_scales(default.path)[(10, 2028)] == 1 and _weight_scales(per_channel.path)[(10, 2028)] == 10
    assert not _newer(d["min_runtime_version"], LAST_TFLITE_RUNTIME) and "runtime_note" not in d
    assert _newer(pc["min_runtime_version"], LAST_TFLITE_RUNTIME)
    assert f"needs TFLite >= {pc['min_runtime_version']}" in pc["runtime_note"] and "--dense-per-channel" in pc["runtime_note"]
    # full-integer files keep per-channel Dense weights by default (TFLite 1.14 loads them)
    (int8,) = export_model(loaded.model, ["tflite-int8"], mnist_small, tmp_path / "i",
                           ExportOptions(verify_images=512, calibration_samples=100), verbose=False)
    assert _weight_scales(int8.path)[(10, 2028)] == 10 and not _newer(int8.record.steps[-1]["details"]["min_runtime_version"], LAST_TFLITE_RUNTIME)
    # the PyTorch route (onnx2tf) quantizes every layer one way: the option is refused with a clear message
    (bad,) = export_checkpoint(trained["torch"], ["tflite-int8"], tmp_path / "t", data_dir=MNIST_DIR, options=opts, verbose=False)
    assert not bad.ok and "converter TFLite route" in bad.error


def test_tensorflow_start_up_chatter_stays_off_stderr(trained, tmp_path):
    """The onnx2tf route imports TensorFlow too: its CUDA-plugin registration lines must not reach the terminal."""
    import os
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "EDGEPACK_DEBUG")}
    r = subprocess.run([sys.executable, "-m", "edgepack.toolkit.cli", "export", str(trained["torch"]), "--to", "tflite-int8",
                        "--data-dir", str(MNIST_DIR), "--out", str(tmp_path)], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-1500:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgepack: data: mnist"), r.stderr[-1500:]


def test_sparse_archive_criteria_follow_the_options_without_mutating_the_exporter():
    exp = get_exporter("sparse")
    assert exp.criteria(ExportOptions(sparse_values="int8")) == (None, None)     # lossy values: judged as quantized
    assert exp.criteria(ExportOptions()) == (1e-4, 1.0) and exp.atol == 1e-4    # lossless: exact, and unchanged

"""The Raspberry Pi path: a venv with only `edgepack[runtime]` (numpy, onnxruntime, ai-edge-litert, pillow)
benchmarks .onnx, .tflite and .epk files without torch or TensorFlow installed at all."""
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import MNIST_DIR, ROOT

pytestmark = pytest.mark.slow


def test_bench_in_runtime_only_venv(runtime_venv, exported, tmp_path):
    py = runtime_venv
    freeze = subprocess.run([str(py), "-m", "pip", "freeze"], capture_output=True, text=True).stdout.lower()
    assert "onnxruntime==" in freeze and "ai-edge-litert==" in freeze
    for heavy in ("torch==", "tensorflow==", "onnx==", "tf-keras=="):
        assert heavy not in freeze
    files = [exported["torch"]["onnx-int8"].path, exported["keras"]["tflite-int8"].path, exported["torch"]["sparse"].path]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([str(py), "-m", "edgepack.toolkit.cli", "bench", *map(str, files), "--data", "mnist", "--data-dir", str(MNIST_DIR),
                        "--runs", "10", "--min-seconds", "0", "--json", str(tmp_path / "r.json"), "--report", str(tmp_path / "rep")],
                       capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = json.loads((tmp_path / "r.json").read_text())["results"]
    assert [x["ok"] for x in rows] == [True, True, True]
    assert all(x["accuracy"] > 0.5 and x["macs"] == 93288 for x in rows)
    assert (tmp_path / "rep" / "report.md").is_file()       # plots are skipped without matplotlib, the report is not


def _foreign_models(tmp_path):
    """A 1x3x64x64 .onnx (torch) and a 64x64x3 .tflite (Keras): models no built-in data set fits."""
    import torch
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(8, 5)).eval()
    onnx_path = tmp_path / "foreign.onnx"
    torch.onnx.export(net, (torch.zeros(1, 3, 64, 64),), str(onnx_path), dynamo=False, input_names=["x"])
    from edgepack.toolkit.tf_import import import_tensorflow
    tf = import_tensorflow()
    m = tf.keras.Sequential([tf.keras.Input((64, 64, 3)), tf.keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
                             tf.keras.layers.GlobalAveragePooling2D(), tf.keras.layers.Dense(5)])
    tfl_path = tmp_path / "foreign.tflite"
    tfl_path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(m).convert())
    return [onnx_path, tfl_path]


def test_synthetic_bench_times_models_no_data_set_fits(runtime_venv, tmp_path):
    files = _foreign_models(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for data in (["--data", "synthetic"], ["--data", "mnist", "--data-dir", str(MNIST_DIR)]):
        r = subprocess.run([str(runtime_venv), "-m", "edgepack.toolkit.cli", "bench", *map(str, files), *data, "--runs", "10",
                            "--min-seconds", "0", "--json", str(tmp_path / "r.json"), "--report", str(tmp_path / "rep")],
                           capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-3000:]
        rows = json.loads((tmp_path / "r.json").read_text())["results"]
        assert [x["ok"] for x in rows] == [True, True]
        assert all(x["accuracy"] is None and "accuracy not measured" in x["accuracy_note"] for x in rows)
        assert all(x["latency_ms"]["p50"] > 0 and x["input"]["source"] == "random" for x in rows)
        assert [x["input"]["shape"][1:] for x in rows] == [[3, 64, 64], [64, 64, 3]]
        assert "accuracy not measured" in r.stderr
        assert "not measured" in (tmp_path / "rep" / "report.md").read_text()


def _interpreter(minor: int):
    from pathlib import Path
    import shutil
    found = sorted((Path.home() / ".pyenv" / "versions").glob(f"3.{minor}.*/bin/python3.{minor}"))
    return str(found[-1]) if found else shutil.which(f"python3.{minor}")


def _venv_with(tmp_path, python, *pip_args) -> str:
    """A fresh venv from `python` with `pip install <pip_args>` (no bytecode compiling: half the install time)."""
    d = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(d)], check=True, timeout=300)
    r = subprocess.run([str(d / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "--no-compile", *pip_args], capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    return str(d / "bin" / "python")


@pytest.mark.parametrize("minor", [12, 13])
def test_runtime_extra_installs_and_benches_on_newer_pythons(minor, exported, tmp_path):
    """Ubuntu 24.04 (3.12) and Raspberry Pi OS trixie (3.13): `.[runtime]` from wheels, same accuracy as 3.11."""
    py = _interpreter(minor)
    if py is None:
        pytest.skip(f"python3.{minor} is not installed here")
    new_py = _venv_with(tmp_path, py, "--only-binary", "numpy,onnxruntime,ai-edge-litert,pillow", f"{ROOT}[runtime]")
    files = [exported["torch"]["onnx-int8"].path, exported["keras"]["tflite-int8"].path]
    out = subprocess.run([os.path.join(os.path.dirname(new_py), "edgepack"), "bench", *map(str, files), "--data", "mnist", "--data-dir",
                          str(MNIST_DIR), "--runs", "5", "--min-seconds", "0", "--json", str(tmp_path / "r.json")],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads((tmp_path / "r.json").read_text())["results"]
    assert all(x["machine"]["python"].startswith(f"3.{minor}.") for x in rows)
    from edgepack.benchmarks.harness import BenchSettings, benchmark
    here = benchmark(files, "mnist", str(MNIST_DIR), BenchSettings(runs=2, min_seconds=0), progress=lambda m: None)
    assert [x["accuracy"] for x in rows] == [h.accuracy for h in here]          # identical to Python 3.11's
    assert all(x["accuracy"] > 0.5 for x in rows)


OLD_RUNTIMES = {"onnxruntime": "1.17.3",    # the last ONNX Runtime line before IR 10 ("max supported IR version: 9")
                "tflite-runtime": "2.14.0"}  # the last tflite-runtime wheel (Raspberry Pi installs still use it)


def test_files_load_in_the_runtimes_devices_keep(exported, mnist_small, tmp_path):
    """Devices keep older runtimes. Every .onnx, from either framework, loads in ORT 1.17 and gives the current
    ORT's outputs (torch writes IR 10, which ORT 1.17 refuses, unless edgepack lowers it). Every .tflite written
    with the default options loads in tflite-runtime 2.14 (Keras dynamic-range files once needed 2.17 for their
    per-channel Dense weights), as its manifest's min_runtime_version says, with LiteRT's fp32 outputs."""
    import numpy as np
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter
    from edgepack.toolkit.record import ArtifactRecord
    if sys.version_info >= (3, 12):
        pytest.skip("tflite-runtime 2.14 has no wheel for Python 3.12 or later")
    old_py = _venv_with(tmp_path, sys.executable, "--only-binary", ":all:",
                        *(f"{k}=={v}" for k, v in OLD_RUNTIMES.items()), "numpy==1.26.4")
    x = ((mnist_small.x_test[:256].astype(np.float32) / 255 - 0.1307) / 0.3081)
    files = {f"{fw}-{fmt}": exported[fw][fmt].path for fw in ("torch", "keras")
             for fmt in ("onnx", "onnx-int8", "onnx-int8-dynamic", "tflite", "tflite-int8", "tflite-dynamic",
                         "tflite-fp16", "tflite-sparse") if fmt in exported[fw]}
    for name, path in files.items():
        if path.suffix == ".onnx":
            nchw = ort.InferenceSession(str(path)).get_inputs()[0].shape[-1] != 1
            np.save(tmp_path / f"{name}.x.npy", np.ascontiguousarray(x.transpose(0, 3, 1, 2) if nchw else x))
    code = ("import sys, json, numpy as np, onnxruntime as ort\n"
            "from tflite_runtime.interpreter import Interpreter\n"
            "out = {}\n"
            "for name, path in json.loads(sys.argv[1]).items():\n"
            "    try:\n"
            "        if path.endswith('.onnx'):\n"
            "            s = ort.InferenceSession(path, providers=['CPUExecutionProvider'])\n"
            "            y = s.run(None, {s.get_inputs()[0].name: np.load(sys.argv[2] + '/' + name + '.x.npy')})[0]\n"
            "        else:\n"
            "            it = Interpreter(model_path=path); it.allocate_tensors(); i = it.get_input_details()[0]\n"
            "            it.set_tensor(i['index'], np.zeros(i['shape'], i['dtype'])); it.invoke()\n"
            "            y = it.get_tensor(it.get_output_details()[0]['index'])\n"
            "        np.save(sys.argv[2] + '/' + name + '.old.npy', y); out[name] = 'ok'\n"
            "    except Exception as e:\n"
            "        out[name] = str(e)[:300]\n"
            "print(json.dumps(out))\n")
    run = subprocess.run([old_py, "-c", code, json.dumps({k: str(v) for k, v in files.items()}),
                          str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    loaded = json.loads(run.stdout.strip().splitlines()[-1])
    for name, path in files.items():
        old = tmp_path / f"{name}.old.npy"
        if path.suffix == ".onnx":
            assert loaded[name] == "ok", (name, loaded[name])
            s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            now = s.run(None, {s.get_inputs()[0].name: np.load(tmp_path / f"{name}.x.npy")})[0]
            if name.endswith("-onnx"):
                np.testing.assert_allclose(np.load(old), now, atol=1e-4, err_msg=name)
            else:                                      # int8 kernels may round differently between versions
                assert (np.load(old).argmax(1) == now.argmax(1)).mean() >= 0.98, name
            continue
        needs = ArtifactRecord.load(path).steps[-1]["details"]["min_runtime_version"]
        older = tuple(map(int, needs.split("."))) <= tuple(map(int, OLD_RUNTIMES["tflite-runtime"].split(".")))
        assert (loaded[name] == "ok") == older, (name, needs, loaded[name])
        assert older, (name, needs)                    # the default options write files the last wheel loads
        if older and name.endswith("-tflite"):         # fp32: LiteRT's outputs on the same (zero) input
            it = Interpreter(model_path=str(path))
            it.allocate_tensors()
            i = it.get_input_details()[0]
            it.set_tensor(i["index"], np.zeros(i["shape"], i["dtype"]))
            it.invoke()
            np.testing.assert_allclose(np.load(old), it.get_tensor(it.get_output_details()[0]["index"]), atol=1e-4)
    assert any(not files[n].suffix == ".onnx" and loaded[n] == "ok" for n in files)     # the claim is tested both ways


TFLITE_MICRO = "0.dev20261023182759"     # TensorFlow Lite for Microcontrollers' Python wheel (nightly builds only)


def test_full_integer_tflite_runs_in_tflite_micro(exported, mnist_small, tmp_path):
    """Microcontrollers run full-integer .tflite files in TensorFlow Lite Micro (MLPerf Tiny's runtime), whose
    reference kernels share no code with LiteRT's XNNPACK: the int8 files of both frameworks must load there and
    give LiteRT's outputs, within a few int8 steps (requantization rounding), with the same top-1 class. Then the
    same files through `edgepack bench --runtime litert,tflite-micro`: TFLite Micro's accuracy on the full test set
    beside LiteRT's, timed at one thread only, and the tensor arena it measured in the report."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter
    micro = tmp_path / "micro"                  # the wheel alone (its numpy, flatbuffers and PyYAML are this venv's)
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile",
                        "--no-deps", "--only-binary", ":all:", "--target", str(micro), f"tflite-micro=={TFLITE_MICRO}"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(micro)])}
    x = ((mnist_small.x_test[:256].astype(np.float32) / 255 - 0.1307) / 0.3081)
    files, litert = {}, {}
    for fw in ("torch", "keras"):
        path = exported[fw]["tflite-int8"].path
        it = Interpreter(model_path=str(path))
        it.allocate_tensors()
        i, o = it.get_input_details()[0], it.get_output_details()[0]
        scale, zero = i["quantization"]
        q = np.clip(np.round(x / scale + zero), -128, 127).astype(i["dtype"])
        q = q.reshape((len(q), *i["shape"][1:]))
        outs = []
        for k in range(len(q)):
            it.set_tensor(i["index"], q[k:k + 1])
            it.invoke()
            outs.append(it.get_tensor(o["index"]).copy())
        litert[fw] = np.concatenate(outs)
        np.save(tmp_path / f"{fw}.x.npy", q)
        files[fw] = str(path)
    code = ("import sys, json, numpy as np\n"
            "from tflite_micro.python.tflite_micro import runtime\n"
            "for name, path in json.loads(sys.argv[1]).items():\n"
            "    it = runtime.Interpreter.from_file(path, arena_size=1 << 22)\n"
            "    q = np.load(sys.argv[2] + '/' + name + '.x.npy'); out = []\n"
            "    for k in range(len(q)):\n"
            "        it.set_input(q[k:k + 1], 0); it.invoke(); out.append(it.get_output(0).copy())\n"
            "    np.save(sys.argv[2] + '/' + name + '.tflm.npy', np.concatenate(out))\n")
    run = subprocess.run([sys.executable, "-c", code, json.dumps(files), str(tmp_path)],
                         capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    for fw in files:
        micro_out = np.load(tmp_path / f"{fw}.tflm.npy")
        assert micro_out.shape == litert[fw].shape and micro_out.dtype == litert[fw].dtype
        assert np.abs(micro_out.astype(int) - litert[fw].astype(int)).max() <= 4, fw
        assert (micro_out.argmax(1) == litert[fw].argmax(1)).mean() >= 0.98, fw

    dynamic = str(exported["keras"]["tflite-dynamic"].path)     # float activations, int8 weights: TFLM has no kernels
    bench = subprocess.run([sys.executable, "-m", "edgepack.toolkit.cli", "bench", *files.values(), dynamic, "--runtime", "litert,tflite-micro",
                            "--threads", "1,2", "--data", "mnist", "--data-dir", str(MNIST_DIR), "--runs", "3",
                            "--min-seconds", "0", "--json", str(tmp_path / "r.json"), "--report", str(tmp_path / "rep")],
                           capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert bench.returncode == 2, bench.stderr[-3000:]                # the dynamic-range file's TFLM row is an error
    assert "TFLite Micro runs on at most 1 thread(s): timed at 1 only" in bench.stderr
    rows = json.loads((tmp_path / "r.json").read_text())["results"]
    per_file = [("litert", 1, True), ("litert", 2, True), ("tflite-micro", 1, True)]
    assert [(x["runtime"], x["threads"], x["ok"]) for x in rows] == per_file * 2 + per_file[:2] + [("tflite-micro", 1, False)]
    assert "TensorFlow Lite Micro cannot run it (Input type: FLOAT32 with filter type: INT8 not supported" in rows[-1]["error"]
    report = (tmp_path / "rep" / "report.md").read_text()
    for k in (0, 3):
        lite, tflm = rows[k], rows[k + 2]
        assert tflm["test_images"] == lite["test_images"] == 10_000
        assert abs(tflm["accuracy"] - lite["accuracy"]) <= 0.005      # the outputs above: within a few int8 steps
        arena = tflm["runtime_info"]["settings"]["tensor_arena_bytes"]
        assert 2_000 < arena < 200_000                                  # 28x28 activations, far below the 64 MiB offered
        assert f"| tflite-micro | {arena:,} | {tflm['size_bytes']:,} |" in report
    assert "## Same file, several runtimes" in report and "## Tensor arena" in report
    # the same results judged as a device's (`report merge`, `deploy --select`): an arena budget picks a TFLM row
    from edgepack.toolkit.deploy.budgets import Budgets
    from edgepack.toolkit.deploy.fleet import load_device
    from edgepack.toolkit.deploy.select import pick
    device = load_device(tmp_path / "r.json").rows
    arenas = sorted(r.arena for r in device if r.arena is not None)
    assert arenas == sorted(x["runtime_info"]["settings"]["tensor_arena_bytes"] for x in (rows[2], rows[5]))
    best = pick(device, Budgets(max_arena=arenas[0]), None)
    assert best.runtime == "tflite-micro" and best.arena == arenas[0]
    assert all(r.reasons for r in device if r.runtime == "litert")          # no arena measured: never waved through


DEVICE_FEATURES = r"""
import json, sys
from pathlib import Path
import numpy as np
from edgepack.toolkit.data.audio import MLPERF_WORDS, MfccFrontEnd, fit_clip, read_wav
from edgepack.runtimes import open_runner
root, model = Path(sys.argv[1]), sys.argv[2]
pre = json.loads(Path(model + ".json").read_text())["dataset"]["preprocessing"]
test = set((root / "testing_list.txt").read_text().split())
files = [f for d in sorted(p for p in root.iterdir() if p.is_dir() and p.name in MLPERF_WORDS)
         for f in sorted(d.glob("*.wav")) if f"{d.name}/{f.name}" in test]
fe = MfccFrontEnd.from_dict(pre["front_end"])
feats = np.stack([fe(fit_clip(read_wav(f), f)[0]) for f in files])[..., None]
x = (feats * pre["scale"] - np.float32(pre["mean"][0])) / np.float32(pre["std"][0])
runner = open_runner(model, threads=1)
top1 = [int(np.argmax(runner.predict(x[i:i + 1]))) for i in range(len(x))]          # one clip at a time, as a device
np.save(sys.argv[3], feats)
print(json.dumps({"top1": top1, "files": len(files)}))
"""


def test_keyword_clip_read_on_the_device_gives_trainings_features_and_top1(runtime_venv, tmp_path):
    """A WAV read in the runtime-only venv (NumPy front end, no torch or TensorFlow) gives the features training saw
    and, through the exported fp32 .onnx, the training model's top-1; bench there scores as bench here."""
    import shutil
    import numpy as np
    if shutil.which("espeak-ng") is None and os.environ.get("EDGEPACK_REQUIRE_DATA") != "1":
        pytest.skip("espeak-ng is not installed")
    from edgepack.exporters.api import export_model
    from edgepack.exporters.base import ExportOptions
    from edgepack.toolkit.api import TrainConfig, train
    from edgepack.toolkit.data import load_dataset
    from edgepack.toolkit.data.speech_synth import make_synthetic_speech
    root = tmp_path / "words"
    make_synthetic_speech(root, per_word=16, speakers=10, seed=2)
    ds = load_dataset("mywords", root)
    res = train("torch", "ds-cnn", ds, out=tmp_path / "torch", config=TrainConfig(epochs=3, batch_size=32), verbose=False)
    assert res.metrics["arch"] == "ds-cnn"
    out = export_model(res.model, ["onnx", "tflite-int8"], ds, tmp_path / "export",
                       ExportOptions(verify_images=200, calibration_samples=100), source_record=None,
                       source_path=res.checkpoint, verbose=False)
    onnx_file = next(r.path for r in out if r.format == "onnx")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EDGEPACK_CACHE": str(tmp_path / "device-cache")}
    r = subprocess.run([str(runtime_venv), "-c", DEVICE_FEATURES, str(root), str(onnx_file), str(tmp_path / "f.npy")],
                       capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    dev = json.loads(r.stdout)
    n = dev["files"]
    assert n > 20
    feats = np.load(tmp_path / "f.npy")
    assert np.abs(feats - ds.x_test[:n]).max() < 1e-3                  # the word clips lead the test split, in order
    logits = next(iter(res.backend.predict_outputs(res.model, ds.normalize(ds.x_test[:n], res.backend.LAYOUT)).values()))
    top2 = np.sort(logits, axis=1)[:, -2:]
    decided = top2[:, 1] - top2[:, 0] > 1e-3          # a near-tie may flip between CPUs' float kernels: not judged
    assert decided.mean() > 0.8
    assert (np.array(dev["top1"])[decided] == logits.argmax(1)[decided]).all()
    # bench in the device venv computes its own features from the WAVs (an empty cache) and scores as bench here
    files = [str(p.path) for p in out]
    cmd = ["-m", "edgepack.toolkit.cli", "bench", *files, "--data", "mywords", "--data-dir", str(root), "--runs", "5",
           "--min-seconds", "0", "--json"]
    scores = []
    for py, cache in ((str(runtime_venv), "device-cache"), (sys.executable, "host-cache")):
        r = subprocess.run([py, *cmd, str(tmp_path / f"{cache}.json")], capture_output=True, text=True, timeout=600,
                           env={**env, "EDGEPACK_CACHE": str(tmp_path / cache)}, cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-3000:]
        rows = json.loads((tmp_path / f"{cache}.json").read_text())["results"]
        assert all(x["ok"] and x["task"]["name"] == "keyword-spotting" for x in rows)
        assert all(x["quality"]["front_end"]["p50_ms"] > 0 for x in rows)
        assert "front end mfcc-mlperf-tiny" in r.stdout
        scores.append([x["accuracy"] for x in rows])
    assert scores[0] == scores[1]

"""The Raspberry Pi path: a venv with only `edgepack[runtime]` (numpy, onnxruntime, ai-edge-litert, pillow)
benchmarks .onnx, .tflite and .epk files without torch or TensorFlow installed at all."""
import json
import os
import subprocess

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
    r = subprocess.run([str(py), "-m", "toolkit.cli", "bench", *map(str, files), "--data", "mnist", "--data-dir", str(MNIST_DIR),
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
    from toolkit.tf_import import import_tensorflow
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
        r = subprocess.run([str(runtime_venv), "-m", "toolkit.cli", "bench", *map(str, files), *data, "--runs", "10",
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


@pytest.mark.parametrize("minor", [12, 13])
def test_runtime_extra_installs_and_benches_on_newer_pythons(minor, exported, tmp_path):
    """Ubuntu 24.04 (3.12) and Raspberry Pi OS trixie (3.13): `.[runtime]` from wheels, same accuracy as 3.11."""
    py = _interpreter(minor)
    if py is None:
        pytest.skip(f"python3.{minor} is not installed here")
    d = tmp_path / "venv"
    subprocess.run([py, "-m", "venv", str(d)], check=True, timeout=300)
    r = subprocess.run([str(d / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "--only-binary", "numpy,onnxruntime,ai-edge-litert,pillow", f"{ROOT}[runtime]"],
                       capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    files = [exported["torch"]["onnx-int8"].path, exported["keras"]["tflite-int8"].path]
    out = subprocess.run([str(d / "bin" / "edgepack"), "bench", *map(str, files), "--data", "mnist", "--data-dir",
                          str(MNIST_DIR), "--runs", "5", "--min-seconds", "0", "--json", str(tmp_path / "r.json")],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads((tmp_path / "r.json").read_text())["results"]
    assert all(x["machine"]["python"].startswith(f"3.{minor}.") for x in rows)
    from benchmarks.harness import BenchSettings, benchmark
    here = benchmark(files, "mnist", str(MNIST_DIR), BenchSettings(runs=2, min_seconds=0), progress=lambda m: None)
    assert [x["accuracy"] for x in rows] == [h.accuracy for h in here]          # identical to Python 3.11's
    assert all(x["accuracy"] > 0.5 for x in rows)

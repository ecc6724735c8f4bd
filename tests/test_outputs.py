"""Outputs never overwrite silently: train/compress/export refuse folders that would replace or mix results."""
import json
import subprocess
import sys

from tests.conftest import MNIST_DIR


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "toolkit.cli", *map(str, args)], capture_output=True, text=True, timeout=600)


def _one_line_error(r, needle):
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_train_refuses_a_folder_holding_a_checkpoint(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.pt").write_bytes(b"an earlier result")
    r = _cli("train", "--framework", "torch", "--arch", "mnist-tutorial", "--data", "mnist", "--data-dir", MNIST_DIR,
             "--epochs", "1", "--out", out)
    _one_line_error(r, "already holds a checkpoint (model.pt); pass --force")
    assert (out / "model.pt").read_bytes() == b"an earlier result"          # nothing destroyed


def test_out_naming_a_file_is_one_line(tmp_path):
    f = tmp_path / "a_file"
    f.write_text("x")
    r = _cli("train", "--framework", "torch", "--arch", "mnist-tutorial", "--data", "mnist", "--data-dir", MNIST_DIR,
             "--out", f)
    _one_line_error(r, "exists and is not a folder")


def test_compress_into_the_inputs_folder_is_an_error(trained):
    ckpt = trained["torch"]
    before = ckpt.read_bytes()
    r = _cli("compress", ckpt, "--steps", "prune(sparsity=0.5,epochs=1)", "--out", ckpt.parent, "--force")
    _one_line_error(r, "is the folder of the input")
    assert ckpt.read_bytes() == before


def test_export_refuses_a_folder_holding_another_models_exports(trained, tmp_path):
    out = tmp_path / "exports"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"another model")
    (out / "model.onnx.json").write_text(json.dumps({"kind": "export", "file": "model.onnx", "parent": {"sha256": "0" * 64}}))
    r = _cli("export", trained["torch"], "--to", "onnx", "--data-dir", MNIST_DIR, "--out", out)
    _one_line_error(r, "holds exports of another model (model.onnx); pass --force")
    assert (out / "model.onnx").read_bytes() == b"another model"

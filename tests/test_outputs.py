"""Outputs never overwrite silently: train/compress/export refuse folders that would replace or mix results."""
import json
import subprocess
import sys

from tests.conftest import MNIST_DIR


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "edgepack.toolkit.cli", *map(str, args)], capture_output=True, text=True, timeout=600)


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


def test_an_unwritable_out_is_one_line_naming_it(tmp_path):
    f = tmp_path / "a_file"
    f.write_text("x")
    r = _cli("train", "--framework", "torch", "--arch", "mnist-tutorial", "--data", "mnist", "--data-dir", MNIST_DIR,
             "--out", f / "sub")
    _one_line_error(r, f"{f / 'sub'}: cannot write there")


def test_argument_errors_fail_before_torch_is_imported():
    code = ("import sys; from edgepack.toolkit.cli import main; "
            "rc = main(['train', '--framework', 'torch', '--arch', 'nope', '--data', 'mnist', '--out', 'x']); "
            "print(rc, 'torch' in sys.modules, 'tensorflow' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.split() == ["2", "False", "False"], r.stdout + r.stderr
    assert "unknown architecture 'nope'" in r.stderr


def test_help_states_defaults_and_step_parameters():
    r = _cli("train", "--help")
    assert "(default: 32)" in r.stdout and "learning-rate schedule" in r.stdout
    r = _cli("compress", "--help")
    assert "sparsity=0.8" in r.stdout and "ratio=0.5" in r.stdout and "energy=0.9" in r.stdout


def test_bench_states_each_error_once_and_exits_2(tmp_path):
    r = _cli("bench", tmp_path, "--data", "synthetic")
    assert r.returncode == 2
    assert r.stderr.count("is a folder, not a model file") == 1, r.stderr


def test_prune_sparsity_out_of_range_is_named_first(trained, tmp_path):
    r = _cli("compress", trained["torch"], "--steps", "prune(sparsity=-0.1)", "--out", tmp_path / "o")
    _one_line_error(r, "sparsity must be in [0, 1), got -0.1")

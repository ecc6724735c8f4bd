"""ExecuTorch `.pte` files: exported from PyTorch (fp32 and int8 through pt2e + XNNPACK), verified in ExecuTorch's
runtime, benchmarked by the harness in its own process, offered by deploy; Keras sources and bad files in one line."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import MNIST_DIR, ROOT
from edgepack.toolkit.errors import ModelError, OptionError

pytestmark = pytest.mark.integration


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "edgepack", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=cwd)


def test_pte_files_from_pytorch_are_verified_in_executorch(exported, trained, mnist_small):
    from edgepack.runtimes import open_runner
    from edgepack.toolkit.api import load_checkpoint
    fp32, int8 = exported["torch"]["pte"], exported["torch"]["pte-int8"]
    assert fp32.ok and int8.ok, (fp32.error, int8.error)
    for r in (fp32, int8):
        man = json.loads(r.path.with_name(r.path.name + ".json").read_text())
        assert man["verification"]["runtime"] == "executorch" and man["verification"]["passed"]
        details = man["steps"][-1]["details"]
        assert details["converter"].startswith("executorch 1.5.1") and details["batch"] == 1
    assert json.loads(int8.path.with_name(int8.path.name + ".json").read_text())["steps"][-1]["details"][
        "calibration"]["samples"] == 100
    assert fp32.path.stat().st_size > 3 * int8.path.stat().st_size          # int8 weights: about a quarter
    # the fp32 program computes what the PyTorch model does, image by image (batch 1)
    x = mnist_small.normalize(mnist_small.x_test[:64])
    source = load_checkpoint(trained["torch"])
    ref = source.backend.predict(source.model, x.transpose(0, 3, 1, 2))
    runner = open_runner(fp32.path)
    assert runner.info().runtime == "executorch" and runner.fixed_batch() == 1
    got = runner.predict(x)
    assert got.shape == ref.shape and np.abs(got - ref).max() < 1e-4
    q = open_runner(int8.path).predict(x)
    assert (q.argmax(1) == ref.argmax(1)).mean() >= 0.95 and np.abs(q - ref).max() > 1e-4   # quantized, close


def test_keras_sources_are_not_offered_pte_and_a_request_is_one_line(trained, mnist_small, tmp_path):
    from edgepack.exporters import list_exporters
    from edgepack.exporters.api import export_checkpoint
    assert {"pte", "pte-int8"} <= set(list_exporters("torch")) and not {"pte", "pte-int8"} & set(list_exporters("keras"))
    with pytest.raises(OptionError, match="pte cannot be produced from a keras model"):
        export_checkpoint(trained["keras"], ["pte"], tmp_path, mnist_small, None, None, verbose=False)


def test_a_corrupt_pte_is_one_line_and_the_torch_free_runtime_says_its_thread_count(tmp_path):
    bad = tmp_path / "bad.pte"
    bad.write_bytes(b"not a program" * 100)
    r = _cli("bench", bad, "--data", "mnist", "--data-dir", MNIST_DIR, "--runs", "3", "--min-seconds", "0")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "bad.pte" in r.stderr and "executorch" in r.stderr
    from edgepack.runtimes.executorch import ExecuTorchNumpyRunner
    pool = os.cpu_count()
    with pytest.raises(ModelError, match=f"one thread per core \\({pool} here\\).*--threads {pool}"):
        ExecuTorchNumpyRunner(bad, threads=pool + 1).load()


def test_deploy_of_a_pytorch_model_considers_pte_candidates(trained, tmp_path):
    from edgepack.toolkit.deploy import deploy
    from edgepack.toolkit.deploy.budgets import Budgets
    out = tmp_path / "dep"
    res = deploy(trained["torch"], out, "mnist", str(MNIST_DIR), Budgets(max_accuracy_drop=1.0), mixed=False,
                 runtimes=["executorch"], progress=lambda m: None)
    info = json.loads((out / "deploy.json").read_text())
    files = {Path(c["file"]).parent.name for c in info["candidates"]}
    assert files == {"pte-fp32", "pte-int8"}, files
    assert all(c["runtime"] == "executorch" for c in info["candidates"])
    assert info["reference_from"] == "the fp32 .pte in ExecuTorch"
    assert res["best"].runtime == "executorch" and (out / "best.pte").is_file()   # a verified .pte is the pick
    md = (out / "deploy.md").read_text()
    assert "pte int8 (ExecuTorch)" in md and "pte fp32 (ExecuTorch)" in md

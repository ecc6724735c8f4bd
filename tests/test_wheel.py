"""The built wheel is the product: it carries what `edgepack demo` needs (the quickstart recipe is package data)."""
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def _tracked_copy(dest):
    """The committed tree plus uncommitted edits, without ignored files: a stale build/ in the checkout would put
    deleted modules into the wheel (setuptools reuses build/lib)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split("\n")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def test_wheel_installs_and_runs_the_demo_outside_the_repository(tmp_path):
    src = _tracked_copy(tmp_path / "src")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("edgepack-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "edgepack/toolkit/recipes/quickstart.toml" in names and "edgepack/exporters/README.md" in names
    # one import namespace: nothing but edgepack (and its metadata) at the top of site-packages
    assert {n.split("/")[0] for n in names} - {"edgepack"} == {n.split("/")[0] for n in names if ".dist-info/" in n}
    research = ("honesty.py", "collect.py", "litert_kernels.py", "structured_pruning.py")
    assert not [n for n in names if n.startswith("edgepack/benchmarks/") and n.endswith(research)], \
        "research scripts belong in tools/, not in the installed package"
    assert not any(n.startswith(("edgepack/benchmarks/sweeps/", "edgepack/benchmarks/results/")) for n in names)
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-compile", "--no-deps", "--target", str(site), str(wheel)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(p.name for p in site.iterdir() if not p.name.endswith(".dist-info")) == ["bin", "edgepack"]
    # the installed copy, not the checkout: PYTHONPATH precedes the editable install. The working folder is a user's
    # project with its own toolkit/, exporters/ and benchmarks/ packages (first on sys.path for `python -c`): they must
    # not shadow edgepack's (they did when the wheel installed three generic top-level packages)
    work = tmp_path / "project"
    for own in ("toolkit", "exporters", "benchmarks"):
        (work / own).mkdir(parents=True)
        (work / own / "__init__.py").write_text("OWN = True\n")
    env = {**os.environ, "PYTHONPATH": str(site), "EDGEPACK_CACHE": str(tmp_path / "cache"), "EDGEPACK_OFFLINE": "1"}
    env.pop("EDGEPACK_DATA", None)
    code = ("import sys, edgepack, toolkit, benchmarks; assert toolkit.OWN and benchmarks.OWN; "
            "from edgepack.benchmarks.harness import benchmark; import edgepack.exporters; "
            "assert edgepack.__file__.startswith(sys.argv[1]) and edgepack.exporters.__file__.startswith(sys.argv[1]); "
            "assert edgepack.benchmark is benchmark and callable(edgepack.export_model)")
    r = subprocess.run([sys.executable, "-c", code, str(site)], capture_output=True, text=True, timeout=300, env=env,
                       cwd=work)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    r = subprocess.run([sys.executable, "-m", "edgepack", "--help"], capture_output=True, text=True, timeout=300,
                       env=env, cwd=work)
    assert r.returncode == 0 and "deploy" in r.stdout, (r.stdout + r.stderr)[-3000:]
    code = "import sys; from edgepack.toolkit.cli import main; sys.exit(main(['demo', '--out', '../demo']))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900, env=env, cwd=work)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert (tmp_path / "demo" / "report.md").is_file()
    # a newcomer's next step: deploy the demo's checkpoint with no data flags; the candidates are benchmarked on the
    # data the model was trained on (the offline stand-in, by its own name), not on a data set that is not there
    code = ("import sys; from edgepack.toolkit.cli import main; sys.exit(main(['deploy', 'demo/keras/model.keras', '--out', "
            "'dep', '--no-mixed', '--runtime', 'litert']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    deployed = json.loads((tmp_path / "dep" / "deploy.json").read_text())
    assert deployed["data"] == "digits" and deployed["picked"]["accuracy"] > 80
    assert all(c["accuracy"] is not None and c["file"].endswith(".tflite") for c in deployed["candidates"])
    assert deployed["reference_from"] == "the fp32 TFLite in LiteRT"          # no .onnx made that litert cannot run

"""Executors: the sequential default and Ray. Without Ray, `--executor ray` is one line saying how to install it;
with it, a grid runs as Ray tasks with the same accuracies and files as in order, every finished cell is recorded
as it finishes (so a re-run recomputes only what is missing), and no two benchmarks overlap in time on a node."""
import contextlib
import json
import shutil
import sys
import tempfile

import pytest

from edgepack.toolkit.errors import OptionError
from edgepack.toolkit.executors import RayExecutor, SequentialExecutor, get_executor


def test_executor_choices_and_the_missing_ray_line(monkeypatch):
    assert isinstance(get_executor("local"), SequentialExecutor)
    with pytest.raises(OptionError, match="unknown executor 'dask'; expected one of local, ray"):
        get_executor("dask")
    with pytest.raises(OptionError, match="--ray-address needs --executor ray"):
        get_executor("local", "10.0.0.1:6379")
    with pytest.raises(OptionError, match="--cpus-per-step must be >= 1"):
        get_executor("local", None, 0)
    monkeypatch.setitem(sys.modules, "ray", None)                 # as if the ray extra were not installed
    with pytest.raises(OptionError, match=r"pip install 'edgepack\[ray\]'"):
        RayExecutor()


def _recipe(tmp_path, mnist_dir):
    text = f"""
[recipe]
name = "g"

[data]
name = "mnist"
dir = "{mnist_dir}"

[[step]]
id = "base"
kind = "train"
framework = "keras"
arch = "mnist-tutorial"
epochs = 1
batch_size = 256

[[grid]]
axes = {{ format = ["tflite-int8", "onnx-int8"] }}

[[grid.step]]
id = "x"
kind = "export"
input = "base"
formats = ["{{format}}"]
calibration_samples = 50
verify_images = 300

[[grid.step]]
id = "b"
kind = "bench"
inputs = ["x"]
runs = 20
min_seconds = 0.3
"""
    p = tmp_path / "r.toml"
    p.write_text(text)
    return p


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    yield ray
    ray.shutdown()


def test_a_grid_on_ray_matches_the_sequential_run_and_benchmarks_never_overlap(ray_local, tmp_path):
    from tests.conftest import MNIST_DIR
    from edgepack.toolkit.recipes.runner import run_recipe
    recipe = _recipe(tmp_path, MNIST_DIR)
    seq = run_recipe(recipe, tmp_path / "seq", verbose=False)
    par = run_recipe(recipe, tmp_path / "ray", verbose=False, executor=RayExecutor())

    def cells(run):
        out = {}
        for cell in ("b-tflite-int8", "b-onnx-int8"):
            (r,) = json.loads((run / cell / "results.json").read_text())["results"]
            out[cell] = (r["accuracy"], r["size_bytes"], r["gzip_bytes"])
        return out
    a, b = cells(seq), cells(par)
    # seeded training: the same accuracy and, within a few bytes, the same file; TensorFlow's thread pools differ
    # between this process and a Ray worker, so the weights may differ in the last bits (clean CI clones showed gzip
    # sizes 1-2 bytes apart, and once the int8 .onnx 2 bytes apart: 22,451 against 22,449)
    assert {k: v[0] for k, v in a.items()} == {k: v[0] for k, v in b.items()}
    assert all(abs(a[k][1] - b[k][1]) <= 16 for k in a), (a, b)
    assert all(abs(a[k][2] - b[k][2]) <= 0.005 * a[k][2] for k in a), (a, b)
    steps = json.loads((par / ".edgepack" / "state.json").read_text())["steps"]
    assert set(steps) == {"base", "x-tflite-int8", "x-onnx-int8", "b-tflite-int8", "b-onnx-int8"}
    assert all(s.get("node") for s in steps.values())
    benches = sorted((s["started"], s["finished"], s["node"]) for k, s in steps.items() if k.startswith("b-"))
    others = [(s["started"], s["finished"], s["node"]) for k, s in steps.items() if not k.startswith("b-")]
    for a, b in zip(benches, benches[1:]):                       # never two benchmarks at once on one node
        assert a[2] != b[2] or a[1] <= b[0], benches
    for s, f, node in benches:                                   # nor anything else while one times
        assert all(n != node or f2 <= s or s2 >= f for s2, f2, n in others), (benches, others)
    assert "report.md" in {p.name for p in par.iterdir()}


@pytest.fixture
def two_node_cluster(tmp_path):
    """`ray start --head` plus a second node on this machine (1 CPU and one benchmark slot each); stopped after."""
    pytest.importorskip("ray")
    import os
    import socket
    import subprocess
    import ray
    ray.shutdown()                                               # no in-process Ray beside the cluster
    bin_ = os.path.join(os.path.dirname(sys.executable), "ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = tmp_path / "ray_token"                               # Ray >= 2.59 authenticates local clusters by token
    token.write_text(os.urandom(32).hex())
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    # a temp dir of its own (short: Ray's socket paths live under it), by which its processes are found and stopped;
    # `ray stop` would stop every Ray on the machine, a Ray test on the other pytest worker's included
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    common = ["--num-cpus", "1", "--resources", '{"edgepack_bench": 1}', "--disable-usage-stats", "--temp-dir", temp]
    address = f"127.0.0.1:{port}"
    try:
        subprocess.run([bin_, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                        "--include-dashboard", "false", *common], check=True, capture_output=True, env=env, timeout=180)
        subprocess.run([bin_, "start", "--address", address, "--node-ip-address", "127.0.0.1", *common], check=True,
                       capture_output=True, env=env, timeout=180)
        yield address, env
    finally:
        _stop_ray_processes(temp, port)
        shutil.rmtree(temp, ignore_errors=True)


def _stop_ray_processes(temp: str, port: int) -> None:
    """Kill the processes of the cluster whose temp dir or GCS port their command lines name, and their children
    (Ray's agents outlive a killed raylet otherwise)."""
    import psutil
    me = psutil.Process().pid
    found = [p for p in psutil.process_iter(["cmdline"]) if p.pid != me
             and any(temp in a or a.endswith(f":{port}") for a in (p.info["cmdline"] or []))]
    procs = {p.pid: p for p in found}
    for p in found:
        with contextlib.suppress(psutil.Error):
            procs.update({c.pid: c for c in p.children(recursive=True)})
    for p in procs.values():
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(list(procs.values()), timeout=30)


def test_two_node_cluster_run_interrupted_then_rerun_recomputes_only_unfinished_cells(two_node_cluster, tmp_path):
    import signal
    import subprocess
    import time

    from tests.conftest import MNIST_DIR, ROOT
    recipe, out = _recipe(tmp_path, MNIST_DIR), tmp_path / "run"
    address, ray_env = two_node_cluster
    cmd = [sys.executable, "-m", "edgepack.toolkit.cli", "run", str(recipe), "--out", str(out), "--executor", "ray",
           "--ray-address", address]
    env = {**ray_env, "PYTHONPATH": str(ROOT)}
    log1 = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(cmd, stdout=log1, stderr=subprocess.STDOUT, text=True, env=env)
    state = out / ".edgepack" / "state.json"
    deadline = time.time() + 600
    while time.time() < deadline and first.poll() is None:       # interrupt once the training step is recorded
        if state.is_file() and "base" in json.loads(state.read_text())["steps"]:
            break
        time.sleep(0.5)
    assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
    first.send_signal(signal.SIGKILL)
    first.wait()
    log1.close()
    finished = set(json.loads(state.read_text())["steps"])
    assert "base" in finished and len(finished) < 5
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:] + second.stdout[-3000:]
    log = second.stdout
    kinds = {"base": "train", "x-tflite-int8": "export", "x-onnx-int8": "export", "b-tflite-int8": "bench",
             "b-onnx-int8": "bench"}
    for step, kind in kinds.items():                             # finished cells skipped, only the rest recomputed
        said = f"{step} ({kind}): unchanged, skipped" if step in finished else f"{step} ({kind}): submitted to Ray"
        assert said in log, (step, finished, log[-3000:])
    steps = json.loads(state.read_text())["steps"]
    assert set(steps) == {"base", "x-tflite-int8", "x-onnx-int8", "b-tflite-int8", "b-onnx-int8"}
    assert all(s.get("node") for s in steps.values())
    if not finished & {"x-tflite-int8", "x-onnx-int8"}:         # submitted together, 1 CPU each: one per node
        assert steps["x-tflite-int8"]["node"] != steps["x-onnx-int8"]["node"], steps
    # with that cluster up (the last `ray start` on this machine), --executor ray without --ray-address starts a
    # Ray of its own, one node with its benchmark slot, instead of joining the cluster (Ray refused num_cpus there)
    import ray
    own = RayExecutor()
    try:
        assert own.parallelism() >= 1 and len(ray.nodes()) == 1 and own._bench_cpus(ray) >= 1
    finally:
        ray.shutdown()

import os
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
# the lock of the Python running the tests (make setup picks the same one)
_v = f"lock-py{sys.version_info[0]}{sys.version_info[1]}.txt"
LOCK = ROOT / "requirements" / (_v if (ROOT / "requirements" / _v).exists() else "lock.txt")
SHARED_DATA = Path(os.environ.get("EDGEPACK_TEST_DATA") or ROOT.parent / "shared" / "data")
MNIST_DIR = SHARED_DATA / "mnist"
CIFAR_TARBALL = SHARED_DATA / "cifar10-jpeg.tar.gz"


# Two tiers. Unit: no data set needed (`make test-unit`, under a minute). Integration: real MNIST/CIFAR-10 from the
# data folder (marked `integration` here, automatically: a test that takes a data fixture or names the data paths).
# Without the data folder the integration tier is skipped with its reason, unless EDGEPACK_REQUIRE_DATA=1 (`make
# test`, CI) turns that into an error: CI never passes by skipping.
DATA_FIXTURES = {"mnist", "mnist_small", "trained", "exported"}
DATA_NAMES = ("MNIST_DIR", "CIFAR_TARBALL", "SHARED_DATA")


def _needs_data(item) -> bool:
    import inspect
    if DATA_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    try:
        src = inspect.getsource(item.function)
    except (OSError, TypeError, AttributeError):
        return False
    return any(n in src for n in DATA_NAMES)


def pytest_configure(config):
    config.addinivalue_line("markers", "integration: needs the real data sets (the data folder; EDGEPACK_TEST_DATA)")
    if os.environ.get("EDGEPACK_REQUIRE_DATA") == "1" and not MNIST_DIR.is_dir():
        raise pytest.UsageError(f"test data not found at {SHARED_DATA}; set EDGEPACK_TEST_DATA")


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason=f"integration tier: no data folder at {SHARED_DATA} (set EDGEPACK_TEST_DATA)")
    for item in items:
        if item.get_closest_marker("integration") is None and _needs_data(item):
            item.add_marker(pytest.mark.integration)
        if item.get_closest_marker("integration") is not None and not MNIST_DIR.is_dir():
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory, request):
    """Tests never read or write the user's cache. The run's cache is shared by its xdist workers (`make test`
    runs two): the CIFAR-10 tarball is extracted and decoded once (~40 s), not once per worker. (A worker's
    `workerinput`, not the PYTEST_XDIST_WORKER variable, which pytest processes started by a test inherit.)"""
    base = tmp_path_factory.getbasetemp()
    worker = hasattr(request.config, "workerinput")
    shared = base.parent / "edgepack-cache" if worker else base / "edgepack-cache"
    shared.mkdir(exist_ok=True)
    os.environ["EDGEPACK_CACHE"] = str(shared)
    os.environ.pop("EDGEPACK_DATA", None)
    yield


@pytest.fixture(scope="session")
def mnist():
    from edgepack.toolkit.data import load_dataset
    return load_dataset("mnist", MNIST_DIR)


@pytest.fixture(scope="session")
def mnist_small(mnist):
    """A 3,000 / 1,000 slice of real MNIST for quick training tests."""
    from edgepack.toolkit.data import Dataset
    return Dataset("mnist", mnist.source + " (slice)", mnist.x_train[:3000], mnist.y_train[:3000],
                   mnist.x_test[:1000], mnist.y_test[:1000], mnist.classes, mnist.mean, mnist.std)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def trained(mnist_small, tmp_path_factory):
    """mnist-tutorial trained briefly in each framework on real digits: {framework: checkpoint path}."""
    from edgepack.toolkit.api import train
    from edgepack.toolkit.train import TrainConfig
    out = {}
    for fw in ("torch", "keras"):
        res = train(fw, "mnist-tutorial", mnist_small, out=tmp_path_factory.mktemp(f"ckpt-{fw}"),
                    config=TrainConfig(epochs=2, batch_size=32), verbose=False)
        out[fw] = res.checkpoint
    return out


@pytest.fixture(scope="session")
def exported(trained, mnist_small, tmp_path_factory):
    """Every registered format, from every framework that supports it, exported once per session."""
    from edgepack.exporters import list_exporters
    from edgepack.exporters.api import export_model
    from edgepack.exporters.base import ExportOptions
    from edgepack.toolkit.api import load_checkpoint
    out = {}
    for fw, ckpt in trained.items():
        d = tmp_path_factory.mktemp(f"export-{fw}")
        loaded = load_checkpoint(ckpt)
        results = export_model(loaded.model, list_exporters(fw), mnist_small, d,
                               ExportOptions(verify_images=512, calibration_samples=100),
                               source_record=loaded.record, source_path=ckpt, verbose=False)
        out[fw] = {r.format: r for r in results}
    return out


@pytest.fixture(scope="session")
def runtime_venv(tmp_path_factory):
    d = tmp_path_factory.mktemp("runtime-venv")
    venv.EnvBuilder(with_pip=True).create(d)
    py = d / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile", "-c", str(LOCK),
                        "--no-build-isolation", f"{ROOT}[runtime]"], capture_output=True, text=True, timeout=900)
    if r.returncode != 0:   # older bundled setuptools cannot build the project: install its pins, run from the tree
        r2 = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-compile", "-c", str(LOCK),
                             "numpy", "onnxruntime", "ai-edge-litert", "pillow"], capture_output=True, text=True, timeout=900)
        assert r2.returncode == 0, r2.stderr[-2000:]
    return py

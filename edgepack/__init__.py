"""edgepack: train, compress, export and benchmark small models for edge runtimes, from PyTorch or Keras.

The one import namespace. Its four packages are the repository's top-level folders:

    edgepack.toolkit     data, architectures, tasks, training and compression in both frameworks, recipes, deploy, CLI
    edgepack.runtimes    one module per runtime that runs a model file, and what is read from files and machines
    edgepack.exporters   one module per target format, plus verification
    edgepack.benchmarks  the harness, its reports, bundles' golden checks

The common entry points are here too, imported on first use (nothing heavy is imported by `import edgepack`):
`train`, `load_checkpoint`, `TrainConfig`, `compress_model`, `export_model`, `benchmark`.

tfmot needs Keras 2, so the legacy-Keras switch is set before TensorFlow is first imported anywhere in the process.
"""
import os as _os
from pathlib import Path as _Path

_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# In a source checkout the three packages are the repository's top-level folders (the product's layout), beside this
# one; an installed wheel has them inside it (setup.py maps them), and nothing is added.
_here = _Path(__file__).resolve().parent
if not (_here / "toolkit").is_dir() and (_here.parent / "toolkit" / "__init__.py").is_file():
    __path__.append(str(_here.parent))  # noqa: F821 (the package's own search path)

_ENTRY_POINTS = {
    "train": "edgepack.toolkit.api", "load_checkpoint": "edgepack.toolkit.api", "TrainConfig": "edgepack.toolkit.train",
    "compress_model": "edgepack.toolkit.compress", "export_model": "edgepack.exporters.api",
    "benchmark": "edgepack.benchmarks.harness",
}


def __getattr__(name):
    if name in _ENTRY_POINTS:
        import importlib
        return getattr(importlib.import_module(_ENTRY_POINTS[name]), name)
    if name == "__version__":
        from edgepack.toolkit import __version__
        return __version__
    raise AttributeError(f"module 'edgepack' has no attribute {name!r}")


__all__ = list(_ENTRY_POINTS)

"""Runner registry: one module per runtime, registered here by file suffix (the one place to add one)."""
from __future__ import annotations

import importlib
from pathlib import Path

from toolkit.errors import ModelError, OptionError

# suffix -> "module:Class"; modules are imported lazily so a runtime-only install never loads torch/TF.
RUNNERS = {
    ".onnx": "benchmarks.runners.onnxruntime:OnnxRuntimeRunner",
    ".tflite": "benchmarks.runners.tflite:LiteRTRunner",
    ".epk": "benchmarks.runners.archive:ArchiveRunner",
    ".pt": "benchmarks.runners.frameworks:TorchRunner",
    ".pth": "benchmarks.runners.frameworks:TorchRunner",
    ".keras": "benchmarks.runners.frameworks:KerasRunner",
    ".h5": "benchmarks.runners.frameworks:KerasRunner",
}


def runner_class(path: str | Path):
    suffix = Path(path).suffix.lower()
    target = RUNNERS.get(suffix)
    if target is None:
        raise ModelError(f"{path}: unknown model format {suffix or '(no suffix)'!r}; edgepack runs {', '.join(sorted(RUNNERS))}")
    mod, cls = target.split(":")
    return getattr(importlib.import_module(mod), cls)


def open_runner(path: str | Path, threads: int | None = 1, **options):
    cls = runner_class(path)
    for need in cls.needs:
        try:
            importlib.import_module(need)
        except ImportError:
            raise OptionError(f"{path}: running {cls.runtime} models needs the '{need}' package "
                              f"(pip install 'edgepack[{'torch' if need == 'torch' else 'tf' if need == 'tensorflow' else 'runtime'}]')") from None
    return cls(path, threads=threads, **options).load()

"""The runtime layer: what runs a model file and what is read from one, below both the exporters (which verify their
files in a runtime) and the benchmark harness (which times them). One module per runtime (onnxruntime, tflite,
openvino, tflite_micro, archive: the .epk codec's files, frameworks: checkpoints), the NumPy int8 reference per CPU
kernel class (qdq_reference), the ONNX reader and the figures read from files (onnx_reader, metrics), machine facts
(machine) and interleaved timing (timing). NumPy and the runtimes only: a runtime-only install never loads torch or
TensorFlow.

Runtime registry, keyed by (file format, runtime). Each runtime is one module whose runner classes declare what
they run (`format`, `suffixes`), what they need (`needs`, `extra`) and their label, and lists them in `RUNNERS`;
`RUNNER_MODULES` is the one list of those modules (a new runtime = a new module + one line). Runner modules never
import this registry, so registration makes no import cycle.
A format's default runtime is the first registered for it that is installed; others run a file when asked (`bench --runtime`), and
`--runtime all` runs every one except those registered as `by_name_only` (they run only when named).
Modules are imported without their runtimes: a runtime-only install never loads torch or TensorFlow."""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from edgepack.toolkit.errors import ModelError, OptionError

RUNNER_MODULES = ("edgepack.runtimes.onnxruntime", "edgepack.runtimes.tflite", "edgepack.runtimes.archive",
                  "edgepack.runtimes.frameworks", "edgepack.runtimes.openvino", "edgepack.runtimes.tflite_micro",
                  "edgepack.runtimes.executorch")

_REGISTRY: dict[tuple[str, str], type] = {}
_loaded = False


def register_runner(cls):
    """Register one runner class (RUNNER_MODULES' classes are registered on first use; plug-ins may call this)."""
    key = (cls.format, cls.runtime)
    if _REGISTRY.get(key, cls) is not cls:
        raise RuntimeError(f"runner for {key} registered twice")
    _REGISTRY[key] = cls
    return cls


def plugin_runners() -> list[dict]:
    """Runner classes registered from outside RUNNER_MODULES (plug-ins), as {"module", "file", "class"}: the harness
    hands them to its child processes, which register them again (a child starts with the built-in ones only)."""
    out = []
    for cls in _load().values():
        if cls.__module__ not in RUNNER_MODULES:
            mod = sys.modules.get(cls.__module__)
            out.append({"module": cls.__module__, "file": getattr(mod, "__file__", None), "class": cls.__qualname__})
    return out


def register_plugins(entries: list[dict]) -> None:
    """Register what plugin_runners() listed in another process: by module name where it imports, else from its file."""
    for e in entries:
        mod = sys.modules.get(e["module"])
        if mod is None:
            try:
                mod = importlib.import_module(e["module"])
            except ImportError:
                spec = importlib.util.spec_from_file_location(e["module"], e["file"] or "")
                if spec is None or spec.loader is None:
                    raise ModelError(f"runtime plug-in {e['module']}: cannot import it in the benchmark process") from None
                mod = importlib.util.module_from_spec(spec)
                sys.modules[e["module"]] = mod
                spec.loader.exec_module(mod)
        cls = getattr(mod, e["class"])
        if _load().get((cls.format, cls.runtime)) is not cls:
            register_runner(cls)


def _load() -> dict[tuple[str, str], type]:
    global _loaded
    if not _loaded:
        for mod in RUNNER_MODULES:
            for cls in importlib.import_module(mod).RUNNERS:
                register_runner(cls)
        _loaded = True
    return _REGISTRY


def formats_by_suffix() -> dict[str, str]:
    """'.onnx' -> 'onnx', '.tflite' -> 'tflite', ...: every file suffix some runtime runs."""
    return {s: c.format for c in _load().values() for s in c.suffixes}


def format_of(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    fmt = formats_by_suffix().get(suffix)
    if fmt is None:
        raise ModelError(f"{path}: unknown model format {suffix or '(no suffix)'!r}; edgepack runs "
                         f"{', '.join(sorted(formats_by_suffix()))}")
    return fmt


def all_runtimes() -> list[str]:
    return list(dict.fromkeys(rt for _, rt in _load()))


def runtime_label(runtime: str) -> str:
    """The label a registered runtime goes by in reports and plots (the name itself if none is registered)."""
    return next((c.label for (_, rt), c in _load().items() if rt == runtime), runtime)


def runtimes_for(path: str | Path) -> list[str]:
    """Every registered runtime that runs this file's format, the default first."""
    fmt = format_of(path)
    return [rt for (f, rt) in _load() if f == fmt]


def every_runtime_for(path: str | Path) -> list[str]:
    """What `--runtime all` runs this file on: every registered runtime of its format but the by-name-only ones."""
    fmt = format_of(path)
    return [rt for (f, rt), cls in _load().items() if f == fmt and not cls.by_name_only]


def arena_runtimes() -> list[str]:
    """The runtimes whose runners measure the tensor arena a file needs (microcontroller runtimes)."""
    return list(dict.fromkeys(rt for (_, rt), cls in _load().items() if cls.measures_arena))


def installed_runtimes(path: str | Path, named: list[str] | None = None) -> list[str]:
    """The runtimes that run this file's format and whose packages are importable here, the default first; a
    by-name-only runtime only when it is in `named`."""
    import importlib.util
    fmt = format_of(path)
    return [rt for (f, rt), cls in _load().items()
            if f == fmt and (not cls.by_name_only or rt in (named or ()))
            and all(importlib.util.find_spec(m) is not None for m in cls.needs)]


def default_runtime(path: str | Path) -> str:
    """The runtime a file runs in unless one is named: its format's first registered runtime that is installed here
    (a by-name-only one too: the torch-free ExecuTorch runtime on a device without torch), else its first (opening it
    then says what to install)."""
    able = runtimes_for(path)
    return (installed_runtimes(path, able) or able)[0]


def runner_class(path: str | Path, runtime: str | None = None):
    fmt = format_of(path)
    if runtime is None:
        runtime = default_runtime(path)
    cls = _load().get((fmt, runtime))
    if cls is None:
        if runtime not in all_runtimes():
            raise OptionError(f"unknown runtime {runtime!r}; known: {', '.join(all_runtimes())}")
        raise ModelError(f"{path}: {runtime} does not run {fmt} files (runtimes for {fmt}: {', '.join(runtimes_for(path))})")
    return cls


def open_runner(path: str | Path, threads: int | None = 1, runtime: str | None = None, **options):
    cls = runner_class(path, runtime)
    for need in cls.needs:
        try:
            importlib.import_module(need)
        except ImportError:
            raise OptionError(f"{path}: running it on {cls.runtime} needs the '{need}' package "
                              f"(pip install 'edgepack[{cls.extra}]'{'; ' + cls.install_note if cls.install_note else ''})") from None
    return cls(path, threads=threads, **options).load()

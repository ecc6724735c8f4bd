"""The one place formats are registered. Each format module lists its exporter classes in `EXPORTERS`;
`FORMAT_MODULES` lists the modules (a new format = a new module + one line here). Format modules never import
this registry, so registration makes no import cycle."""
from __future__ import annotations

import importlib

from edgepack.toolkit.errors import OptionError

FORMAT_MODULES = ("edgepack.exporters.onnx_fp32", "edgepack.exporters.onnx_int8", "edgepack.exporters.tflite", "edgepack.exporters.sparse_archive",
                  "edgepack.exporters.pte")

_EXPORTERS: dict[str, type] = {}
_loaded = False


def register_exporter(cls):
    """Register one exporter class (FORMAT_MODULES' classes are registered on first use; plug-ins may call this)."""
    if _EXPORTERS.get(cls.name, cls) is not cls:
        raise RuntimeError(f"exporter {cls.name!r} registered twice")
    _EXPORTERS[cls.name] = cls
    return cls


def _load_all() -> None:
    global _loaded
    if not _loaded:
        for mod in FORMAT_MODULES:
            for cls in importlib.import_module(mod).EXPORTERS:
                register_exporter(cls)
        _loaded = True


def list_exporters(framework=None) -> list[str]:
    """Every format, or those a framework's models can be exported to (a name or a toolkit.backends.Framework)."""
    _load_all()
    if framework is None:
        return list(_EXPORTERS)
    if isinstance(framework, str):
        from edgepack.toolkit.backends import get_backend
        framework = get_backend(framework)
    return [n for n, c in _EXPORTERS.items() if c().accepts(framework)]


def get_exporter(name: str):
    _load_all()
    try:
        return _EXPORTERS[name]()
    except KeyError:
        raise OptionError(f"unknown export format {name!r}; available: {', '.join(_EXPORTERS)}") from None

"""The one place formats are registered. Each format module decorates its exporter classes with
`@register_exporter`; `FORMAT_MODULES` lists the modules (a new format = a new module + one line here)."""
from __future__ import annotations

import importlib

from toolkit.errors import OptionError

FORMAT_MODULES = ("exporters.onnx_fp32", "exporters.onnx_int8", "exporters.tflite", "exporters.sparse_archive")

_EXPORTERS: dict[str, type] = {}
_loaded = False


def register_exporter(cls):
    if cls.name in _EXPORTERS:
        raise RuntimeError(f"exporter {cls.name!r} registered twice")
    _EXPORTERS[cls.name] = cls
    return cls


def _load_all() -> None:
    global _loaded
    if not _loaded:
        for mod in FORMAT_MODULES:
            importlib.import_module(mod)
        _loaded = True


def list_exporters(framework: str | None = None) -> list[str]:
    _load_all()
    return [n for n, c in _EXPORTERS.items() if framework is None or framework in c.sources]


def get_exporter(name: str):
    _load_all()
    try:
        return _EXPORTERS[name]()
    except KeyError:
        raise OptionError(f"unknown export format {name!r}; available: {', '.join(_EXPORTERS)}") from None

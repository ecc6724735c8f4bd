"""Exporters: one module per target format, registered in `edgepack.exporters.registry`."""
import os as _os

_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from edgepack.exporters.registry import get_exporter, list_exporters  # noqa: E402


def __getattr__(name):  # lazy: `from exporters import export_model` without importing frameworks up front
    if name in ("export_model", "export_checkpoint", "ExportOptions"):
        from edgepack.exporters import api, base
        return getattr(api, name, None) or getattr(base, name)
    raise AttributeError(name)


__all__ = ["get_exporter", "list_exporters", "export_model", "export_checkpoint", "ExportOptions"]

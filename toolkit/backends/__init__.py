"""Training frameworks behind one interface (`toolkit.backends.base.Framework`), registered in one table.

`get_backend(name)`, `backend_for_file(path)` and `backend_for_model(model)` are the only ways to reach one;
callers use the object's methods and capabilities, never its name. A new framework = a package under
toolkit/backends/ with a `FRAMEWORK` instance, plus one line in `FRAMEWORK_MODULES`.
"""
from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from toolkit.backends.base import CAPABILITIES, Framework, NotSupported
from toolkit.errors import ModelError, OptionError

FRAMEWORK_MODULES = {"torch": "toolkit.backends.torch", "keras": "toolkit.backends.keras"}
FRAMEWORKS = tuple(FRAMEWORK_MODULES)

__all__ = ["FRAMEWORKS", "CAPABILITIES", "Framework", "NotSupported", "get_backend", "backend_for_file", "backend_for_model"]


def _framework(name: str) -> Framework:
    return importlib.import_module(FRAMEWORK_MODULES[name]).FRAMEWORK


def get_backend(name: str) -> Framework:
    if name not in FRAMEWORK_MODULES:
        raise OptionError(f"unknown framework {name!r}; expected one of {FRAMEWORKS}")
    fw = _framework(name)
    if importlib.util.find_spec(fw.PACKAGE) is None:
        raise OptionError(f"framework {name!r} is not installed (no module {fw.PACKAGE!r}); pip install 'edgepack[{fw.EXTRA}]'")
    return fw


def backend_for_file(path: str | Path) -> Framework:
    suffix = Path(path).suffix.lower()
    for name in FRAMEWORKS:
        if suffix in _framework(name).SUFFIXES:
            return get_backend(name)
    known = ", ".join(f"{'/'.join(_framework(n).SUFFIXES)} for {n}" for n in FRAMEWORKS)
    raise ModelError(f"{path}: not a checkpoint edgepack knows ({known})")


def backend_for_model(model) -> Framework:
    """The framework of an in-memory model (a torch.nn.Module, a Keras model)."""
    for name in FRAMEWORKS:
        if _framework(name).owns(model):
            return _framework(name)
    raise ModelError(f"{type(model).__name__}: not a model of a framework edgepack knows ({', '.join(FRAMEWORKS)})")

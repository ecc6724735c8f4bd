"""Training frameworks behind one interface (`edgepack.toolkit.backends.base.Framework`), registered in one table.

`get_backend(name)`, `backend_for_file(path)` and `backend_for_model(model)` are the only ways to reach one;
callers use the object's methods and capabilities, never its name. A new framework = a package under
toolkit/backends/ with a `FRAMEWORK` instance, plus one line in `FRAMEWORK_MODULES`.

`IMPORTED_MODULES`: model files users bring (fp32 .onnx, .tflite) behind the same interface; sources for export
and deploy, not frameworks to train in (so not in `FRAMEWORKS`, the choices of --framework and recipes).
"""
from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from edgepack.toolkit.backends.base import CAPABILITIES, Framework, NotSupported
from edgepack.toolkit.errors import ModelError, OptionError

FRAMEWORK_MODULES = {"torch": "edgepack.toolkit.backends.torch", "keras": "edgepack.toolkit.backends.keras"}
FRAMEWORKS = tuple(FRAMEWORK_MODULES)
IMPORTED_MODULES = {"onnx": "edgepack.toolkit.backends.imported.onnx_file", "tflite": "edgepack.toolkit.backends.imported.tflite_file"}
_ALL = {**FRAMEWORK_MODULES, **IMPORTED_MODULES}

__all__ = ["FRAMEWORKS", "CAPABILITIES", "Framework", "NotSupported", "get_backend", "backend_for_file", "backend_for_model"]


def _framework(name: str) -> Framework:
    return importlib.import_module(_ALL[name]).FRAMEWORK


def get_backend(name: str) -> Framework:
    """A framework by name (a record may also name the kind of an imported file: onnx, tflite)."""
    if name not in _ALL:
        raise OptionError(f"unknown framework {name!r}; expected one of {FRAMEWORKS}")
    fw = _framework(name)
    if importlib.util.find_spec(fw.PACKAGE) is None:
        raise OptionError(f"framework {name!r} is not installed (no module {fw.PACKAGE!r}); pip install 'edgepack[{fw.EXTRA}]'")
    return fw


def backend_for_file(path: str | Path) -> Framework:
    """The framework of a checkpoint, or the imported-file kind of an fp32 .onnx/.tflite."""
    suffix = Path(path).suffix.lower()
    for name in _ALL:
        if suffix in _framework(name).SUFFIXES:
            return get_backend(name)
    known = ", ".join(f"{'/'.join(_framework(n).SUFFIXES)} for {n}" for n in FRAMEWORKS)
    raise ModelError(f"{path}: not a model edgepack starts from (checkpoints: {known}; or an fp32 .onnx/.tflite)")


def backend_for_model(model) -> Framework:
    """The framework of an in-memory model (a torch.nn.Module, a Keras model)."""
    for name in _ALL:
        if _framework(name).owns(model):
            return _framework(name)
    raise ModelError(f"{type(model).__name__}: not a model of a framework edgepack knows ({', '.join(FRAMEWORKS)})")

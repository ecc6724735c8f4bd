"""Framework backends. `toolkit/backends/torch/` and `toolkit/backends/keras/` mirror each other name
for name (NAME, LAYOUT, SUFFIXES, build, save, load, predict, count_params, fit, evaluate); callers pick
one explicitly with `get_backend`, since one edgepack run builds both frameworks.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from toolkit.errors import ModelError, OptionError

FRAMEWORKS = ("torch", "keras")


def get_backend(name: str) -> ModuleType:
    if name not in FRAMEWORKS:
        raise OptionError(f"unknown framework {name!r}; expected one of {FRAMEWORKS}")
    try:
        return importlib.import_module(f"toolkit.backends.{name}")
    except ImportError as e:
        extra = "torch" if name == "torch" else "tf"
        raise OptionError(f"framework {name!r} is not installed ({e}); pip install 'edgepack[{extra}]'") from None


def backend_for_file(path: str | Path) -> ModuleType:
    suffix = Path(path).suffix.lower()
    if suffix in (".pt", ".pth"):
        return get_backend("torch")
    if suffix in (".keras", ".h5"):
        return get_backend("keras")
    raise ModelError(f"{path}: not a checkpoint edgepack knows (.pt/.pth for PyTorch, .keras/.h5 for Keras)")


def backend_for_model(model) -> ModuleType:
    """The backend of an in-memory model (a torch.nn.Module or a Keras model)."""
    mod = type(model).__module__
    if mod.startswith(("torch", "torchvision", "toolkit.backends.torch")) or _is_torch(model):
        return get_backend("torch")
    return get_backend("keras")


def _is_torch(model) -> bool:
    try:
        import torch
        return isinstance(model, torch.nn.Module)
    except ImportError:
        return False

"""PyTorch backend (mirrors toolkit.backends.keras name for name)."""
from toolkit.backends.torch.model import LAYOUT, NAME, SUFFIXES, build, count_params, load, predict, preferred_suffix, save
from toolkit.backends.torch.train import evaluate, fit

__all__ = ["NAME", "LAYOUT", "SUFFIXES", "build", "count_params", "load", "predict", "preferred_suffix", "save", "fit", "evaluate"]

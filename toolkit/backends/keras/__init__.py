"""Keras backend (tf-keras 2; mirrors toolkit.backends.torch name for name)."""
from toolkit.backends.keras.model import LAYOUT, NAME, SUFFIXES, build, count_params, load, predict, preferred_suffix, save
from toolkit.backends.keras.train import evaluate, fit

__all__ = ["NAME", "LAYOUT", "SUFFIXES", "build", "count_params", "load", "predict", "preferred_suffix", "save", "fit", "evaluate"]

"""edgepack toolkit: data, architectures, training and compression in PyTorch and Keras.

tfmot needs Keras 2, so the legacy-Keras switch must be set before TensorFlow is first
imported anywhere in the process; importing any edgepack package does that.
"""
import os as _os

_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"

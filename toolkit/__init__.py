"""edgepack toolkit: data, architectures, training and compression in PyTorch and Keras.

tfmot needs Keras 2, so the legacy-Keras switch must be set before TensorFlow is first
imported anywhere in the process; importing any edgepack package does that.
"""
import os as _os

_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")



def _version() -> str:
    """The installed distribution's version (pyproject.toml is the one place it is written)."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("edgepack")
    except PackageNotFoundError:            # run from a source tree that was never installed
        return "0+unknown"


__version__ = _version()

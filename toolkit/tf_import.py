"""Import TensorFlow once, with the legacy-Keras switch set and its C++ start-up chatter (CUDA plugin
registration, cuInit on GPU-less machines) kept off the terminal. Real import errors still surface."""
from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def quiet_stderr():
    """Silence file descriptor 2 (C++ logging) for the duration; Python exceptions are unaffected."""
    if os.environ.get("EDGEPACK_DEBUG"):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow():
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with quiet_stderr():
        import tensorflow as tf
        tf.config.list_physical_devices()   # triggers (and silences) the cuInit probe
    if not os.environ.get("EDGEPACK_DEBUG"):
        tf.get_logger().setLevel("ERROR")   # WARNING:tensorflow:... lines (retracing, unbuilt metrics): not the user's
    return tf

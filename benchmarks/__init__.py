"""edgepack benchmark harness: runners per runtime, metrics read from model files, reports.

The runtime path (runners for .onnx/.tflite/.epk, metrics, harness, reports) imports neither torch
nor TensorFlow, so it runs on a Raspberry Pi with only `edgepack[runtime]` installed.
"""
import os as _os

_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

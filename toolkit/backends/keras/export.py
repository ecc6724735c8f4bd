"""Keras -> ONNX fp32 (tf2onnx) and Keras -> TFLite (TFLiteConverter) conversions."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from toolkit.backends.keras.model import tf
from toolkit.errors import ModelError, first_line
from toolkit.tf_import import quiet_stderr

DEFAULT_OPSET = 17


def to_onnx(model, path: str | Path, input_shape_hwc: tuple[int, int, int], opset: int = DEFAULT_OPSET) -> dict:
    """Write an ONNX model with input 'input' (N, H, W, C): tf2onnx keeps Keras's NHWC layout."""
    import onnx
    import tf2onnx
    spec = [tf.TensorSpec((None, *input_shape_hwc), tf.float32, name="input")]
    try:
        with quiet_stderr():
            model_proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset)
    except Exception as e:
        raise ModelError(f"tf2onnx conversion failed: {first_line(e)}") from None
    onnx.checker.check_model(model_proto)
    Path(path).write_bytes(model_proto.SerializeToString())
    return {"exporter": f"tf2onnx {tf2onnx.__version__}", "opset": opset, "tensorflow": tf.__version__, "input_layout": "NHWC"}


def to_tflite(model, mode: str, representative: Callable[[], Iterable] | None = None, io_dtype: str = "int8",
              per_channel: bool = True, dense_per_channel: bool = True) -> tuple[bytes, dict]:
    """TFLiteConverter from the Keras model. mode: fp32 | dynamic | fp16 | int8 | sparse | sparse-int8.
    `per_channel=False` quantizes every weight per tensor; `dense_per_channel=False` only the Dense layers."""
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    details = {"converter": f"TFLiteConverter (tensorflow {tf.__version__})", "mode": mode}
    if mode in ("dynamic", "fp16", "int8", "sparse-int8"):
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode in ("sparse", "sparse-int8"):
        conv.optimizations = list(conv.optimizations) + [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    if mode == "fp16":
        conv.target_spec.supported_types = [tf.float16]
    if mode in ("int8", "sparse-int8"):
        if representative is None:
            raise ModelError("full-integer conversion needs a representative dataset")
        conv.representative_dataset = representative
        # int8 builtins only: a model that cannot be fully quantized fails here instead of keeping float ops
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = {"int8": tf.int8, "uint8": tf.uint8}[io_dtype]
        conv.inference_output_type = {"int8": tf.int8, "uint8": tf.uint8}[io_dtype]
        details["io_dtype"] = io_dtype
    if mode in ("dynamic", "int8", "sparse-int8"):
        conv._experimental_disable_per_channel = not per_channel
        conv._experimental_disable_per_channel_quantization_for_dense_layers = not dense_per_channel
        details["weights"] = ("int8 per-tensor" if not per_channel else
                              "int8 per-channel (Dense per-tensor)" if not dense_per_channel else "int8 per-channel")
    try:
        with quiet_stderr():
            data = conv.convert()
    except Exception as e:
        raise ModelError(f"TFLite conversion ({mode}) failed: {first_line(e, 300)}") from None
    return data, details

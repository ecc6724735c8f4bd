"""Keras -> ONNX fp32 (tf2onnx) and Keras -> TFLite (TFLiteConverter) conversions."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

from edgepack.toolkit.backends.keras.model import tf
from edgepack.toolkit.backends.onnx_portable import make_portable
from edgepack.toolkit.errors import ModelError, first_line
from edgepack.toolkit.tf_import import quiet_stderr

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
    portable = make_portable(model_proto)
    onnx.checker.check_model(model_proto)
    Path(path).write_bytes(model_proto.SerializeToString())
    return {"exporter": f"tf2onnx {tf2onnx.__version__}", "opset": opset, "ir_version": model_proto.ir_version,
            "portable": portable, "tensorflow": tf.__version__, "input_layout": "NHWC"}


def to_tflite(model, mode: str, representative: Callable[[], Iterable] | None = None, io_dtype: str = "int8",
              per_channel: bool = True, dense_per_channel: bool = True, float_nodes: tuple[str, ...] = ()) -> tuple[bytes, dict]:
    """TFLiteConverter from the Keras model. mode: fp32 | dynamic | fp16 | int8 | sparse | sparse-int8.
    `per_channel=False` quantizes every weight per tensor; `dense_per_channel=False` only the Dense layers;
    `float_nodes`: TFLite nodes kept float in an int8 file (mixed precision)."""
    from edgepack.toolkit.tflite_convert import configure, convert
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    details = configure(conv, mode, representative, io_dtype, per_channel, dense_per_channel, allow_float=bool(float_nodes))
    return convert(conv, mode, representative, tuple(float_nodes)), details

"""TFLiteConverter settings shared by every TFLite route (the Keras converter, and a SavedModel such as onnx2tf's):
the conversion modes, and mixed precision through TensorFlow's selective quantization (chosen nodes kept float)."""
from __future__ import annotations

from typing import Callable, Iterable

from edgepack.toolkit.errors import ModelError, first_line
from edgepack.toolkit.tf_import import import_tensorflow, quiet_stderr


def configure(conv, mode: str, representative: Callable[[], Iterable] | None = None, io_dtype: str = "int8",
              per_channel: bool = True, dense_per_channel: bool = True, allow_float: bool = False) -> dict:
    """Set a TFLiteConverter up for `mode` (fp32 | dynamic | fp16 | int8 | sparse | sparse-int8); returns details.
    `allow_float`: float kernels may run where int8 was refused (mixed precision), else int8 builtins only."""
    tf = import_tensorflow()
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
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8] + (
            [tf.lite.OpsSet.TFLITE_BUILTINS] if allow_float else [])
        conv.inference_input_type = {"int8": tf.int8, "uint8": tf.uint8}[io_dtype]
        conv.inference_output_type = {"int8": tf.int8, "uint8": tf.uint8}[io_dtype]
        details["io_dtype"] = io_dtype
    if mode in ("dynamic", "int8", "sparse-int8"):
        conv._experimental_disable_per_channel = not per_channel
        conv._experimental_disable_per_channel_quantization_for_dense_layers = not dense_per_channel
        details["weights"] = ("int8 per-tensor" if not per_channel else
                              "int8 per-channel (Dense per-tensor)" if not dense_per_channel else "int8 per-channel")
    return details


def convert(conv, mode: str, representative=None, float_nodes: tuple[str, ...] = ()) -> bytes:
    """Run the converter; with `float_nodes` (output tensor names of ops), through TensorFlow's
    QuantizationDebugger with those nodes denylisted: they stay float, the rest is int8."""
    tf = import_tensorflow()
    try:
        with quiet_stderr():
            if not float_nodes:
                return conv.convert()
            opts = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(float_nodes))
            dbg = tf.lite.experimental.QuantizationDebugger(converter=conv, debug_dataset=representative,
                                                           debug_options=opts)
            return dbg.get_nondebug_quantized_model()
    except Exception as e:
        raise ModelError(f"TFLite conversion ({mode}{', mixed precision' if float_nodes else ''}) failed: "
                         f"{first_line(e, 300)}") from None


def convert_saved_model(saved_model, mode: str, representative=None, io_dtype: str = "int8", per_channel: bool = True,
                        dense_per_channel: bool = True, float_nodes: tuple[str, ...] = ()) -> tuple[bytes, dict]:
    """A TFLite file from a SavedModel (onnx2tf writes one beside its .tflite files), with `configure`'s settings."""
    tf = import_tensorflow()
    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    details = configure(conv, mode, representative, io_dtype, per_channel, dense_per_channel,
                        allow_float=bool(float_nodes))
    return convert(conv, mode, representative, tuple(float_nodes)), details


"""The Keras (tf-keras 2) implementation of the framework interface (edgepack.toolkit.backends.base.Framework).

Its modules (model, train, compress, export, weights) import TensorFlow; this class imports them when first used."""
from __future__ import annotations

from pathlib import Path

from edgepack.toolkit.backends.base import Framework
from edgepack.toolkit.errors import OptionError


class KerasFramework(Framework):
    NAME = "keras"
    LAYOUT = "NHWC"
    SUFFIXES = (".keras", ".h5")
    PACKAGE = "tensorflow"
    EXTRA = "tf"
    TFLITE_MODES = ("fp32", "dynamic", "fp16", "int8", "sparse", "sparse-int8")   # TFLiteConverter
    TFLITE_PACKAGE = "tensorflow"
    TFLITE_ROUTE = "converter"

    def owns(self, model) -> bool:
        import sys
        keras_mods = ("keras", "tf_keras", "tensorflow", "edgepack.toolkit.backends.keras")
        if type(model).__module__.startswith(keras_mods):
            return True
        tf = sys.modules.get("tensorflow")
        return tf is not None and isinstance(model, tf.keras.Model)

    # ------------------------------------------------------------ core
    def build(self, spec, seed: int | None = 0):
        from edgepack.toolkit.backends.keras.model import build
        return build(spec, seed)

    def save(self, model, path: str | Path) -> Path:
        from edgepack.toolkit.backends.keras.model import save
        return save(model, path)

    def load(self, path: str | Path, spec=None, model=None):
        from edgepack.toolkit.backends.keras.model import load
        return load(path, spec, model)

    def preferred_suffix(self, model) -> str:
        from edgepack.toolkit.backends.keras.model import preferred_suffix
        return preferred_suffix(model)

    def predict(self, model, x, batch_size: int = 500):
        from edgepack.toolkit.backends.keras.model import predict
        return predict(model, x, batch_size)

    def predict_outputs(self, model, x, batch_size: int = 500) -> dict:
        from edgepack.toolkit.backends.keras.model import predict_outputs
        return predict_outputs(model, x, batch_size)

    def fit(self, model, ds, cfg, **kw):
        from edgepack.toolkit.backends.keras.train import fit
        return fit(model, ds, cfg, **kw)

    def evaluate(self, model, ds, indices=None, split: str = "test"):
        from edgepack.toolkit.backends.keras.train import evaluate
        return evaluate(model, ds, indices, split)

    def count_params(self, model) -> dict:
        from edgepack.toolkit.backends.keras.model import count_params
        return count_params(model)

    def count_nonzero_trainable(self, model) -> int:
        import numpy as np
        return int(sum(np.count_nonzero(w.numpy()) for w in model.trainable_weights))

    def get_weights(self, model, spec=None) -> dict:
        from edgepack.toolkit.backends.keras.weights import get_keras_weights
        return get_keras_weights(model, spec or model.edgepack_spec)

    def set_weights(self, model, weights: dict, spec=None, strict: bool = True) -> None:
        from edgepack.toolkit.backends.keras.weights import set_keras_weights
        set_keras_weights(model, spec or model.edgepack_spec, weights)

    def to_onnx(self, model, path, input_shape_hwc, opset: int | None = None) -> dict:
        from edgepack.toolkit.backends.keras.export import DEFAULT_OPSET, to_onnx
        return to_onnx(model, path, input_shape_hwc, opset or DEFAULT_OPSET)

    # ------------------------------------------------------------ capabilities
    def kd_loss(self, teacher, alpha: float, temperature: float):
        from edgepack.toolkit.backends.keras.compress import kd_loss
        return kd_loss(teacher, alpha, temperature)

    def prune(self, model, dataset, cfg, schedule, *, method, scope, block_size, verbose):
        from edgepack.toolkit.backends.keras.compress import prune_wrap, strip_pruning
        if method != "l1" or scope != "layer":
            raise OptionError("Keras pruning uses TFMOT's per-layer magnitude pruning (method l1, scope layer)")
        wrapped, callbacks = prune_wrap(model, schedule, tuple(block_size) if block_size else (1, 1))
        self.fit(wrapped, dataset, cfg, verbose=verbose, callbacks=callbacks)
        return strip_pruning(wrapped)

    def qat_apply(self, model, preserve_sparsity: bool):
        from edgepack.toolkit.backends.keras.compress import qat_apply
        return qat_apply(model, preserve_sparsity)

    def sparsity_report(self, model) -> dict:
        from edgepack.toolkit.backends.keras.compress import sparsity_report
        return sparsity_report(model)

    def to_tflite(self, model, mode: str, representative=None, io_dtype: str = "int8", per_channel: bool = True,
                  dense_per_channel: bool | None = None, float_nodes: tuple[str, ...] = (), input_shape_hwc=None,
                  input_layout: str = "NHWC"):
        if input_layout != "NHWC":
            raise OptionError("a Keras model's TFLite file takes NHWC images (keep_nchw applies to PyTorch sources)")
        from edgepack.toolkit.backends.keras.export import to_tflite
        return to_tflite(model, mode, representative, io_dtype, per_channel,
                         per_channel if dense_per_channel is None else dense_per_channel, float_nodes)


FRAMEWORK = KerasFramework()

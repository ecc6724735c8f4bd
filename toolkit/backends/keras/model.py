"""Build, save, load and run Keras (tf-keras 2) models from an `ArchSpec` (layer names = spec node names)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgepack.toolkit.tf_import import import_tensorflow

tf = import_tensorflow()

from edgepack.toolkit.arch import spec as S  # noqa: E402
from edgepack.toolkit.errors import ModelError, first_line  # noqa: E402

keras = tf.keras
L_ = keras.layers

NAME = "keras"
LAYOUT = "NHWC"
SUFFIXES = (".keras", ".h5")


def kname(node_name: str) -> str:
    """Keras layer name of a spec node ('residual4.body.conv0' -> 'residual4__body__conv0')."""
    return node_name.replace(".", "__")


def _act_layer(kind, name):
    return L_.ReLU(max_value=6.0 if kind == "relu6" else None, name=name)


def _apply(node: S.Node, x, nodes_by_parent):
    L, nm = node.layer, kname(node.name)
    if isinstance(L, S.Conv):
        x = L_.Conv2D(L.filters, L.kernel, L.stride, L.padding, groups=L.groups, use_bias=L.bias, name=nm)(x)
        return _act_layer(L.activation, nm + "__act")(x) if L.activation else x
    if isinstance(L, S.DepthwiseConv):
        x = L_.DepthwiseConv2D(L.kernel, L.stride, L.padding, depth_multiplier=L.multiplier, use_bias=L.bias, name=nm)(x)
        return _act_layer(L.activation, nm + "__act")(x) if L.activation else x
    if isinstance(L, S.SeparableConv):
        x = L_.SeparableConv2D(L.filters, L.kernel, L.stride, L.padding, use_bias=L.bias, name=nm)(x)
        return _act_layer(L.activation, nm + "__act")(x) if L.activation else x
    if isinstance(L, S.BatchNorm):
        return L_.BatchNormalization(epsilon=L.eps, momentum=0.9, name=nm)(x)
    if isinstance(L, S.Activation):
        return _act_layer(L.kind, nm)(x)
    if isinstance(L, S.MaxPool):
        return L_.MaxPooling2D(L.size, L.stride or L.size, name=nm)(x)
    if isinstance(L, S.AvgPool):
        return L_.AveragePooling2D(L.size, L.stride or L.size, name=nm)(x)
    if isinstance(L, S.GlobalAvgPool):
        return L_.GlobalAveragePooling2D(name=nm)(x)
    if isinstance(L, S.Dropout):
        return L_.Dropout(L.rate, name=nm)(x)
    if isinstance(L, S.Flatten):
        return L_.Flatten(name=nm)(x)
    if isinstance(L, S.GridOutput):
        return L_.Reshape(node.out_shape, name=nm)(x)
    if isinstance(L, S.Dense):
        return L_.Dense(L.units, activation=L.activation, use_bias=L.bias, name=nm)(x)
    if isinstance(L, S.Residual):
        body = x
        for child in nodes_by_parent.get(node.name + ".body", []):
            body = _apply(child, body, nodes_by_parent)
        short = x
        for child in nodes_by_parent.get(node.name + ".shortcut", []):
            short = _apply(child, short, nodes_by_parent)
        y = L_.Add(name=nm + "__add")([body, short])
        return _act_layer(L.activation, nm + "__act")(y) if L.activation else y
    raise ModelError(f"{node.name}: no Keras builder for {type(L).__name__}")


def build(spec: S.ArchSpec, seed: int | None = 0):
    """Build the Keras functional model for `spec` (deterministic init when `seed` is given)."""
    if seed is not None:
        keras.utils.set_random_seed(seed)
    nodes = spec.walk()
    by_parent: dict[str, list[S.Node]] = {}
    for n in nodes:
        by_parent.setdefault(n.name.rsplit(".", 1)[0] if "." in n.name else "", []).append(n)
    inp = keras.Input(shape=tuple(spec.input_shape), name="input")
    x = inp
    for node in by_parent[""]:
        x = _apply(node, x, by_parent)
    model = keras.Model(inp, x, name=spec.name.replace("-", "_"))
    model.edgepack_spec = spec
    return model


def count_params(model) -> dict:
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    nontrain = int(sum(np.prod(w.shape) for w in model.non_trainable_weights))
    nonzero = int(sum(np.count_nonzero(w) for w in model.get_weights()))
    return {"trainable": trainable, "non_trainable": nontrain, "total": trainable + nontrain, "nonzero": nonzero}


def predict(model, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Logits for float32 NHWC input."""
    outs = [model(x[i:i + batch_size], training=False).numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(outs) if outs else np.zeros((0,), np.float32)


def predict_outputs(model, x: np.ndarray, batch_size: int = 500) -> dict:
    """Every output by name for float32 NHWC input: a one-output model's is 'logits' (as built models' ONNX names it),
    a model with several outputs keeps Keras's output names (what its TFLite signature and ONNX carry)."""
    names = list(getattr(model, "output_names", None) or [])
    if len(names) <= 1:
        return {"logits": predict(model, x, batch_size)}
    parts = [[] for _ in names]
    for i in range(0, len(x), batch_size):
        for k, o in enumerate(model(x[i:i + batch_size], training=False)):
            parts[k].append(o.numpy())
    return {n: np.concatenate(p) for n, p in zip(names, parts)}


def preferred_suffix(model) -> str:
    """tf-keras's native format cannot restore TFMOT quantize layers; QAT models go to HDF5 (as TFMOT documents)."""
    return ".h5" if any("Quantize" in type(layer).__name__ for layer in model.layers) else ".keras"


def save(model, path: str | Path) -> Path:
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    try:
        if path.suffix == ".h5":
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")                  # "HDF5 is legacy": chosen on purpose for QAT models
                model.save(tmp, include_optimizer=False)
        else:
            model.save(tmp)
    except (OSError, RuntimeError) as e:
        tmp.unlink(missing_ok=True)
        from edgepack.toolkit.errors import write_error
        raise write_error(path, e) from None
    os.replace(tmp, path)
    return path


def load(path: str | Path, spec: S.ArchSpec | None = None, model=None):
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint not found")
    try:
        loaded = keras.models.load_model(path, compile=False)
    except Exception as e:
        loaded = _load_with_tfmot_scope(path)           # QAT / pruning wrappers need TFMOT's custom objects
        if loaded is None:
            raise ModelError(f"{path}: not a readable Keras model ({first_line(e, 120)})") from None
    if spec is not None:
        loaded.edgepack_spec = spec
    return loaded


def _load_with_tfmot_scope(path):
    try:
        from edgepack.toolkit.tf_import import quiet_stderr
        with quiet_stderr():
            import tensorflow_model_optimization as tfmot
        with tfmot.quantization.keras.quantize_scope(), tfmot.sparsity.keras.prune_scope():
            return keras.models.load_model(path, compile=False)
    except Exception:
        return None

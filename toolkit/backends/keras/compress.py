"""Keras implementations behind toolkit.compress (mirrors torch/compress.py): TFMOT pruning and QAT,
distillation loss, and spec-level structured pruning (TFMOT has none)."""
from __future__ import annotations

import numpy as np

from edgepack.toolkit.backends.keras.model import keras, tf
from edgepack.toolkit.errors import OptionError
from edgepack.toolkit.tf_import import quiet_stderr

with quiet_stderr():
    import tensorflow_model_optimization as tfmot


# ------------------------------------------------------------------ distillation
def kd_loss(teacher, alpha: float, temperature: float):
    """alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y); teacher frozen (training=False)."""
    teacher.trainable = False
    T = float(temperature)
    kl = keras.losses.KLDivergence()
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def loss(logits, y, x):
        t = teacher(x, training=False)
        return alpha * T * T * kl(tf.nn.softmax(t / T), tf.nn.softmax(logits / T)) + (1 - alpha) * ce(y, logits)
    return loss


# ------------------------------------------------------------------ unstructured pruning (TFMOT)
def tfmot_schedule(schedule):
    from edgepack.toolkit.sparsity import ConstantSparsity, PolynomialDecay
    if isinstance(schedule, ConstantSparsity):
        return tfmot.sparsity.keras.ConstantSparsity(schedule.target_sparsity, schedule.begin_step, frequency=schedule.frequency)
    if isinstance(schedule, PolynomialDecay):
        return tfmot.sparsity.keras.PolynomialDecay(schedule.initial_sparsity, schedule.final_sparsity, schedule.begin_step,
                                                    schedule.end_step, power=schedule.power, frequency=schedule.frequency)
    raise OptionError(f"unknown schedule {schedule!r}")


class _UpdatePruningStep:
    """TFMOT's UpdatePruningStep driven by edgepack's training-loop hooks."""

    def __init__(self, model):
        self.cb = tfmot.sparsity.keras.UpdatePruningStep()
        self.cb.set_model(model)

    def on_train_begin(self, model):
        self.cb.on_train_begin()

    def on_step_begin(self, step):
        self.cb.on_train_batch_begin(step)

    def on_epoch_end(self, epoch):
        self.cb.on_epoch_end(epoch)


def prune_wrap(model, schedule, block_size=(1, 1)):
    """prune_low_magnitude on every Conv/Dense; returns (wrapped model, training callbacks)."""
    spec = getattr(model, "edgepack_spec", None)
    sched = tfmot_schedule(schedule)
    with quiet_stderr():
        if tuple(block_size) == (1, 1):
            wrapped = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=sched)
        else:                    # TFMOT blocks need 2-D kernels: blocks on Dense layers, plain magnitude on convs

            def per_layer(layer):
                if isinstance(layer, keras.layers.Dense):
                    return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=sched, block_size=tuple(block_size))
                if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)):
                    return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=sched)
                return layer
            wrapped = keras.models.clone_model(model, clone_function=per_layer)
    wrapped.edgepack_spec = spec
    return wrapped, [_UpdatePruningStep(wrapped)]


def strip_pruning(model):
    spec = getattr(model, "edgepack_spec", None)
    stripped = tfmot.sparsity.keras.strip_pruning(model)
    stripped.edgepack_spec = spec
    return stripped


def sparsity_report(model) -> dict:
    per, total, zeros = {}, 0, 0
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None) if not hasattr(layer, "layer") else getattr(layer.layer, "kernel", None)
        if kernel is None:
            continue
        k = kernel.numpy()
        per[layer.name] = float((k == 0).mean())
        total += k.size
        zeros += int((k == 0).sum())
    return {"layers": per, "total": zeros / max(total, 1)}


# ------------------------------------------------------------------ QAT (TFMOT)
def qat_apply(model, preserve_sparsity: bool = False):
    """tfmot quantize_model (or pruning-preserving QAT when the model is sparse and preserve_sparsity is set)."""
    spec = getattr(model, "edgepack_spec", None)
    with quiet_stderr():
        if preserve_sparsity:
            annotated = tfmot.quantization.keras.quantize_annotate_model(model)
            q = tfmot.quantization.keras.quantize_apply(
                annotated, tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme())
        else:
            q = tfmot.quantization.keras.quantize_model(model)
    q.edgepack_spec = spec
    return q

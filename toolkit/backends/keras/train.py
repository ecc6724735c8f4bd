"""Keras training through a custom loop mirroring the torch one: same batches, schedule and early stopping."""
from __future__ import annotations

from typing import Callable

import numpy as np

from edgepack.toolkit.backends.keras.model import keras, predict, tf
from edgepack.toolkit.data import Dataset
from edgepack.toolkit.train import History, TrainConfig, heldout_loss, run_epochs

# loss_fn(logits, labels, inputs) -> scalar tensor; distillation plugs in here
LossFn = Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]


def outputs_probabilities(model) -> bool:
    """True when the model ends in a softmax (the tf.keras.applications default), i.e. outputs probabilities."""
    last = model.layers[-1] if getattr(model, "layers", None) else None
    if last is None:
        return False
    if isinstance(last, keras.layers.Softmax):
        return True
    act = getattr(last, "activation", None)
    return act is not None and getattr(act, "__name__", "") == "softmax"


def _cross_entropy(model, label_smoothing: float = 0.0):
    """loss(y, outputs) on integer labels; with smoothing, on one-hot targets (the sparse loss has no smoothing)."""
    from_logits = not outputs_probabilities(model)
    if not label_smoothing:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    smoothed = keras.losses.CategoricalCrossentropy(from_logits=from_logits, label_smoothing=label_smoothing)
    return lambda y, outputs: smoothed(tf.one_hot(y, tf.shape(outputs)[-1]), outputs)


def _optimizer(cfg: TrainConfig):
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(cfg.lr, weight_decay=cfg.weight_decay or None)
    return keras.optimizers.SGD(cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
                                weight_decay=cfg.weight_decay or None)


def reconstruction_loss(out, y, x):
    """Mean squared error between the output and the input, both flattened in (H, W, C) order (as in PyTorch)."""
    n = tf.shape(x)[0]
    return tf.reduce_mean(tf.square(tf.reshape(out, [n, -1]) - tf.reshape(x, [n, -1])))


def grid_loss(out, t, x):
    """A grid detection head's loss on per-cell targets (N, cells, 6): `edgepack.toolkit.tasks.detection.grid_loss_numpy`
    in TensorFlow (the tests hold the two equal)."""
    m = t[..., 0]
    sig = tf.nn.sigmoid_cross_entropy_with_logits
    obj = tf.reduce_sum(sig(labels=m, logits=out[..., 4]))
    xy = tf.reduce_sum(tf.reduce_sum(sig(labels=t[..., 1:3], logits=out[..., 0:2]), -1) * m)
    wh = tf.reduce_sum(tf.reduce_sum(tf.square(out[..., 2:4] - t[..., 3:5]), -1) * m)
    ce = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(t[..., 5], tf.int32),
                                                                      logits=out[..., 5:]) * m)
    return (obj + xy + wh + ce) / tf.cast(tf.shape(out)[0], tf.float32)


OBJECTIVE_LOSSES = {"reconstruction": reconstruction_loss, "boxes": grid_loss}


def fit(model, ds: Dataset, cfg: TrainConfig, *, loss_fn: LossFn | None = None, verbose: bool = True,
        callbacks: list | None = None, extra_parameters: list | None = None, objective: str = "classification") -> History:
    """Train in place. `loss_fn(logits, y, x)` replaces cross-entropy; `extra_parameters` (variables) are
    optimised alongside the model's own; objective "reconstruction" trains an autoencoder."""
    if cfg.precision == "bf16":
        from edgepack.toolkit.errors import OptionError
        raise OptionError("precision = bf16 is PyTorch-only (a Keras model takes its dtype policy when it is built); "
                          "train in fp32, or use precision = auto, which is fp32 in Keras")
    if cfg.threads:
        tf.config.threading.set_intra_op_parallelism_threads(cfg.threads)
    keras.utils.set_random_seed(cfg.seed)
    opt = _optimizer(cfg)
    if outputs_probabilities(model):
        if loss_fn is not None:
            from edgepack.toolkit.errors import ModelError
            raise ModelError(f"{model.name} ends in a softmax (it outputs probabilities); distillation needs logits: "
                             "rebuild it without the final softmax (tf.keras.applications: classifier_activation=None)")
        if verbose:
            print(f"note: {model.name} ends in a softmax: trained with cross-entropy on probabilities", flush=True)
    labels = objective == "classification"
    ce = _cross_entropy(model, cfg.label_smoothing)
    loss_fn = loss_fn or ((lambda logits, y, x: ce(y, logits)) if labels else OBJECTIVE_LOSSES[objective])

    @tf.function(reduce_retracing=True)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = loss_fn(logits, y, x)
            if model.losses:
                loss = loss + tf.add_n(model.losses)
        variables = model.trainable_variables + list(extra_parameters or [])
        grads = tape.gradient(loss, variables)
        opt.apply_gradients(zip(grads, variables))
        if not labels:
            return loss, tf.constant(0, tf.int64)
        return loss, tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, 1, output_type=tf.int64), y), tf.int64))

    def step(xb, yb, lr):
        opt.learning_rate.assign(lr)
        loss, corr = train_step(tf.constant(xb), tf.constant(yb))
        return float(loss), int(corr) if labels else None
    validate = ((lambda idx: evaluate(model, ds, idx, split="train")) if labels else
                (lambda idx: (heldout_loss(objective, predict(model, ds.normalize(ds.x_train[idx], "NHWC")), ds, idx),
                              None)))

    def run():
        return run_epochs(model, ds, cfg, "NHWC", step=step, validate=validate,
                          snapshot=model.get_weights, restore=model.set_weights, callbacks=callbacks, verbose=verbose)
    if not cfg.resize_from:
        return run()
    # progressive resizing feeds smaller images: lift the functional model's input-shape check while training
    manual = model.__dict__.get("_manual_input_spec", _UNSET)
    model.input_spec = None
    try:
        return run()
    finally:
        if manual is _UNSET:
            model.__dict__.pop("_manual_input_spec", None)
        else:
            model.input_spec = manual


_UNSET = object()


def evaluate(model, ds: Dataset, indices: np.ndarray | None = None, split: str = "test",
             batch_size: int = 500) -> tuple[float, float]:
    """(mean cross-entropy, top-1 accuracy) on `split` (all of it, or `indices`)."""
    x_all, y_all = (ds.x_train, ds.y_train) if split == "train" else (ds.x_test, ds.y_test)
    if indices is None:
        indices = np.arange(len(y_all))
    logits = predict(model, ds.normalize(x_all[indices], "NHWC"), batch_size)
    y = y_all[indices]
    loss = float(_cross_entropy(model)(y, logits))
    return loss, float((logits.argmax(1) == y).mean())

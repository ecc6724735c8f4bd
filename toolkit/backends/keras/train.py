"""Keras training through a custom loop mirroring the torch one: same batches, schedule and early stopping."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from toolkit.backends.keras.model import keras, predict, tf
from toolkit.data import Dataset, iterate_batches
from toolkit.progress import progress
from toolkit.train import EarlyStopper, History, TrainConfig, call_hooks as _call, lr_at

# loss_fn(logits, labels, inputs) -> scalar tensor; distillation plugs in here
LossFn = Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]


def _optimizer(cfg: TrainConfig):
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(cfg.lr, weight_decay=cfg.weight_decay or None)
    return keras.optimizers.SGD(cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
                                weight_decay=cfg.weight_decay or None)


def fit(model, ds: Dataset, cfg: TrainConfig, *, loss_fn: LossFn | None = None, verbose: bool = True,
        callbacks: list | None = None, extra_parameters: list | None = None) -> History:
    """Train in place. `loss_fn(logits, y, x)` replaces cross-entropy; `extra_parameters` (variables) are
    optimised alongside the model's own."""
    if cfg.threads:
        tf.config.threading.set_intra_op_parallelism_threads(cfg.threads)
    keras.utils.set_random_seed(cfg.seed)
    train_idx, val_idx = ds.split(cfg.val_fraction, cfg.seed)
    opt = _optimizer(cfg)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    loss_fn = loss_fn or (lambda logits, y, x: ce(y, logits))

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
        return loss, tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, 1, output_type=tf.int64), y), tf.int64))

    steps_per_epoch = -(-len(train_idx) // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    _call(callbacks, "on_train_begin", model)
    stopper, hist, best_weights, step = EarlyStopper(cfg.patience), History(), None, 0
    for epoch in range(cfg.epochs):
        t0, seen, loss_sum, correct = time.time(), 0, 0.0, 0
        batches = iterate_batches(ds, train_idx, cfg.batch_size, "NHWC", shuffle=True, augment=cfg.augment,
                                  seed=cfg.seed, epoch=epoch)
        bar = progress(batches, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", enabled=verbose)
        for xb, yb in bar:
            lr = lr_at(cfg, step, total)
            opt.learning_rate.assign(lr)
            _call(callbacks, "on_step_begin", step)
            loss, corr = train_step(tf.constant(xb), tf.constant(yb))
            _call(callbacks, "on_step_end", step)
            step += 1
            n = len(yb)
            seen += n
            loss_sum += float(loss) * n
            correct += int(corr)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}", refresh=False)
        _call(callbacks, "on_epoch_end", epoch)
        val_loss, val_acc = evaluate(model, ds, val_idx, split="train") if len(val_idx) else (None, None)
        hist.add(epoch=epoch + 1, loss=loss_sum / seen, accuracy=correct / seen, val_loss=val_loss,
                 val_accuracy=val_acc, lr=lr, seconds=time.time() - t0)
        if verbose:
            vl = f" val_loss {val_loss:.4f} val_acc {val_acc:.4f}" if val_loss is not None else ""
            print(f"epoch {epoch + 1}: loss {loss_sum / seen:.4f} acc {correct / seen:.4f}{vl} ({time.time() - t0:.1f}s)", flush=True)
        if val_loss is not None:
            if stopper.update(val_loss, epoch + 1):
                best_weights = model.get_weights()
            if stopper.stop:
                hist.stopped_early = True
                break
    _call(callbacks, "on_train_end", model)
    if best_weights is not None:
        model.set_weights(best_weights)
        hist.best_epoch = stopper.best_epoch
    return hist


def evaluate(model, ds: Dataset, indices: np.ndarray | None = None, split: str = "test",
             batch_size: int = 500) -> tuple[float, float]:
    """(mean cross-entropy, top-1 accuracy) on `split` (all of it, or `indices`)."""
    x_all, y_all = (ds.x_train, ds.y_train) if split == "train" else (ds.x_test, ds.y_test)
    if indices is None:
        indices = np.arange(len(y_all))
    logits = predict(model, ds.normalize(x_all[indices], "NHWC"), batch_size)
    y = y_all[indices]
    loss = float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits))
    return loss, float((logits.argmax(1) == y).mean())

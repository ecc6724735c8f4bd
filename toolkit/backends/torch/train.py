"""PyTorch training loop: seeded, channels_last, per-step LR schedule, early stopping with best-weights restore."""
from __future__ import annotations

import copy
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from toolkit.backends.torch.model import predict, to_input
from toolkit.data import Dataset, iterate_batches
from toolkit.progress import progress
from toolkit.train import EarlyStopper, History, TrainConfig, call_hooks as _call, lr_at

# loss_fn(logits, labels, inputs) -> scalar tensor; distillation plugs in here
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _optimizer(model: nn.Module, cfg: TrainConfig, extra=()):
    params = [p for p in model.parameters() if p.requires_grad] + list(extra)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.momentum > 0)


def fit(model: nn.Module, ds: Dataset, cfg: TrainConfig, *, loss_fn: LossFn | None = None, verbose: bool = True,
        callbacks: list | None = None, extra_parameters: list | None = None) -> History:
    """Train in place. `loss_fn(logits, y, x)` replaces cross-entropy; `extra_parameters` (e.g. a distillation
    adapter) are optimised alongside the model's own."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model.to(memory_format=torch.channels_last)
    train_idx, val_idx = ds.split(cfg.val_fraction, cfg.seed)
    opt = _optimizer(model, cfg, extra_parameters or ())
    steps_per_epoch = -(-len(train_idx) // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    loss_fn = loss_fn or (lambda logits, y, x: F.cross_entropy(logits, y))
    _call(callbacks, "on_train_begin", model)
    stopper, hist, best_state, step = EarlyStopper(cfg.patience), History(), None, 0
    for epoch in range(cfg.epochs):
        model.train()
        t0, seen, loss_sum, correct = time.time(), 0, 0.0, 0
        batches = iterate_batches(ds, train_idx, cfg.batch_size, "NCHW", shuffle=True, augment=cfg.augment,
                                  seed=cfg.seed, epoch=epoch)
        bar = progress(batches, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", enabled=verbose)
        for xb, yb in bar:
            lr = lr_at(cfg, step, total)
            for g in opt.param_groups:
                g["lr"] = lr
            _call(callbacks, "on_step_begin", step)
            x, y = to_input(xb), torch.from_numpy(yb)
            logits = model(x)
            loss = loss_fn(logits, y, x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            _call(callbacks, "on_step_end", step)
            step += 1
            n = len(yb)
            seen += n
            loss_sum += float(loss.detach()) * n
            correct += int((logits.argmax(1) == y).sum())
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
                best_state = copy.deepcopy(model.state_dict())
            if stopper.stop:
                hist.stopped_early = True
                break
    _call(callbacks, "on_train_end", model)
    if best_state is not None:
        model.load_state_dict(best_state)
        hist.best_epoch = stopper.best_epoch
    model.eval()
    return hist


def evaluate(model: nn.Module, ds: Dataset, indices: np.ndarray | None = None, split: str = "test",
             batch_size: int = 500) -> tuple[float, float]:
    """(mean cross-entropy, top-1 accuracy) on `split` (all of it, or `indices`)."""
    x_all, y_all = (ds.x_train, ds.y_train) if split == "train" else (ds.x_test, ds.y_test)
    if indices is None:
        indices = np.arange(len(y_all))
    logits = predict(model, ds.normalize(x_all[indices], "NCHW"), batch_size)
    y = torch.from_numpy(y_all[indices])
    lt = torch.from_numpy(logits)
    return float(F.cross_entropy(lt, y)), float((lt.argmax(1) == y).float().mean())

"""PyTorch training loop: seeded, channels_last, per-step LR schedule, early stopping with best-weights restore."""
from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgepack.toolkit.backends.torch.model import predict, to_input
from edgepack.toolkit.data import Dataset
from edgepack.toolkit.train import History, TrainConfig, heldout_loss, run_epochs

# loss_fn(logits, labels, inputs) -> scalar tensor; distillation plugs in here
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _optimizer(model: nn.Module, cfg: TrainConfig, extra=()):
    params = [p for p in model.parameters() if p.requires_grad] + list(extra)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.momentum > 0)


def reconstruction_loss(out: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the output and the input, both flattened in (H, W, C) order: an autoencoder's
    reconstruction is the same vector in both frameworks, whatever layout each takes its input in."""
    return F.mse_loss(out.reshape(len(x), -1), x.permute(0, 2, 3, 1).reshape(len(x), -1))


def grid_loss(out: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A grid detection head's loss on per-cell targets (N, cells, 6): `edgepack.toolkit.tasks.detection.grid_loss_numpy`
    in torch (the tests hold the two equal)."""
    m = t[..., 0]
    bce = F.binary_cross_entropy_with_logits
    obj = bce(out[..., 4], m, reduction="sum")
    xy = (bce(out[..., 0:2], t[..., 1:3], reduction="none").sum(-1) * m).sum()
    wh = (((out[..., 2:4] - t[..., 3:5]) ** 2).sum(-1) * m).sum()
    logits = out[..., 5:]
    ce = (F.cross_entropy(logits.reshape(-1, logits.shape[-1]), t[..., 5].long().reshape(-1), reduction="none")
          .reshape(m.shape) * m).sum()
    return (obj + xy + wh + ce) / len(out)


OBJECTIVE_LOSSES = {"reconstruction": reconstruction_loss, "boxes": grid_loss}


def train_step(model: nn.Module, cfg: TrainConfig, *, loss_fn: LossFn | None = None,
               extra_parameters: list | None = None,
               objective: str = "classification") -> Callable[[np.ndarray, np.ndarray, float], tuple[float, int]]:
    """The step `fit` runs, `step(x, y, lr) -> (loss, n_correct)` on one normalized NCHW batch: the model in
    channels_last, the optimizer of `cfg`, cross-entropy (with cfg's label smoothing) unless `loss_fn` replaces it
    (objective "reconstruction": the reconstruction error, and n_correct None). Also what tools.epoch_profile times."""
    model.to(memory_format=torch.channels_last)
    opt = _optimizer(model, cfg, extra_parameters or ())
    labels = objective == "classification"
    loss_fn = loss_fn or (OBJECTIVE_LOSSES[objective] if not labels else
                          (lambda logits, y, x: F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)))
    bf16 = resolve_precision(cfg.precision) == "bf16"

    def step(xb, yb, lr):
        model.train()
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = to_input(xb), torch.from_numpy(yb)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        logits = logits.float()                 # the loss (and a teacher inside a distillation loss) in float32
        loss = loss_fn(logits, y, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach()), int((logits.argmax(1) == y).sum()) if labels else None
    return step


def has_amx() -> bool:
    """Whether this CPU has AMX tiles (oneDNN's bf16 and int8 matrix engine); False where torch cannot tell."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(probe()) if probe else False
    except Exception:       # noqa: BLE001 - a private probe: any failure means "not known to have it"
        return False


def resolve_precision(precision: str) -> str:
    """cfg.precision as trained: "auto" is bf16 on a CPU with AMX (the train step measured x1.66 there), else fp32."""
    if precision == "auto":
        return "bf16" if has_amx() else "fp32"
    return precision


def fit(model: nn.Module, ds: Dataset, cfg: TrainConfig, *, loss_fn: LossFn | None = None, verbose: bool = True,
        callbacks: list | None = None, extra_parameters: list | None = None, objective: str = "classification") -> History:
    """Train in place. `loss_fn(logits, y, x)` replaces cross-entropy; `extra_parameters` (e.g. a distillation
    adapter) are optimised alongside the model's own; objective "reconstruction" trains an autoencoder."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    precision = resolve_precision(cfg.precision)
    if verbose and precision != "fp32":
        print(f"training in {precision} (autocast; precision = {cfg.precision!r}); weights, optimizer, evaluation "
              f"and exports stay float32", flush=True)
    step = train_step(model, cfg, loss_fn=loss_fn, extra_parameters=extra_parameters, objective=objective)
    validate = ((lambda idx: evaluate(model, ds, idx, split="train")) if objective == "classification" else
                (lambda idx: (heldout_loss(objective, predict(model, ds.normalize(ds.x_train[idx], "NCHW")), ds, idx),
                              None)))
    hist = run_epochs(model, ds, cfg, "NCHW", step=step, validate=validate,
                      snapshot=lambda: copy.deepcopy(model.state_dict()), restore=model.load_state_dict,
                      callbacks=callbacks, verbose=verbose)
    hist.precision = precision
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

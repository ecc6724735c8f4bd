"""Framework-free training pieces shared by both backends: config, LR schedules, early stopping, history."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from edgepack.toolkit.errors import OptionError
from edgepack.toolkit.options import check_choices, option
from edgepack.toolkit.outputs import save_figure

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine", "onecycle")
PRECISIONS = ("fp32", "bf16", "auto")


@dataclass
class TrainConfig:
    """Training options, declared once: `edgepack train` flags and recipe train-step keys come from these fields."""
    epochs: int = option(4, "training epochs (with a time budget: the most epochs)")
    batch_size: int = option(32, "batch size (32: the Keras fit() default of the TFMOT tutorials)")
    optimizer: str = option("adam", "optimizer (SGD: Nesterov momentum)", choices=OPTIMIZERS)
    lr: float = option(1e-3, "learning rate (the peak of a one-cycle schedule)")
    momentum: float = option(0.9, "SGD momentum")
    weight_decay: float = option(0.0, "L2 weight decay")
    label_smoothing: float = option(0.0, "label smoothing e of the cross-entropy targets: the true class gets 1 - e + e/K, "
                                         "the others e/K (0: off; distillation keeps its own loss)")
    schedule: str = option("constant", "learning-rate schedule", choices=SCHEDULES)
    augment: bool = option(False, "random crop (pad 4) + horizontal flip (CIFAR)")
    cutout: int = option(0, "cutout (needs augment): after crop + flip, one random square of this side in pixels per "
                            "image, centred anywhere and clipped at the border, is set to the mean colour (0: off)")
    resize_from: int = option(0, "progressive resizing: the first epoch trains on images scaled down (area "
                                 "averaging) to this height in pixels, width in proportion; the side grows linearly "
                                 "in steps of 4 pixels to the full size at `resize_until` of the epochs and stays "
                                 "there (0: off). Smaller epochs are faster, so a time budget plans more of them. "
                                 "Needs a network that accepts smaller inputs (global pooling); evaluation is "
                                 "always at full size; fine-tunes do not inherit it")
    resize_until: float = option(0.5, "progressive resizing: fraction of the epochs after which training is at full "
                                      "size")
    val_fraction: float = option(0.1, "training images held out for validation (0: train on all)")
    patience: int = option(0, "early-stopping patience in epochs on validation loss (0: off; best weights still restored)")
    restore_best: bool = option(True, "restore the best-validation weights at the end (off while pruning: masks move on)",
                                negate="--keep-last")
    time_budget: float = option(0.0, "minutes of training: after each epoch the number of epochs is planned again "
                                     "from the measured epoch time (at most `epochs`) and the LR schedule is "
                                     "stretched or shrunk to end on time (0: off; a fine-tune does not inherit it)")
    precision: str = option(
        "fp32", "arithmetic of the training forward pass: fp32, or bf16 (PyTorch autocast: convolutions and matmuls "
                "in bfloat16; weights, optimizer and loss in float32; x1.66 on the ResNet-8 train step on a Xeon with "
                "AMX); auto: bf16 where the CPU has AMX, fp32 elsewhere (only measured faster with AMX). "
                "Evaluation, checkpoints and exports stay float32; fine-tunes (pruning, QAT) train in fp32. PyTorch "
                "only", choices=PRECISIONS)
    seed: int = option(0, "seed of data order, augmentation and initialisation")
    threads: int | None = option(None, "framework threads (default: the framework's own choice)")

    def __post_init__(self):
        check_choices(self)
        if self.epochs < 1 or self.batch_size < 1:
            raise OptionError("epochs and batch size must be >= 1")
        if not self.lr > 0:
            raise OptionError(f"learning rate must be > 0, got {self.lr}")
        if not 0 <= self.val_fraction < 1:
            raise OptionError(f"validation fraction must be in [0, 1), got {self.val_fraction}")
        if not 0 <= self.label_smoothing < 1:
            raise OptionError(f"label smoothing must be in [0, 1), got {self.label_smoothing}")
        if not self.time_budget >= 0:
            raise OptionError(f"time budget must be >= 0 minutes, got {self.time_budget}")
        if self.cutout < 0:
            raise OptionError(f"cutout must be >= 0 pixels, got {self.cutout}")
        if self.resize_from < 0:
            raise OptionError(f"resize_from must be >= 0 pixels, got {self.resize_from}")
        if not 0 < self.resize_until <= 1:
            raise OptionError(f"resize_until must be in (0, 1], got {self.resize_until}")
        if self.cutout and not self.augment:
            raise OptionError("cutout is part of the augmentation: it needs augment (--augment, or augment = true)")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise OptionError(f"unknown training option(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


def heldout_loss(objective: str, outputs, ds, idx) -> float:
    """The validation loss of an objective without labels, on model outputs for `ds.x_train[idx]`, in NumPy: the
    same definition for both frameworks (their training losses are held equal to it by the tests).
    reconstruction: mean squared error against the normalised input, both flattened in (H, W, C) order; boxes: a
    grid detection head's loss on the per-cell targets `ds.y_train` holds (`edgepack.toolkit.tasks.detection`)."""
    import numpy as np
    out = np.asarray(outputs, np.float64)
    if objective == "reconstruction":
        x = ds.normalize(ds.x_train[idx], "NHWC")
        return float(np.mean((out.reshape(len(x), -1) - x.reshape(len(x), -1)) ** 2))
    if objective == "boxes":
        from edgepack.toolkit.tasks.detection import grid_loss_numpy
        return grid_loss_numpy(out, ds.y_train[idx])
    raise OptionError(f"no held-out loss for training objective {objective!r}")


def call_hooks(callbacks, hook: str, arg) -> None:
    """Training callbacks: any object with some of on_train_begin(model), on_step_begin(step),
    on_step_end(step), on_epoch_end(epoch), on_train_end(model)."""
    for cb in callbacks or ():
        fn = getattr(cb, hook, None)
        if fn is not None:
            fn(arg)


def lr_at(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """Learning rate for a 0-based optimizer step; the same function drives torch and Keras."""
    t = min(step / max(total_steps, 1), 1.0)
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * t))
    # one-cycle: 30% linear warm-up from lr/25 to lr, cosine anneal to lr/1e4
    warm = 0.3
    if t < warm:
        return cfg.lr / 25 + (cfg.lr - cfg.lr / 25) * t / warm
    u = (t - warm) / (1 - warm)
    return cfg.lr / 1e4 + (cfg.lr - cfg.lr / 1e4) * 0.5 * (1 + math.cos(math.pi * u))


# The share of an epoch's time that does not shrink with the image area (per-step dispatch, optimizer, batch
# pipeline): the time budget's plan prices a smaller epoch at share + (1 - share) x its area fraction. This is only
# the prior, used until epochs at two sizes have been timed; from then on `fixed_share` measures it (the 2-core AMD
# EPYC, AVX2, ResNet-8 at batch 128: about 0.1-0.2, where a fixed 0.3 made the first plans of a run too long).
RESIZE_FIXED_COST = 0.3


def fixed_share(areas: list[float], seconds: list[float]) -> float | None:
    """The share of an epoch's time that does not scale with image area, fitted from finished epochs: `areas` are
    their image areas relative to the full size, `seconds` their times. Sizes with two or more epochs give a point
    each (their median time, so a slow first epoch or one busy minute does not move it); a least-squares line
    time = fixed + per_area x area through two or more such points gives fixed / (fixed + per_area), kept in
    [0, 0.95]. None until there are two points, or when the line does not rise with area."""
    import numpy as np
    groups: dict[float, list[float]] = {}
    for a, s in zip(areas, seconds):
        groups.setdefault(round(a, 6), []).append(s)
    points = [(a, float(np.median(ts))) for a, ts in groups.items() if len(ts) >= 2]
    if len(points) < 2:
        return None
    slope, fixed = np.polyfit(*zip(*points), 1)
    if slope <= 0:
        return None
    return float(min(max(fixed / (fixed + slope), 0.0), 0.95))


def train_size(cfg: TrainConfig, full: tuple[int, int], epoch: int, planned: int) -> tuple[int, int]:
    """(height, width) the 0-based `epoch` of `planned` trains at: the full size, or under progressive resizing
    cfg.resize_from growing linearly, floored to a multiple of 4 pixels, to the full size at resize_until."""
    h, w = full
    if not cfg.resize_from or cfg.resize_from >= h:
        return h, w
    ramp = cfg.resize_until * planned
    if epoch >= ramp:
        return h, w
    side = cfg.resize_from + (h - cfg.resize_from) * epoch / ramp
    side = max(cfg.resize_from, int(side) // 4 * 4)
    return side, max(1, round(w * side / h))


def plan_epochs(budget_s: float, seconds: list[float], most: int, costs: list[float] | None = None,
                cost=None) -> int:
    """Epochs that fit a training time budget, given the seconds each finished epoch took: the finished ones plus
    as many more as the remaining time holds at the recent pace (the slower of the last epoch and the mean of the
    last three, so a slowdown shortens the plan at once); never fewer than finished, never more than `most`.
    With progressive resizing epochs differ in cost: `costs` are the finished epochs' relative costs (1: a
    full-size epoch) and `cost(epoch, planned)` a future one's; the pace is then seconds per unit of cost."""
    done = len(seconds)
    if not done:
        return most
    costs = costs or [1.0] * done
    per_unit = [s / max(c, 1e-9) for s, c in zip(seconds, costs)]
    recent = per_unit[-3:]
    pace = max(per_unit[-1], sum(recent) / len(recent), 1e-9)
    left = max(budget_s - sum(seconds), 0.0)
    if cost is None:
        return max(done, min(most, done + int(left // pace)))
    best = done
    for n in range(done + 1, most + 1):
        if pace * sum(cost(e, n) for e in range(done, n)) <= left:
            best = n
    return best


@dataclass
class EarlyStopper:
    """Tracks the best validation loss; `stop` turns true after `patience` epochs without improvement."""
    patience: int = 0
    best: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0

    def update(self, val_loss: float, epoch: int) -> bool:
        """Record one epoch; returns True when this epoch is the new best."""
        if val_loss < self.best - 1e-6:
            self.best, self.best_epoch, self.bad_epochs = val_loss, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def stop(self) -> bool:
        return self.patience > 0 and self.bad_epochs >= self.patience


def run_epochs(model, ds, cfg: "TrainConfig", layout: str, *, step, validate, snapshot, restore,
               callbacks=None, verbose: bool = True, clock=None) -> "History":
    """The epoch loop both backends share: seeded batches, per-step LR, callbacks, validation, early
    stopping with best-weights restore, and the time budget's epoch plan. Backends supply
    `step(x, y, lr) -> (loss, n_correct)`, `validate(val_idx) -> (loss, acc)` (n_correct and acc None for an objective
    without labels, e.g. reconstruction), `snapshot() -> state` and
    `restore(state)`; `clock` (seconds, default time.monotonic) is for tests."""
    import time
    from edgepack.toolkit.data import iterate_batches
    from edgepack.toolkit.progress import progress
    clock = clock or time.monotonic
    train_idx, val_idx = ds.split(cfg.val_fraction, cfg.seed)
    steps_per_epoch = -(-len(train_idx) // cfg.batch_size)
    planned, budget_s = cfg.epochs, cfg.time_budget * 60.0
    full = tuple(ds.x_train.shape[1:3])

    reached = (0, 0)       # the largest size trained at so far: a plan that grows never sends training back down

    def size_at(e: int, n: int) -> tuple[int, int]:
        return max(train_size(cfg, full, e, n), reached)

    def area(size: tuple[int, int]) -> float:
        return size[0] * size[1] / (full[0] * full[1])

    share = RESIZE_FIXED_COST                              # re-measured by fixed_share as epochs finish

    def cost_of(a: float) -> float:                        # an epoch's time relative to a full-size one
        return share + (1 - share) * a

    def cost(e: int, n: int) -> float:
        return cost_of(area(size_at(e, n)))
    call_hooks(callbacks, "on_train_begin", model)
    stopper, hist, best, n_step, lr, epoch = EarlyStopper(cfg.patience), History(), None, 0, cfg.lr, 0
    epoch_areas: list[float] = []      # each finished epoch's image area relative to the full size
    while epoch < planned:
        t0, seen, loss_sum, correct = clock(), 0, 0.0, 0
        total = steps_per_epoch * planned                  # the schedule's length: fixed, or the budget's plan
        size = reached = size_at(epoch, planned)
        batches = iterate_batches(ds, train_idx, cfg.batch_size, layout, shuffle=True, augment=cfg.augment,
                                  cutout=cfg.cutout, seed=cfg.seed, epoch=epoch,
                                  size=size if size != full else None)
        bar = progress(batches, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{planned}", enabled=verbose)
        for xb, yb in bar:
            lr = lr_at(cfg, n_step, total)
            call_hooks(callbacks, "on_step_begin", n_step)
            if n_step == 0 and size != full:
                loss, n_correct = _first_resized_step(step, xb, yb, lr, full)
            else:
                loss, n_correct = step(xb, yb, lr)
            call_hooks(callbacks, "on_step_end", n_step)
            n_step += 1
            seen += len(yb)
            loss_sum += loss * len(yb)
            if n_correct is None:                          # an objective without labels (reconstruction)
                correct = None
            elif correct is not None:
                correct += n_correct
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", **({} if correct is None else {"acc": f"{correct / seen:.4f}"}),
                                refresh=False)
        call_hooks(callbacks, "on_epoch_end", epoch)
        val_loss, val_acc = validate(val_idx) if len(val_idx) else (None, None)
        seconds = clock() - t0
        epoch_areas.append(area(size))
        resized = {"size": size[0]} if cfg.resize_from else {}
        hist.add(epoch=epoch + 1, loss=loss_sum / seen, accuracy=None if correct is None else correct / seen,
                 val_loss=val_loss, val_accuracy=val_acc, lr=lr, seconds=seconds, **resized)
        epoch += 1
        if verbose:
            vl = (f" val_loss {val_loss:.4f}" + ("" if val_acc is None else f" val_acc {val_acc:.4f}")
                  if val_loss is not None else "")
            at = f" at {size[0]}x{size[1]}" if size != full else ""
            acc = "" if correct is None else f" acc {correct / seen:.4f}"
            print(f"epoch {epoch}: loss {loss_sum / seen:.4f}{acc}{vl} ({seconds:.1f}s{at})", flush=True)
        if budget_s:
            times = [r["seconds"] for r in hist.epochs]
            resizing = bool(cfg.resize_from)
            measured = fixed_share(epoch_areas, times) if resizing else None
            share = RESIZE_FIXED_COST if measured is None else measured
            before, planned = planned, plan_epochs(
                budget_s, times, cfg.epochs, costs=[cost_of(a) for a in epoch_areas] if resizing else None,
                cost=cost if resizing else None)
            if verbose and planned != before:
                priced = (f"; a smaller epoch costs {share:.2f} + {1 - share:.2f} x its area"
                          f"{', measured' if measured is not None else ''}") if resizing else ""
                print(f"time budget {cfg.time_budget:g} min: {planned} epochs planned "
                      f"({sum(times) / 60:.1f} min used in {epoch}{priced})", flush=True)
        if val_loss is not None:
            if stopper.update(val_loss, epoch) and cfg.restore_best:
                best = snapshot()
            if stopper.stop:
                hist.stopped_early = True
                break
    hist.stopped_on_time = bool(budget_s) and len(hist.epochs) < cfg.epochs and not hist.stopped_early
    call_hooks(callbacks, "on_train_end", model)
    if best is not None:
        restore(best)
        hist.best_epoch = stopper.best_epoch
    return hist


def _first_resized_step(step, xb, yb, lr, full):
    """The first step on downscaled images: a network that cannot take them (a flatten before its classifier)
    gets a one-line error that names the option, not the framework's shape error alone."""
    from edgepack.toolkit.errors import ModelError, first_line
    try:
        return step(xb, yb, lr)
    except Exception as e:      # noqa: BLE001 - torch and TF raise different shape errors
        raise ModelError(f"progressive resizing (resize_from) needs a network that accepts inputs smaller than "
                         f"{full[0]}x{full[1]} (global pooling, no flatten): {first_line(e)}") from None


@dataclass
class History:
    epochs: list[dict] = field(default_factory=list)   # one dict per epoch: loss, accuracy, val_loss, val_accuracy, lr, seconds
    best_epoch: int | None = None
    stopped_early: bool = False
    stopped_on_time: bool = False      # the time budget planned fewer epochs than `epochs`
    precision: str = "fp32"            # the arithmetic training ran in (cfg.precision "auto" resolved)

    def add(self, **row) -> None:
        self.epochs.append({k: (float(v) if v is not None else None) for k, v in row.items()})

    def to_dict(self) -> dict:
        return {"epochs": self.epochs, "best_epoch": self.best_epoch, "stopped_early": self.stopped_early,
                "stopped_on_time": self.stopped_on_time, "precision": self.precision}

    def save(self, json_path: Path, png_path: Path | None = None, title: str = "") -> None:
        Path(json_path).write_text(json.dumps(self.to_dict(), indent=2))
        if png_path is not None:
            plot_history(self, png_path, title)


def plot_history(h: History, png_path: Path, title: str = "") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    ep = [r["epoch"] for r in h.epochs]
    keys = ["loss"] + (["accuracy"] if any(r.get("accuracy") is not None for r in h.epochs) else [])
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4), squeeze=False)
    for key, ax in zip(keys, axes[0]):
        label = key
        ax.plot(ep, [r[key] for r in h.epochs], "o-", label=f"train {label}")
        if any(r.get("val_" + key) is not None for r in h.epochs):
            ax.plot(ep, [r.get("val_" + key) for r in h.epochs], "s-", label=f"validation {label}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    if h.best_epoch is not None:
        for ax in axes[0]:
            ax.axvline(h.best_epoch, color="grey", ls="--", lw=1)
    fig.suptitle(title or "training history")
    fig.tight_layout()
    save_figure(fig, png_path, 110)
    plt.close(fig)

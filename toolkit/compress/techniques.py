"""Compression techniques: small validated configs (plain dataclasses, serializable) with one `apply`
each. The math lives in framework-free modules or the mirrored backend modules
(behind the framework interface, toolkit/backends/base.py), so a pipeline reads the same in either framework."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields

from edgepack.toolkit.errors import OptionError
from edgepack.toolkit.train import SCHEDULES as LR_SCHEDULES

TECHNIQUES: dict[str, type] = {}


def register_technique(cls):
    TECHNIQUES[cls.name] = cls
    return cls


def get_technique(name: str, **options):
    cls = TECHNIQUES.get(name)
    if cls is None:
        raise OptionError(f"unknown compression step {name!r}; available: {', '.join(TECHNIQUES)}")
    known = {f.name for f in fields(cls)}
    unknown = set(options) - known
    if unknown:
        raise OptionError(f"step {name!r}: unknown option(s) {sorted(unknown)}; known: {sorted(known)}")
    for f in fields(cls):                         # a word where a number belongs: said as such, not as a TypeError
        v, default = options.get(f.name), f.default
        if f.name in options and isinstance(default, (int, float)) and not isinstance(default, bool) \
                and not (isinstance(v, (int, float)) and not isinstance(v, bool)) and v is not None:
            raise OptionError(f"step {name!r}: {f.name} expects a number, got {v!r}")
    try:
        return cls(**options)
    except TypeError as e:
        raise OptionError(f"step {name!r}: {e}") from None


def describe_parameters(cls) -> str:
    """'epochs=2, lr=0.0001, ...': a step's parameters with their defaults, for `compress --help`."""
    out = []
    for f in fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "required")
        out.append(f"{f.name}={default!r}" if isinstance(default, str) and default != "required" else f"{f.name}={default}")
    return ", ".join(out)


def _fine_tune(state, epochs, lr):
    if epochs:
        state.backend.fit(state.model, state.dataset, _train_config(state, epochs, lr), verbose=state.verbose)


def _train_config(state, epochs, lr, batch_size=None, **extra):
    extra.setdefault("time_budget", 0.0)    # a fine-tune's epochs are its own, not a training budget's plan
    extra.setdefault("resize_from", 0)      # nor does it start again from small images
    extra.setdefault("precision", "fp32")   # nor train in bf16: QAT's fake-quant ranges and pruning masks are float32
    if not extra.get("augment", state.train_config.augment):
        extra["cutout"] = 0                 # cutout is part of the augmentation a fine-tune turns off
    base = dataclasses.replace(state.train_config, epochs=epochs, lr=lr, **extra)
    return dataclasses.replace(base, batch_size=batch_size) if batch_size else base


class Technique:
    name = ""

    def to_dict(self) -> dict:
        return {"technique": self.name, **dataclasses.asdict(self)}

    def apply(self, state) -> None:
        raise NotImplementedError


@register_technique
@dataclass
class Train(Technique):
    """(Re)train or fine-tune the current model."""
    name = "train"
    epochs: int = 2
    lr: float = 1e-3
    schedule: str = "constant"
    augment: bool = False
    batch_size: int | None = None

    def __post_init__(self):
        if self.schedule not in LR_SCHEDULES:           # before any step runs, like every other option
            raise OptionError(f"train schedule must be one of {LR_SCHEDULES}, got {self.schedule!r}")

    def apply(self, state):
        cfg = _train_config(state, self.epochs, self.lr, self.batch_size, schedule=self.schedule, augment=self.augment)
        state.backend.fit(state.model, state.dataset, cfg, verbose=state.verbose)


KD_PRESETS = {"cifar-torch": (0.8, 2.0), "mnist-keras": (0.1, 10.0)}


@register_technique
@dataclass
class Distill(Technique):
    """Offline response-based KD from a frozen teacher (optionally plus a feature hint, PyTorch)."""
    name = "distill"
    teacher: str = ""
    alpha: float | None = None
    temperature: float | None = None
    preset: str | None = None                 # cifar-torch (0.8, 2) | mnist-keras (0.1, 10)
    epochs: int = 2
    lr: float = 1e-3
    schedule: str = "constant"
    augment: bool = False
    hint_student_layer: str | None = None     # torch module names, e.g. "conv2" / "conv4"
    hint_teacher_layer: str | None = None
    hint_weight: float = 1.0

    def __post_init__(self):
        if self.preset is not None:
            if self.preset not in KD_PRESETS:
                raise OptionError(f"unknown distillation preset {self.preset!r}; expected {', '.join(KD_PRESETS)}")
            a, t = KD_PRESETS[self.preset]
            self.alpha = a if self.alpha is None else self.alpha
            self.temperature = t if self.temperature is None else self.temperature
        self.alpha = 0.8 if self.alpha is None else self.alpha
        self.temperature = 2.0 if self.temperature is None else self.temperature
        if not 0 <= self.alpha <= 1 or self.temperature <= 0:
            raise OptionError("distillation needs 0 <= alpha <= 1 and temperature > 0")
        if not self.teacher:
            raise OptionError("distill needs a teacher checkpoint")

    def apply(self, state):
        from edgepack.toolkit.api import load_checkpoint
        teacher = load_checkpoint(self.teacher)
        if teacher.backend is not state.backend:
            raise OptionError(f"teacher is a {teacher.backend.NAME} model, student is {state.backend.NAME}")
        if teacher.spec is not None and teacher.spec.num_classes != state.dataset.num_classes:
            raise OptionError(f"teacher predicts {teacher.spec.num_classes} classes, the data set has {state.dataset.num_classes}")
        loss = state.backend.kd_loss(teacher.model, self.alpha, self.temperature)
        hint = None
        if self.hint_student_layer:
            hint = state.backend.hint_distillation(state.model, teacher.model, self.hint_student_layer,
                                                   self.hint_teacher_layer or "", self.hint_weight, state.dataset)
            loss = hint.wrap(loss)
        cfg = _train_config(state, self.epochs, self.lr, schedule=self.schedule, augment=self.augment)
        extra = hint.parameters if hint is not None else None
        try:
            state.backend.fit(state.model, state.dataset, cfg, loss_fn=loss, verbose=state.verbose, extra_parameters=extra)
        finally:
            if hint is not None:
                hint.detach()


@register_technique
@dataclass
class Prune(Technique):
    """Unstructured magnitude (or random) pruning, one-shot or gradual (polynomial), then fine-tuning."""
    name = "prune"
    sparsity: float = 0.8
    method: str = "l1"                        # l1 | random (torch)
    scope: str = "layer"                      # layer | global (torch)
    schedule: str = "polynomial"              # oneshot | polynomial
    epochs: int = 2
    lr: float = 1e-4                          # fine-tuning at a lower learning rate
    frequency: int = 100
    block_size: list | None = None            # Keras/TFMOT block sparsity, e.g. [4, 1]: zeros in runs gzip better
    initial_sparsity: float = 0.0             # polynomial schedule start (the TFMOT tutorial starts at 0.5)
    lr_schedule: str | None = None            # fine-tuning LR schedule; None keeps the checkpoint's own

    def __post_init__(self):
        if not 0 <= self.sparsity < 1:
            raise OptionError(f"sparsity must be in [0, 1), got {self.sparsity}")
        if not 0 <= self.initial_sparsity <= self.sparsity:
            raise OptionError(f"initial_sparsity must be in [0, sparsity={self.sparsity}], got {self.initial_sparsity}")
        if self.lr_schedule is not None and self.lr_schedule not in LR_SCHEDULES:
            raise OptionError(f"prune lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        for v, ok, what in ((self.method, ("l1", "random"), "method"), (self.scope, ("layer", "global"), "scope"),
                            (self.schedule, ("oneshot", "polynomial"), "schedule")):
            if v not in ok:
                raise OptionError(f"prune {what} must be one of {ok}, got {v!r}")

    def make_schedule(self, steps_per_epoch):
        from edgepack.toolkit.sparsity import ConstantSparsity, PolynomialDecay
        total = max(steps_per_epoch * self.epochs, 2)
        if self.schedule == "oneshot":
            return ConstantSparsity(self.sparsity, 0, frequency=max(total, 1))
        end = max(int(total * 0.7), 1)
        return PolynomialDecay(self.initial_sparsity, self.sparsity, 0, end, frequency=min(self.frequency, max(end // 4, 1)))

    def apply(self, state):
        # the final weights are the pruned ones: restoring an earlier "best" epoch would bring back a less sparse mask
        extra = {"schedule": self.lr_schedule} if self.lr_schedule else {}
        cfg = _train_config(state, self.epochs, self.lr, restore_best=False, **extra)
        train_idx, _ = state.dataset.split(cfg.val_fraction, cfg.seed)
        sched = self.make_schedule(-(-len(train_idx) // cfg.batch_size))
        state.model = state.backend.prune(state.model, state.dataset, cfg, sched, method=self.method, scope=self.scope,
                                          block_size=self.block_size, verbose=state.verbose)
        state.notes["sparsity"] = state.backend.sparsity_report(state.model)


@register_technique
@dataclass
class PruneStructured(Technique):
    """Channel pruning: filters ranked by a criterion are physically removed, dependent layers rewired."""
    name = "prune-structured"
    ratio: float = 0.5                        # fraction of channels removed in each prunable layer
    criterion: str = "l1"                     # l1 | l2 | bn | taylor (torch)
    epochs: int = 2
    lr: float = 1e-4
    calibration_batches: int = 8
    layers: list = field(default_factory=list)

    def __post_init__(self):
        if not 0 < self.ratio < 1:
            raise OptionError(f"ratio must be in (0, 1), got {self.ratio}")
        if self.criterion not in ("l1", "l2", "bn", "taylor"):
            raise OptionError(f"criterion must be l1, l2, bn or taylor, got {self.criterion!r}")

    def apply(self, state):
        if state.backend.supports("prune_structured"):        # the framework's own (PyTorch: Torch-Pruning)
            state.model, state.spec, notes = state.backend.prune_structured(
                state.model, state.spec, state.dataset, ratio=self.ratio, criterion=self.criterion, layers=self.layers,
                calibration_batches=self.calibration_batches)
            state.notes.update(notes)
        else:                                                   # otherwise on the description: any framework
            from edgepack.toolkit.compress.structured_spec import prune_spec
            if state.spec is None:
                raise OptionError(f"{state.backend.NAME} structured pruning works on models built from an architecture description")
            new_spec, weights, changes = prune_spec(state.spec, state.backend.get_weights(state.model), self.ratio,
                                                    self.criterion, self.layers or None)
            state.spec, state.model = new_spec, rebuild(state, new_spec, weights)
            state.notes["channels"] = changes
        _fine_tune(state, self.epochs, self.lr)


@register_technique
@dataclass
class QAT(Technique):
    """Quantization-aware training (fake int8 in training); int8 files come from the exporters."""
    name = "qat"
    epochs: int = 2
    lr: float = 1e-4
    float_epochs: int = 0                     # plain float epochs before fake quantization starts
    preserve_sparsity: bool | None = None     # keep pruned zeros at zero; default: yes when >= 30% of weights are zero

    def apply(self, state):
        _fine_tune(state, self.float_epochs, self.lr * 10)
        preserve = self.preserve_sparsity
        if preserve is None:
            counts = state.backend.count_params(state.model)
            preserve = counts["nonzero"] <= 0.7 * counts["total"]
        state.notes["preserve_sparsity"] = bool(preserve)
        state.model = state.backend.qat_apply(state.model, preserve)
        _fine_tune(state, self.epochs, self.lr)
        state.model = state.backend.qat_strip(state.model)
        state.notes["qat"] = True


@register_technique
@dataclass
class LowRank(Technique):
    """SVD factorisation of Dense layers (rank by an energy threshold), then fine-tuning."""
    name = "lowrank"
    energy: float = 0.9
    min_params: int = 10_000                  # only factorise layers at least this large
    epochs: int = 1
    lr: float = 1e-4

    def __post_init__(self):
        if not 0 < self.energy <= 1:
            raise OptionError(f"energy must be in (0, 1], got {self.energy}")

    def apply(self, state):
        from edgepack.toolkit.compress.lowrank import svd_dense
        if state.spec is None:
            raise OptionError("low-rank factorisation works on models built from an architecture description")
        new_spec, weights, ranks = svd_dense(state.spec, state.backend.get_weights(state.model), self.energy, self.min_params)
        state.spec = new_spec
        state.model = rebuild(state, new_spec, weights)
        state.notes["ranks"] = ranks
        _fine_tune(state, self.epochs, self.lr)


@register_technique
@dataclass
class Separable(Technique):
    """Replace standard convs (all but the first) by depthwise-separable or grouped convs, then fine-tune; with
    `match_params`, widen them to the original parameter count and train that architecture from scratch."""
    name = "separable"
    kind: str = "depthwise"                   # depthwise | grouped
    groups: int = 4
    epochs: int = 2
    lr: float = 1e-3
    match_params: bool = False                # widen the new convs to the original parameter count, train from scratch

    def apply(self, state):
        from edgepack.toolkit.compress.lowrank import cheaper_convs, width_matched
        if state.spec is None:
            raise OptionError("conv replacement works on models built from an architecture description")
        if self.match_params:
            new_spec, width = width_matched(state.spec, self.kind, self.groups)
            state.notes["width"] = width
            weights = {}                          # a different architecture: fresh weights, trained for `epochs`
        else:
            new_spec, weights = cheaper_convs(state.spec, state.backend.get_weights(state.model), self.kind, self.groups)
        if new_spec.counts() == state.spec.counts():
            raise OptionError(f"{state.spec.name} has no standard conv after the first one to replace")
        state.spec = new_spec
        state.model = rebuild(state, new_spec, weights, strict=False)
        _fine_tune(state, self.epochs, self.lr)


def rebuild(state, spec, weights, strict=True):
    """A fresh model for `spec` in the state's framework, carrying the given (torch-layout) weights."""
    model = state.backend.build(spec, seed=0)
    model.edgepack_spec = spec
    current = state.backend.get_weights(model, spec)
    if strict and set(current) != set(weights):
        raise OptionError(f"weights do not match the new architecture: {sorted(set(current) ^ set(weights))[:4]}")
    current.update({k: v for k, v in weights.items() if k in current and current[k].shape == v.shape})
    state.backend.set_weights(model, current, spec)
    return model

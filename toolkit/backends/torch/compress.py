"""PyTorch implementations behind the framework-free techniques in toolkit.compress (mirrors keras/compress.py)."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
import torch.nn.utils.prune as prune
from torch import nn
from torch.nn.utils import parametrize

from edgepack.toolkit.arch import spec as S
from edgepack.toolkit.errors import OptionError

PRUNABLE = (nn.Conv2d, nn.Linear)


# ------------------------------------------------------------------ distillation
def kd_loss(teacher, alpha: float, temperature: float):
    """alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y); teacher frozen in eval mode."""
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    T = float(temperature)

    def loss(logits, y, x):
        with torch.no_grad():
            t = teacher(x)
        kl = F.kl_div(F.log_softmax(logits / T, 1), F.log_softmax(t / T, 1), log_target=True, reduction="batchmean")
        return alpha * T * T * kl + (1 - alpha) * F.cross_entropy(logits, y)
    return loss


class HintDistillation:
    """Feature-based (FitNets hint) distillation: MSE between an adapter(student feature) and a teacher feature,
    added to the response-based loss. The 1x1-conv adapter is trained with the student and then dropped."""

    def __init__(self, student, teacher, student_layer: str, teacher_layer: str, weight: float = 1.0):
        self.feats = {}
        mods_s, mods_t = dict(student.named_modules()), dict(teacher.named_modules())
        for name, mods in ((student_layer, mods_s), (teacher_layer, mods_t)):
            if name not in mods:
                raise OptionError(f"layer {name!r} not found; known: {', '.join(n for n in mods if n)[:300]}")
        self.h = [mods_s[student_layer].register_forward_hook(lambda m, i, o: self.feats.__setitem__("s", o)),
                  mods_t[teacher_layer].register_forward_hook(lambda m, i, o: self.feats.__setitem__("t", o))]
        self.weight = weight

    def build_adapter(self, s_shape, t_shape):
        if s_shape[2:] != t_shape[2:]:
            raise OptionError(f"hint layers differ in spatial size: student {tuple(s_shape[1:])} vs teacher {tuple(t_shape[1:])}")
        self.adapter = nn.Conv2d(s_shape[1], t_shape[1], 1)   # trained alongside, never part of the student

    def wrap(self, base_loss):
        def loss(logits, y, x):
            base = base_loss(logits, y, x)                 # runs the teacher: its hooked feature is now this batch's
            return base + self.weight * F.mse_loss(self.adapter(self.feats["s"]), self.feats["t"])
        return loss

    def detach(self):
        for h in self.h:
            h.remove()


# ------------------------------------------------------------------ unstructured pruning
def prunable_layers(model) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, PRUNABLE)]


def _apply_sparsity(layers, sparsity: float, method: str, scope: str):
    for _, m in layers:                                  # make earlier masks permanent; zeros stay smallest
        if prune.is_pruned(m):
            prune.remove(m, "weight")
        if not m.weight.is_contiguous():                 # channels_last training: torch's pruning uses .view(-1)
            m.weight.data = m.weight.data.contiguous()   # same Parameter object, so the optimizer keeps tracking it
    if sparsity <= 0:
        return
    if scope == "global":
        pm = prune.L1Unstructured if method == "l1" else prune.RandomUnstructured
        prune.global_unstructured([(m, "weight") for _, m in layers], pruning_method=pm, amount=sparsity)
    else:
        for _, m in layers:
            (prune.l1_unstructured if method == "l1" else prune.random_unstructured)(m, "weight", amount=sparsity)


class PruningCallback:
    """Applies a sparsity schedule during training (masks updated when the schedule says so)."""

    def __init__(self, model, schedule, method: str, scope: str, layers=None):
        self.layers = layers or prunable_layers(model)
        self.schedule, self.method, self.scope = schedule, method, scope

    def on_step_begin(self, step):
        due, s = self.schedule(step)
        if due:
            _apply_sparsity(self.layers, s, self.method, self.scope)


def prune_oneshot(model, sparsity, method="l1", scope="layer", layers=None):
    _apply_sparsity(layers or prunable_layers(model), sparsity, method, scope)


def strip_pruning(model):
    """Make masks permanent: plain weights with zeros, no weight_orig/weight_mask left."""
    for _, m in prunable_layers(model):
        if prune.is_pruned(m):
            prune.remove(m, "weight")
    return model


def sparsity_report(model) -> dict:
    per = {}
    total = zeros = 0
    for n, m in prunable_layers(model):
        w = m.weight.detach()
        z = int((w == 0).sum())
        per[n] = z / w.numel()
        total += w.numel()
        zeros += z
    return {"layers": per, "total": zeros / max(total, 1)}


# ------------------------------------------------------------------ structured pruning (Torch-Pruning)
def _importance(criterion: str):
    import torch_pruning as tp
    if criterion == "l1":
        return tp.importance.MagnitudeImportance(p=1)
    if criterion == "l2":
        return tp.importance.MagnitudeImportance(p=2)
    if criterion == "bn":
        return tp.importance.BNScaleImportance()
    if criterion == "taylor":
        return tp.importance.TaylorImportance()
    raise OptionError(f"unknown structured-pruning criterion {criterion!r}; expected l1, l2, bn, taylor")


def prune_structured(model, example: torch.Tensor, ratio: float, criterion: str = "l1", calibration=None,
                     ignored: list | None = None):
    """Remove channels physically (dependent layers rewired by Torch-Pruning's dependency graph).
    `calibration`: iterable of (x, y) batches for Taylor importance (|w * grad| accumulated)."""
    import torch_pruning as tp
    if not 0 < ratio < 1:
        raise OptionError(f"pruning ratio must be in (0, 1), got {ratio}")
    model = model.to(memory_format=torch.contiguous_format).eval()
    if ignored is None:                                  # never prune the classifier's outputs
        last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1:]
        ignored = last
    imp = _importance(criterion)
    if criterion == "bn" and not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        raise OptionError("the bn criterion needs BatchNorm layers; this model has none")
    pruner = tp.pruner.MetaPruner(model, example, importance=imp, pruning_ratio=ratio, ignored_layers=ignored,
                                  global_pruning=False)
    if criterion == "taylor":
        if calibration is None:
            raise OptionError("Taylor importance needs calibration batches")
        model.zero_grad()
        model.train()
        for x, y in calibration:
            F.cross_entropy(model(x), y).backward()      # gradients accumulate over the batches
        model.eval()
    pruner.step()
    model.zero_grad(set_to_none=True)
    return model


def spec_from_pruned(model, spec: S.ArchSpec) -> S.ArchSpec:
    """Re-derive the architecture description from a structurally pruned spec-built model."""
    mods = dict(model.named_modules())

    def rebuild(layers, prefix):
        out = []
        for i, L in enumerate(layers):
            name = f"{prefix}{type(L).__name__.lower()}{i}"
            if isinstance(L, S.Conv):
                L = dataclasses.replace(L, filters=mods[name].out_channels)
            elif isinstance(L, S.SeparableConv):
                L = dataclasses.replace(L, filters=mods[name + ".pw"].out_channels)
            elif isinstance(L, S.Dense):
                L = dataclasses.replace(L, units=mods[name].out_features)
            elif isinstance(L, S.Residual):
                L = dataclasses.replace(L, body=tuple(rebuild(L.body, name + ".body.")),
                                        shortcut=tuple(rebuild(L.shortcut, name + ".shortcut.")))
            out.append(L)
        return out
    new = dataclasses.replace(spec, layers=tuple(rebuild(spec.layers, "")))
    new.walk()
    return new


# ------------------------------------------------------------------ quantization-aware training
class _FakeQuantWeight(nn.Module):
    """Per-output-channel symmetric int8 fake quantization of a weight (straight-through gradients).
    With a mask, pruned entries stay zero: they are multiplied out, so they also get no gradient."""

    def __init__(self, mask: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("mask", mask if mask is not None else torch.empty(0), persistent=False)

    def forward(self, w):
        if self.mask.numel():
            w = w * self.mask
        flat = w.detach().reshape(w.shape[0], -1)
        scale = (flat.abs().amax(1).clamp(min=1e-8) / 127.0).float()
        zp = torch.zeros(w.shape[0], dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(w, scale, zp, 0, -127, 127)


class _ActObserver:
    """Forward hook: EMA min/max of an activation, then per-tensor affine int8 fake quantization of it."""

    def __init__(self, momentum=0.01):
        self.lo = self.hi = None
        self.m = momentum

    def __call__(self, module, inputs, out):
        if module.training:
            lo, hi = float(out.detach().min()), float(out.detach().max())
            self.lo = lo if self.lo is None else (1 - self.m) * self.lo + self.m * lo
            self.hi = hi if self.hi is None else (1 - self.m) * self.hi + self.m * hi
        if self.lo is None:
            return out
        lo, hi = min(self.lo, 0.0), max(self.hi, 0.0)
        scale = max((hi - lo) / 255.0, 1e-8)
        zp = int(round(-128 - lo / scale))
        return torch.fake_quantize_per_tensor_affine(out, scale, max(-128, min(127, zp)), -128, 127)


def qat_apply(model, preserve_sparsity: bool = False):
    """Insert fake quantization: int8 per-channel weights (parametrization) and int8 activations (hooks)
    after every conv/linear/activation output. Uses core torch ops, not the deprecated torch.ao flow.
    `preserve_sparsity` keeps today's zero weights at zero through QAT (pruning-preserving QAT)."""
    model.edgepack_qat_hooks = []
    for _, m in prunable_layers(model):
        mask = (m.weight.detach() != 0).to(m.weight.dtype) if preserve_sparsity else None
        parametrize.register_parametrization(m, "weight", _FakeQuantWeight(mask))
        model.edgepack_qat_hooks.append(m.register_forward_hook(_ActObserver()))
    return model


def qat_strip(model):
    """Remove fake quantization, keeping the QAT-trained float weights (they then go through the int8 exporters)."""
    for _, m in prunable_layers(model):
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)
    for h in getattr(model, "edgepack_qat_hooks", []):
        h.remove()
    if hasattr(model, "edgepack_qat_hooks"):
        del model.edgepack_qat_hooks
    return model


# ------------------------------------------------------------------ weights in the framework-free (torch) layout
def get_weights(model) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def set_weights(model, weights: dict[str, np.ndarray]) -> None:
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()})

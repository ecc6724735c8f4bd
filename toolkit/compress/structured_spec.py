"""Structured channel pruning on an architecture description (framework-free, NumPy): rank the filters of
each prunable conv, keep the best, and rewire every dependent tensor (BatchNorm, the next conv or separable
conv, Flatten->Dense rows, GlobalAvgPool->Dense). Convs whose outputs feed a residual add are left alone,
since the add ties their channels to another branch."""
from __future__ import annotations

import dataclasses

import numpy as np

from edgepack.toolkit.arch import spec as S
from edgepack.toolkit.errors import OptionError

PASS_THROUGH = (S.BatchNorm, S.Activation, S.MaxPool, S.AvgPool, S.Dropout)


def _plan(layers, prefix, in_shape_of) -> list[dict]:
    """Prunable convs in one sequence: {conv, bns, consumer, via} by node name."""
    names = [f"{prefix}{type(L).__name__.lower()}{i}" for i, L in enumerate(layers)]
    plans = []
    for i, L in enumerate(layers):
        if isinstance(L, S.Residual):
            plans += _plan(L.body, names[i] + ".body.", in_shape_of)
            continue
        if not isinstance(L, S.Conv) or L.groups != 1:
            continue
        bns, j, via = [], i + 1, None
        while j < len(layers) and isinstance(layers[j], PASS_THROUGH):
            if isinstance(layers[j], S.BatchNorm):
                bns.append(names[j])
            j += 1
        if j >= len(layers):
            continue                                      # end of a residual body: tied by the add
        nxt = layers[j]
        if isinstance(nxt, (S.Flatten, S.GlobalAvgPool)):
            via, k = ("flatten" if isinstance(nxt, S.Flatten) else "gap"), j + 1
            while k < len(layers) and isinstance(layers[k], S.Dropout):
                k += 1
            if k < len(layers) and isinstance(layers[k], S.Dense):
                plans.append({"conv": names[i], "bns": bns, "consumer": names[k], "kind": "dense", "via": via,
                              "flat_shape": in_shape_of[names[j]]})
        elif isinstance(nxt, S.Conv) and nxt.groups == 1:
            plans.append({"conv": names[i], "bns": bns, "consumer": names[j], "kind": "conv"})
        elif isinstance(nxt, S.SeparableConv):
            plans.append({"conv": names[i], "bns": bns, "consumer": names[j], "kind": "separable"})
    return plans


def importance(w: dict, plan: dict, criterion: str) -> np.ndarray:
    conv = w[plan["conv"] + ".weight"].reshape(w[plan["conv"] + ".weight"].shape[0], -1)
    if criterion == "l1":
        return np.abs(conv).sum(1)
    if criterion == "l2":
        return np.sqrt((conv ** 2).sum(1))
    if criterion == "bn":
        if not plan["bns"]:
            raise OptionError(f"{plan['conv']}: the bn criterion needs a BatchNorm after the conv")
        return np.abs(w[plan["bns"][0] + ".weight"])
    raise OptionError(f"criterion {criterion!r} is not available here; expected l1, l2 or bn")


def prune_spec(spec: S.ArchSpec, weights: dict, ratio: float, criterion: str = "l1", layers: list[str] | None = None):
    """Return (new spec, new torch-layout weights, {conv: (before, after)})."""
    if not 0 < ratio < 1:
        raise OptionError(f"pruning ratio must be in (0, 1), got {ratio}")
    nodes = spec.walk()
    in_shape_of = {n.name: n.in_shape for n in nodes}
    plans = _plan(spec.layers, "", in_shape_of)
    if layers:
        unknown = set(layers) - {p["conv"] for p in plans}
        if unknown:
            raise OptionError(f"layer(s) {sorted(unknown)} cannot be channel-pruned; prunable: {[p['conv'] for p in plans]}")
        plans = [p for p in plans if p["conv"] in layers]
    w = {k: v.copy() for k, v in weights.items()}
    new_filters, changes = {}, {}
    for p in plans:
        score = importance(w, p, criterion)
        n = len(score)
        k = max(1, int(round(n * (1 - ratio))))
        keep = np.sort(np.argsort(-score, kind="stable")[:k])
        for key in (".weight", ".bias"):
            if p["conv"] + key in w:
                w[p["conv"] + key] = w[p["conv"] + key][keep]
        for bn in p["bns"]:
            for key in (".weight", ".bias", ".running_mean", ".running_var"):
                w[bn + key] = w[bn + key][keep]
        c = p["consumer"]
        if p["kind"] == "conv":
            w[c + ".weight"] = w[c + ".weight"][:, keep]
        elif p["kind"] == "separable":
            w[c + ".dw.weight"] = w[c + ".dw.weight"][keep]
            w[c + ".pw.weight"] = w[c + ".pw.weight"][:, keep]
        elif p["via"] == "flatten":
            h, wd, ch = p["flat_shape"]
            dw = w[c + ".weight"]
            w[c + ".weight"] = dw.reshape(dw.shape[0], ch, h, wd)[:, keep].reshape(dw.shape[0], -1)
        else:
            w[c + ".weight"] = w[c + ".weight"][:, keep]
        new_filters[p["conv"]] = k
        changes[p["conv"]] = (n, k)

    def rebuild(seq, prefix):
        out = []
        for i, L in enumerate(seq):
            name = f"{prefix}{type(L).__name__.lower()}{i}"
            if name in new_filters:
                L = dataclasses.replace(L, filters=new_filters[name])
            elif isinstance(L, S.Residual):
                L = dataclasses.replace(L, body=tuple(rebuild(L.body, name + ".body.")))
            out.append(L)
        return out
    new_spec = dataclasses.replace(spec, layers=tuple(rebuild(spec.layers, "")))
    new_spec.walk()
    return new_spec, w, changes

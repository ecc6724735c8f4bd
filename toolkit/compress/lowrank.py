"""Low-rank and cheaper layers as architecture surgery on torch-layout weight dicts (framework-free NumPy).

Inserting layers renames the nodes after them (names are positional), so weights are carried over by
walking the old and the new top-level sequences side by side."""
from __future__ import annotations

import dataclasses

import numpy as np

from edgepack.toolkit.arch import spec as S


def _rename(weights: dict, old: str, new: str) -> dict:
    return {new + k[len(old):]: v for k, v in weights.items() if k == old or k.startswith(old + ".")}


def _keep(layer, old: str, layers: list, weights: dict, new_w: dict) -> None:
    """Carry an unchanged layer over, renaming its weights to its new position."""
    new_w.update(_rename(weights, old, f"{type(layer).__name__.lower()}{len(layers)}"))
    layers.append(layer)


def _finish(spec: S.ArchSpec, layers: list) -> S.ArchSpec:
    new_spec = dataclasses.replace(spec, layers=tuple(layers))
    new_spec.walk()
    return new_spec


def svd_dense(spec: S.ArchSpec, weights: dict, energy: float = 0.9, min_params: int = 10_000):
    """Dense(out) with weight W (out, in) -> Dense(r, no bias) + Dense(out), W ~ (U_r S_r) V_r^T, where r keeps
    `energy` of the squared singular values; only where it saves parameters. Returns (spec, weights, ranks)."""
    nodes = {n.name: n for n in spec.walk()}
    layers, new_w, ranks = [], {}, {}
    for i, L in enumerate(spec.layers):
        old = f"{type(L).__name__.lower()}{i}"
        if isinstance(L, S.Dense) and nodes[old].in_shape[0] * L.units >= min_params:
            W = weights[old + ".weight"]
            U, s, Vt = np.linalg.svd(W.astype(np.float64), full_matrices=False)
            cum = np.cumsum(s ** 2) / np.sum(s ** 2)
            r = int(np.searchsorted(cum, energy) + 1)
            n_in = W.shape[1]
            if r * (n_in + L.units) < n_in * L.units:
                a = f"dense{len(layers)}"
                layers.append(S.Dense(r, bias=False))
                b = f"dense{len(layers)}"
                layers.append(L)
                new_w[a + ".weight"] = Vt[:r].astype(np.float32)
                new_w[b + ".weight"] = (U[:, :r] * s[:r]).astype(np.float32)
                if L.bias:
                    new_w[b + ".bias"] = weights[old + ".bias"]
                ranks[old] = {"rank": r, "full_rank": int(min(W.shape)), "params_before": int(W.size),
                              "params_after": int(r * (n_in + L.units))}
                continue
        _keep(L, old, layers, weights, new_w)
    return _finish(spec, layers), new_w, ranks


def cheaper_convs(spec: S.ArchSpec, weights: dict, kind: str = "depthwise", groups: int = 4):
    """Replace every top-level standard conv except the first by a depthwise-separable conv (fresh weights) or a
    grouped conv initialised from the block-diagonal of the original kernel."""
    if kind not in ("depthwise", "grouped"):
        from edgepack.toolkit.errors import OptionError
        raise OptionError(f"kind must be depthwise or grouped, got {kind!r}")
    nodes = {n.name: n for n in spec.walk()}
    layers, new_w, seen_first = [], {}, False
    for i, L in enumerate(spec.layers):
        old = f"{type(L).__name__.lower()}{i}"
        if isinstance(L, S.Conv) and L.groups == 1:
            if not seen_first:
                seen_first = True
            else:
                cin = nodes[old].in_shape[2]
                if kind == "depthwise":
                    layers.append(S.SeparableConv(L.filters, L.kernel, L.stride, L.padding, L.bias, L.activation))
                    continue
                if cin % groups == 0 and L.filters % groups == 0:
                    G = dataclasses.replace(L, groups=groups)
                    name = f"conv{len(layers)}"
                    W = weights[old + ".weight"]                  # (O, I, k, k)
                    o, ig = L.filters // groups, cin // groups
                    new_w[name + ".weight"] = np.concatenate([W[g * o:(g + 1) * o, g * ig:(g + 1) * ig] for g in range(groups)])
                    if L.bias:
                        new_w[name + ".bias"] = weights[old + ".bias"]
                    layers.append(G)
                    continue
        _keep(L, old, layers, weights, new_w)
    return _finish(spec, layers), new_w


def _scaled(spec: S.ArchSpec, kind: str, groups: int, width: float) -> S.ArchSpec:
    """`spec` with every standard conv but the first replaced (like `cheaper_convs`) and its filters scaled by
    `width` (multiples of `groups` for grouped convs). Architecture only: the caller trains it from scratch."""
    layers, seen_first = [], False
    for L in spec.layers:
        if isinstance(L, S.Conv) and L.groups == 1:
            if not seen_first:
                seen_first = True
            else:
                q = groups if kind == "grouped" else 1
                f = max(q, int(round(L.filters * width / q)) * q)
                layers.append(S.SeparableConv(f, L.kernel, L.stride, L.padding, L.bias, L.activation) if kind == "depthwise"
                              else dataclasses.replace(L, filters=f, groups=groups))
                continue
        layers.append(L)
    return _finish(spec, layers)


def width_matched(spec: S.ArchSpec, kind: str = "depthwise", groups: int = 4, target: int | None = None):
    """The cheaper-conv variant of `spec` widened until its trainable parameter count is closest to `target`
    (default: the original's), for comparisons "at about the same parameter count". Returns (spec, width)."""
    if kind not in ("depthwise", "grouped"):
        from edgepack.toolkit.errors import OptionError
        raise OptionError(f"kind must be depthwise or grouped, got {kind!r}")
    target = target or spec.counts()["trainable"]
    best = None
    for step in range(100, 1601, 5):                     # width 1.00 .. 16.00
        width = step / 100
        cand = _scaled(spec, kind, groups, width)
        n = cand.counts()["trainable"]
        if best is None or abs(n - target) < abs(best[2] - target):
            best = (cand, width, n)
        if n > target:
            break
    return best[0], best[1]

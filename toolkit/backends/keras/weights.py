"""Keras weights in the shared layout (PyTorch's, keyed by `ArchSpec` node names), so a model moves between
frameworks and through the spec-level compression steps and computes the same function.

Layouts: torch conv (O, I/g, kh, kw) <-> Keras (kh, kw, I/g, O); depthwise (C*m, 1, kh, kw) <-> (kh, kw, C, m);
dense (out, in) <-> (in, out), with the rows of a Dense that follows Flatten permuted from torch's (C, H, W)
flattening order to Keras's (H, W, C).
"""
from __future__ import annotations

import numpy as np

from edgepack.toolkit.arch import spec as S
from edgepack.toolkit.backends.keras.model import kname
from edgepack.toolkit.errors import ModelError


def _flatten_sources(nodes: list[S.Node]) -> dict[str, tuple]:
    """Dense node name -> the (H, W, C) shape flattened right before it (if any)."""
    out, pending = {}, None
    for n in nodes:
        if isinstance(n.layer, S.Flatten):
            pending = n.in_shape
        elif isinstance(n.layer, S.Dense):
            if pending is not None:
                out[n.name] = pending
            pending = None
        elif isinstance(n.layer, S.BatchNorm) and pending is not None:
            raise ModelError(f"{n.name}: weight transfer does not support BatchNorm between Flatten and Dense")
    return out


def set_keras_weights(kmodel, spec: S.ArchSpec, t: dict[str, np.ndarray]) -> None:
    """Load a torch-layout weight dict ({'conv0.weight': (O, I, kh, kw), ...}) into the Keras twin."""
    nodes = spec.walk()
    flat = _flatten_sources(nodes)
    for n in S.iter_weighted(nodes):
        layer, L = kmodel.get_layer(kname(n.name)), n.layer
        g = lambda k: t[f"{n.name}.{k}"]  # noqa: E731
        if isinstance(L, S.Conv):
            ws = [g("weight").transpose(2, 3, 1, 0)] + ([g("bias")] if L.bias else [])
        elif isinstance(L, S.DepthwiseConv):
            c, m = n.in_shape[2], L.multiplier
            ws = [g("weight").reshape(c, m, *S.pair(L.kernel)).transpose(2, 3, 0, 1)] + ([g("bias")] if L.bias else [])
        elif isinstance(L, S.SeparableConv):
            ws = [g("dw.weight").transpose(2, 3, 0, 1), g("pw.weight").transpose(2, 3, 1, 0)] + ([g("pw.bias")] if L.bias else [])
        elif isinstance(L, S.BatchNorm):
            ws = [g("weight"), g("bias"), g("running_mean"), g("running_var")]
        else:  # Dense
            w = g("weight")
            if n.name in flat:
                h, wd, c = flat[n.name]
                w = w.reshape(L.units, c, h, wd).transpose(0, 2, 3, 1).reshape(L.units, -1)
            ws = [w.T] + ([g("bias")] if L.bias else [])
        layer.set_weights([np.ascontiguousarray(a) for a in ws])


def get_keras_weights(kmodel, spec: S.ArchSpec) -> dict[str, np.ndarray]:
    """The Keras twin's weights as a torch-layout dict (the framework-free form used by spec surgery)."""
    nodes = spec.walk()
    flat = _flatten_sources(nodes)
    out = {}
    for n in S.iter_weighted(nodes):
        ws, L = kmodel.get_layer(kname(n.name)).get_weights(), n.layer
        if isinstance(L, S.Conv):
            d = {"weight": ws[0].transpose(3, 2, 0, 1)}
            if L.bias:
                d["bias"] = ws[1]
        elif isinstance(L, S.DepthwiseConv):
            kh, kw, c, m = ws[0].shape
            d = {"weight": ws[0].transpose(2, 3, 0, 1).reshape(c * m, 1, kh, kw)}
            if L.bias:
                d["bias"] = ws[1]
        elif isinstance(L, S.SeparableConv):
            d = {"dw.weight": ws[0].transpose(2, 3, 0, 1), "pw.weight": ws[1].transpose(3, 2, 0, 1)}
            if L.bias:
                d["pw.bias"] = ws[2]
        elif isinstance(L, S.BatchNorm):
            d = dict(zip(("weight", "bias", "running_mean", "running_var"), ws))
        else:
            w = ws[0].T
            if n.name in flat:
                h, wd, c = flat[n.name]
                w = w.reshape(L.units, h, wd, c).transpose(0, 3, 1, 2).reshape(L.units, -1)
            d = {"weight": w}
            if L.bias:
                d["bias"] = ws[1]
        out.update({f"{n.name}.{k}": np.ascontiguousarray(v) for k, v in d.items()})
    return out

"""A NumPy reference of int8 QDQ ONNX graphs, for one *kernel class* of int8 CPU arithmetic.

An int8 .onnx gives different results on different CPUs because ONNX Runtime (and other consumers)
pick their int8 kernels by instruction set. What differs is how the u8 x s8 products of a
Conv/Gemm/MatMul are added up:

- ``exact``: every product is accumulated in int32. x86 with AVX-512 VNNI, AVX-VNNI or AMX
  (``vpdpbusd``), ARM64 NEON (widening multiplies) and its dot-product instructions.
- ``u8s8-sat16``: x86 with AVX2 (or AVX-512 without VNNI). ``vpmaddubsw`` multiplies u8 by s8
  and adds *adjacent pairs* of products in int16 **with saturation**, then ``vpmaddwd`` widens to
  int32. A pair sum beyond +-32,767 is clipped; ONNX Runtime's and OpenVINO's documentation both
  describe the accuracy loss and the workaround: 7-bit weights (|w| <= 64 keeps every pair sum
  within 2 * 255 * 64 = 32,640).

Every node of the graph runs in float as the ONNX spec defines it, except the Conv / Gemm / MatMul
whose activation input and weight come from DequantizeLinear nodes: ORT fuses those into integer
kernels, and here they run in integers under the chosen kernel class. The pairing of products
follows the reduction order of ORT's NHWC int8 kernels: kernel row, kernel column, input channel
(adjacent input channels at one kernel position; adjacent kernel positions for one-channel inputs).
Depthwise convolutions widen to int16 before multiplying on every x86 path, so they are exact.
The exact pairing inside a vendor kernel is not public API: the reference is cross-checked
against ONNX Runtime on an AVX2 machine by the test suite (see tests/test_portability.py).
"""
from __future__ import annotations

import numpy as np

from edgepack.runtimes.onnx_reader import DTYPES, Graph, read_onnx
from edgepack.runtimes.base import Runner, RunnerInfo, TensorSpec
from edgepack.toolkit.errors import ModelError, OptionError

KERNEL_CLASSES = {
    "exact": "int32 accumulation (x86 AVX-512 VNNI / AVX-VNNI / AMX, ARM64 NEON and dot-product)",
    "u8s8-sat16": "u8 x s8 pairs added in int16 with saturation (x86 AVX2, AVX-512 without VNNI: vpmaddubsw)",
}
INT16_MAX = 32767


def _broadcast_axis(v: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    if v.ndim == 0 or v.size == 1:
        return v.reshape(())
    shape = [1] * ndim
    shape[axis % ndim] = v.size
    return v.reshape(shape)


def _quantize(x, scale, zp, axis=1):
    dtype = zp.dtype if zp is not None else np.dtype(np.uint8)
    info = np.iinfo(dtype)
    s = _broadcast_axis(np.asarray(scale, np.float32), axis, x.ndim)
    z = 0 if zp is None else _broadcast_axis(zp.astype(np.int32), axis, x.ndim)
    return np.clip(np.rint(x / s) + z, info.min, info.max).astype(dtype)


def _dequantize(q, scale, zp, axis=1):
    s = _broadcast_axis(np.asarray(scale, np.float32), axis, q.ndim)
    z = 0 if zp is None else _broadcast_axis(zp.astype(np.int64), axis, q.ndim)
    return ((q.astype(np.int64) - z) * s).astype(np.float32)


def _pads(attrs, spatial_in, kernel, strides, dilations):
    pads = list(attrs.get("pads") or [0] * (2 * len(kernel)))
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        for i, (n, k, s, d) in enumerate(zip(spatial_in, kernel, strides, dilations)):
            out = -(-n // s)
            total = max(0, (out - 1) * s + (k - 1) * d + 1 - n)
            lo = total // 2 if auto == "SAME_UPPER" else total - total // 2
            pads[i], pads[i + len(kernel)] = lo, total - lo
    elif auto == "VALID":
        pads = [0] * (2 * len(kernel))
    return pads


def _windows(x, kernel, strides, dilations, pads, fill):
    """(N, C, H, W) -> (N, OH, OW, KH, KW, C) patches, padded with `fill`."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilations
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])), constant_values=fill)
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    v = np.lib.stride_tricks.sliding_window_view(xp, (eh, ew), axis=(2, 3))[:, :, ::sh, ::sw, ::dh, ::dw]
    return v.transpose(0, 2, 3, 4, 5, 1)


def _int_matmul(a_u8, za: int, w_s8, kernel_class: str) -> np.ndarray:
    """sum_k (a - za) * w for a (P, K) uint8-valued and w (M, K) int8-valued, under `kernel_class`."""
    a = a_u8.astype(np.float64)
    w = w_s8.astype(np.float64)
    acc = a @ w.T                                         # exact: |sum| < 2**53
    if kernel_class == "u8s8-sat16":
        k = w.shape[1]
        if k % 2:
            a = np.pad(a, ((0, 0), (0, 1)))
            w = np.pad(w, ((0, 0), (0, 1)))
        w_even, w_odd = w[:, 0::2], w[:, 1::2]
        # a pair can only leave int16 when |w0| + |w1| > 128 (u8 <= 255): look at those pairs only
        m_idx, j_idx = np.nonzero(np.abs(w_even) + np.abs(w_odd) > 128)
        for s in range(0, len(m_idx), 4096):
            mi, ji = m_idx[s:s + 4096], j_idx[s:s + 4096]
            pair = a[:, 2 * ji] * w_even[mi, ji] + a[:, 2 * ji + 1] * w_odd[mi, ji]
            corr = np.clip(pair, -INT16_MAX - 1, INT16_MAX) - pair
            np.add.at(acc.T, mi, corr.T)
    return acc - za * w.sum(1)[None, :]


def risky_pairs(w_s8: np.ndarray) -> int:
    """Pairs of adjacent weights (reduction order) that can saturate int16 with some u8 input."""
    w = w_s8.reshape(len(w_s8), -1).astype(np.int32)
    if w.shape[1] % 2:
        w = np.pad(w, ((0, 0), (0, 1)))
    return int((np.abs(w[:, 0::2]) + np.abs(w[:, 1::2]) > 128).sum())


def _conv_weight_matrix(w: np.ndarray, group: int) -> list[np.ndarray]:
    """(M, Cg, KH, KW) -> per group (Mg, KH*KW*Cg) in kernel-row, kernel-column, channel order."""
    m = w.shape[0]
    return [g.transpose(0, 2, 3, 1).reshape(m // group, -1) for g in np.split(w, group, axis=0)]


class QdqGraph:
    """Runs one parsed QDQ graph on float inputs."""

    def __init__(self, graph: Graph, kernel_class: str):
        if kernel_class not in KERNEL_CLASSES:
            raise OptionError(f"unknown kernel class {kernel_class!r}; expected one of {', '.join(KERNEL_CLASSES)}")
        self.g, self.kernel_class = graph, kernel_class
        self.consts = {k: t.array for k, t in graph.initializers.items() if t.array is not None}
        self.dq_of = {n.outputs[0]: n for n in graph.nodes if n.op_type == "DequantizeLinear"}
        self.integer_ops = 0

    # ---------------------------------------------------------------- helpers
    def _quantized_source(self, name: str, env: dict):
        """(q, scale, zero_point, axis) when `name` is the output of a DequantizeLinear, else None."""
        n = self.dq_of.get(name)
        if n is None:
            return None
        q = env[n.inputs[0]]
        if q.dtype not in (np.uint8, np.int8):
            return None
        zp = env[n.inputs[2]] if len(n.inputs) > 2 and n.inputs[2] else None
        return q, env[n.inputs[1]], zp, int(n.attrs.get("axis", 1))

    def _int_operands(self, node, env):
        a = self._quantized_source(node.inputs[0], env)
        w = self._quantized_source(node.inputs[1], env)
        if a is None or w is None or np.asarray(a[1]).size != 1:
            return None
        qa, sa, za, _ = a
        za = 0 if za is None else int(np.asarray(za).reshape(-1)[0])
        if qa.dtype == np.int8:                   # s8 activations: kernels add 128 and use the u8 path
            qa, za = qa.astype(np.int16) + 128, za + 128
        qw, sw, zw, waxis = w
        if qw.dtype != np.int8 or (zw is not None and np.any(zw != 0)):
            return None                           # u8 or asymmetric weights: widening kernels, exact
        return qa, za, float(np.asarray(sa).reshape(-1)[0]), qw, np.asarray(sw, np.float32), waxis

    # ---------------------------------------------------------------- ops
    def _conv(self, node, env):
        x = env[node.inputs[0]]
        w = env[node.inputs[1]]
        b = env[node.inputs[2]] if len(node.inputs) > 2 and node.inputs[2] else None
        at = node.attrs
        kernel = list(at.get("kernel_shape") or w.shape[2:])
        if len(kernel) != 2:
            raise ModelError(f"the reference runs 2-D convolutions only, not {len(kernel)}-D")
        strides = list(at.get("strides") or [1, 1])
        dil = list(at.get("dilations") or [1, 1])
        group = int(at.get("group", 1))
        pads = _pads(at, x.shape[2:], kernel, strides, dil)
        ints = self._int_operands(node, env)
        depthwise = group > 1 and w.shape[1] == 1
        if ints is not None and not depthwise:
            self.integer_ops += 1
            qa, za, sa, qw, sw, _ = ints
            cols = _windows(qa, kernel, strides, dil, pads, za)
            n, oh, ow = cols.shape[:3]
            cg = qa.shape[1] // group
            outs = []
            for gi, wm in enumerate(_conv_weight_matrix(qw, group)):
                c = cols[..., gi * cg:(gi + 1) * cg].reshape(n * oh * ow, -1)
                outs.append(_int_matmul(c, za, wm, self.kernel_class))
            acc = np.concatenate(outs, axis=1)
            y = acc * sa * np.broadcast_to(sw.reshape(-1), (w.shape[0],))[None, :]
            y = y.reshape(n, oh, ow, -1).transpose(0, 3, 1, 2).astype(np.float32)
        else:
            cols = _windows(x, kernel, strides, dil, pads, 0.0)
            n, oh, ow = cols.shape[:3]
            cg = x.shape[1] // group
            outs = [cols[..., gi * cg:(gi + 1) * cg].reshape(n * oh * ow, -1).astype(np.float64) @ wm.T.astype(np.float64)
                    for gi, wm in enumerate(_conv_weight_matrix(w, group))]
            y = np.concatenate(outs, axis=1).reshape(n, oh, ow, -1).transpose(0, 3, 1, 2).astype(np.float32)
        if b is not None:
            y = y + b.reshape(1, -1, 1, 1)
        return y

    def _matmul(self, node, env, trans_b=False):
        ints = self._int_operands(node, env)
        a, w = env[node.inputs[0]], env[node.inputs[1]]
        if ints is not None and a.ndim == 2 and w.ndim == 2:
            self.integer_ops += 1
            qa, za, sa, qw, sw, waxis = ints
            wm = qw if trans_b else qw.T                  # (M, K)
            acc = _int_matmul(qa, za, wm, self.kernel_class)
            scale = np.broadcast_to(sw.reshape(-1), (wm.shape[0],))
            return (acc * sa * scale[None, :]).astype(np.float32)
        return (a.astype(np.float64) @ (w.T if trans_b else w).astype(np.float64)).astype(np.float32)

    def _gemm(self, node, env):
        at = node.attrs
        if at.get("transA", 0):
            raise ModelError("the reference does not run Gemm with transA=1")
        y = self._matmul(node, env, trans_b=bool(at.get("transB", 0))) * float(at.get("alpha", 1.0))
        if len(node.inputs) > 2 and node.inputs[2]:
            y = y + float(at.get("beta", 1.0)) * env[node.inputs[2]]
        return y.astype(np.float32)

    @staticmethod
    def _pool(x, at, kind):
        kernel = list(at["kernel_shape"])
        strides = list(at.get("strides") or [1, 1])
        dil = list(at.get("dilations") or [1, 1])
        pads = _pads(at, x.shape[2:], kernel, strides, dil)
        if at.get("ceil_mode", 0):
            for i in range(2):
                n = x.shape[2 + i] + pads[i] + pads[i + 2] - (dil[i] * (kernel[i] - 1) + 1)
                if n % strides[i]:
                    pads[i + 2] += strides[i] - n % strides[i]
        fill = -np.inf if kind == "max" else 0.0
        win = _windows(x.astype(np.float32), kernel, strides, dil, pads, fill)
        if kind == "max":
            return win.max(axis=(3, 4)).transpose(0, 3, 1, 2)
        if at.get("count_include_pad", 0):
            return win.mean(axis=(3, 4)).transpose(0, 3, 1, 2)
        ones = _windows(np.ones_like(x[:, :1], np.float32), kernel, strides, dil, pads, 0.0)
        return (win.sum(axis=(3, 4)) / ones.sum(axis=(3, 4))).transpose(0, 3, 1, 2)

    def run(self, feeds: dict) -> list[np.ndarray]:
        env = dict(self.consts)
        env.update(feeds)
        env[""] = None
        for node in self.g.nodes:
            i, at, op = node.inputs, node.attrs, node.op_type
            get = lambda k: env[i[k]] if len(i) > k and i[k] else None  # noqa: E731
            if op == "QuantizeLinear":
                out = _quantize(get(0), get(1), get(2), int(at.get("axis", 1)))
            elif op == "DequantizeLinear":
                out = _dequantize(get(0), get(1), get(2), int(at.get("axis", 1)))
            elif op == "Conv":
                out = self._conv(node, env)
            elif op == "Gemm":
                out = self._gemm(node, env)
            elif op == "MatMul":
                out = self._matmul(node, env)
            elif op == "Relu":
                out = np.maximum(get(0), 0)
            elif op == "Clip":
                lo = get(1) if get(1) is not None else at.get("min", -np.inf)
                hi = get(2) if get(2) is not None else at.get("max", np.inf)
                out = np.clip(get(0), lo, hi)
            elif op in ("MaxPool", "AveragePool"):
                out = self._pool(get(0), at, "max" if op == "MaxPool" else "avg")
            elif op == "GlobalAveragePool":
                out = get(0).mean(axis=(2, 3), keepdims=True)
            elif op == "GlobalMaxPool":
                out = get(0).max(axis=(2, 3), keepdims=True)
            elif op in ("ReduceMean", "ReduceMax", "ReduceSum"):
                x = get(0)
                axes = get(1) if get(1) is not None else at.get("axes")
                axes = None if axes is None or len(np.atleast_1d(axes)) == 0 else tuple(int(a) for a in np.atleast_1d(axes))
                fn = {"ReduceMean": np.mean, "ReduceMax": np.max, "ReduceSum": np.sum}[op]
                out = fn(x, axis=axes, keepdims=bool(at.get("keepdims", 1)))
            elif op == "Sigmoid":
                out = 1.0 / (1.0 + np.exp(-get(0)))
            elif op == "Tanh":
                out = np.tanh(get(0))
            elif op == "HardSigmoid":
                out = np.clip(float(at.get("alpha", 0.2)) * get(0) + float(at.get("beta", 0.5)), 0, 1)
            elif op == "HardSwish":
                x = get(0)
                out = x * np.clip(x / 6.0 + 0.5, 0, 1)
            elif op == "LeakyRelu":
                x = get(0)
                out = np.where(x >= 0, x, float(at.get("alpha", 0.01)) * x)
            elif op in ("Add", "Sub", "Mul", "Div"):
                out = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op](get(0), get(1))
            elif op == "Flatten":
                x = get(0)
                ax = int(at.get("axis", 1)) % max(x.ndim, 1)
                out = x.reshape(int(np.prod(x.shape[:ax])), -1)
            elif op == "Reshape":
                x, shape = get(0), [int(s) for s in get(1)]
                shape = [x.shape[k] if s == 0 and not at.get("allowzero", 0) else s for k, s in enumerate(shape)]
                out = x.reshape(shape)
            elif op == "Transpose":
                out = get(0).transpose(at.get("perm") or None)
            elif op in ("Identity", "Dropout"):
                out = get(0)
            elif op == "Softmax":
                x = get(0)
                e = np.exp(x - x.max(axis=int(at.get("axis", -1)), keepdims=True))
                out = e / e.sum(axis=int(at.get("axis", -1)), keepdims=True)
            elif op == "Concat":
                out = np.concatenate([env[k] for k in i if k], axis=int(at["axis"]))
            elif op == "Shape":
                out = np.asarray(get(0).shape, np.int64)
            elif op == "Gather":
                out = np.take(get(0), get(1), axis=int(at.get("axis", 0)))
            elif op == "Unsqueeze":
                axes = get(1) if get(1) is not None else at["axes"]
                out = get(0)
                for a in sorted(int(v) % (out.ndim + len(axes)) for v in np.atleast_1d(axes)):
                    out = np.expand_dims(out, a)
            elif op == "Squeeze":
                axes = get(1) if get(1) is not None else at.get("axes")
                out = np.squeeze(get(0), axis=None if axes is None else tuple(int(v) for v in np.atleast_1d(axes)))
            elif op == "Constant":
                out = at.get("value")
            elif op == "Cast":
                out = get(0).astype(DTYPES.get(int(at["to"]), np.float32))
            else:
                raise ModelError(f"the int8 reference does not implement ONNX op {op}")
            env[node.outputs[0]] = np.asarray(out)
        return [env[o] for o in self.g.outputs]


class QdqReferenceRunner(Runner):
    """An int8 .onnx run by the NumPy reference under one kernel class (option `kernel_class`)."""
    runtime = "qdq-reference"                # not registered: verification opens it directly
    format = "onnx"
    suffixes = (".onnx",)
    needs = ()
    label = "NumPy int8 reference"

    def _load(self) -> None:
        g = read_onnx(self.path.read_bytes())
        self.graph = QdqGraph(g, self.options.get("kernel_class", "exact"))
        self.inputs = [TensorSpec(n, tuple(s), np.dtype(DTYPES.get(g.input_types.get(n, 1), np.float32)))
                       for n, s in g.inputs.items()]
        self.outputs = [TensorSpec(n, (), np.dtype(np.float32)) for n in g.outputs]

    def _run(self, feed: np.ndarray):
        return self.graph.run({self.inputs[0].name: feed})

    def predict(self, x_nhwc: np.ndarray, batch_size: int = 64) -> np.ndarray:
        return super().predict(x_nhwc, batch_size)

    def info(self) -> RunnerInfo:
        kc = self.graph.kernel_class
        return RunnerInfo(self.runtime, "numpy " + np.__version__, 1, {"kernel_class": kc, "means": KERNEL_CLASSES[kc]})

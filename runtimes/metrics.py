"""Figures read from a model file itself (any .onnx/.tflite, not only edgepack's): parameters,
non-zero parameters, MACs at batch 1, operator counts. NumPy + the runtimes only."""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np

from edgepack.runtimes.onnx_reader import Graph, external_files, load_external, read_onnx
from edgepack.toolkit.errors import ModelError, first_line

Q_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
SHAPE_INPUT_OPS = {"Reshape", "Pad", "Squeeze", "Unsqueeze", "ReduceMean", "Slice", "Expand", "Tile", "Resize", "Upsample"}


def file_metrics(path: str | Path) -> dict:
    path = Path(path)
    try:
        return _file_metrics(path)
    except ModelError as e:
        raise ModelError(str(e) if str(path) in str(e) else f"{path}: {e}") from None


def _file_metrics(path: Path) -> dict:
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return onnx_metrics(path.read_bytes(), path.parent)
    if suffix == ".epk":
        from edgepack.runtimes.epk import read_archive
        return onnx_metrics(read_archive(path)[0])
    if suffix == ".tflite":
        return tflite_metrics(path)
    if suffix in (".pt", ".pth", ".keras", ".h5"):
        return checkpoint_metrics(path)
    from edgepack.runtimes import runner_class      # a plug-in format: its runner may read its figures
    reader = getattr(runner_class(path), "file_metrics", None)
    return reader(path) if reader is not None else {}            # none: parameters and MACs are not measured


# ------------------------------------------------------------------ ONNX
def onnx_metrics(data: bytes, folder=None) -> dict:
    """Parameters, non-zeros, MACs and op counts of an ONNX graph; `folder`: where its external-data files lie (their
    weights are counted, and their names returned as `external_data`)."""
    g = read_onnx(data)
    external = external_files(g)
    if external and folder is not None:
        load_external(g, folder)
    skip, zero_points = set(), {}
    for n in g.nodes:
        if n.op_type in Q_OPS or n.op_type in SHAPE_INPUT_OPS:
            skip.update(n.inputs[1:])                     # scales, zero points, shapes, pads, axes
        if n.op_type == "DequantizeLinear" and len(n.inputs) > 2:
            zero_points[n.inputs[0]] = (n.inputs[2], n.attrs.get("axis", 1))
        if n.op_type in ("ConvInteger", "MatMulInteger"):
            skip.update(n.inputs[2:])                     # zero points
            if len(n.inputs) > 3:
                zero_points[n.inputs[1]] = (n.inputs[3], 0)
    params = nonzero = 0
    for name, t in g.initializers.items():
        if name in skip or t.array is None or t.array.dtype.kind not in "fiu" or t.array.size <= 1:
            continue                                      # scalars are quantization / rescaling constants
        params += t.array.size
        zp = 0
        if name in zero_points and zero_points[name][0] in g.initializers:
            zarr, axis = g.initializers[zero_points[name][0]].array, zero_points[name][1]
            if zarr is not None and zarr.size > 1:
                shape = [1] * t.array.ndim
                shape[axis] = zarr.size
                zp = zarr.reshape(shape)
            elif zarr is not None:
                zp = zarr.reshape(())
        nonzero += int(np.count_nonzero(t.array != zp))
    ops = Counter(n.op_type for n in g.nodes)
    return {"params": int(params), "nonzero_params": int(nonzero), "macs": onnx_macs(g),
            "ops": dict(ops), "qdq_nodes": sum(ops.get(o, 0) for o in ("QuantizeLinear", "DequantizeLinear")),
            "opset": g.opset, "external_data": external}


def _conv_out(size, k, s, d, p0, p1, ceil=False):
    v = (size + p0 + p1 - d * (k - 1) - 1) / s + 1
    return int(math.ceil(v) if ceil else math.floor(v))


def _spatial(n, x, kernel):
    dims = len(x) - 2
    strides = n.attrs.get("strides") or [1] * dims
    dil = n.attrs.get("dilations") or [1] * dims
    pads = n.attrs.get("pads") or [0] * (2 * dims)
    auto = n.attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    out = []
    for i in range(dims):
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            out.append(math.ceil(x[2 + i] / strides[i]))
        elif auto == "VALID":
            out.append(_conv_out(x[2 + i], kernel[i], strides[i], dil[i], 0, 0))
        else:
            out.append(_conv_out(x[2 + i], kernel[i], strides[i], dil[i], pads[i], pads[i + dims], bool(n.attrs.get("ceil_mode", 0))))
    return out


def onnx_macs(g: Graph) -> int | None:
    """MACs at batch 1 by propagating shapes through the common CNN operators; None if a compute op's shape is unknown."""
    shapes: dict[str, tuple] = {k: tuple(1 if d in (-1, 0) else d for d in s) for k, s in g.inputs.items()}
    const = {k: t.array for k, t in g.initializers.items()}
    for k, t in g.initializers.items():
        shapes[k] = t.dims
    macs, unknown = 0, False

    def sh(name):
        return shapes.get(name)

    for n in g.nodes:
        ins = [sh(i) if i else None for i in n.inputs]
        out = None
        op = n.op_type
        try:
            if op in ("Conv", "ConvInteger", "QLinearConv"):
                xi, wi = (0, 3) if op == "QLinearConv" else (0, 1)
                x, w = ins[xi], ins[wi]
                if x is None or w is None:
                    unknown = True
                else:
                    sp = _spatial(n, x, w[2:])
                    out = (x[0], w[0], *sp)
                    macs += int(np.prod(w)) * int(np.prod(sp)) * x[0]
            elif op in ("MaxPool", "AveragePool"):
                x = ins[0]
                out = (x[0], x[1], *_spatial(n, x, n.attrs["kernel_shape"]))
            elif op in ("GlobalAveragePool", "GlobalMaxPool"):
                out = (*ins[0][:2], *([1] * (len(ins[0]) - 2)))
            elif op in ("Gemm", "MatMul", "MatMulInteger", "QLinearMatMul"):
                a, b = (ins[0], ins[3]) if op == "QLinearMatMul" else (ins[0], ins[1])
                if a is None or b is None:
                    unknown = True
                else:
                    if op == "Gemm" and n.attrs.get("transA"):
                        a = (a[1], a[0])
                    if op == "Gemm" and n.attrs.get("transB"):
                        b = (b[1], b[0])
                    out = (*a[:-1], b[-1])
                    macs += int(np.prod(a)) * b[-1]
            elif op == "Flatten":
                ax = n.attrs.get("axis", 1)
                out = (int(np.prod(ins[0][:ax])), int(np.prod(ins[0][ax:])))
            elif op == "Reshape":
                target = list(const[n.inputs[1]])
                src = ins[0]
                target = [src[i] if d == 0 else d for i, d in enumerate(target)]
                if -1 in target:
                    known = int(np.prod([d for d in target if d != -1]))
                    target[target.index(-1)] = int(np.prod(src)) // known
                out = tuple(int(d) for d in target)
            elif op == "Transpose":
                perm = n.attrs.get("perm") or list(reversed(range(len(ins[0]))))
                out = tuple(ins[0][p] for p in perm)
            elif op == "Pad":
                pads = n.attrs.get("pads") or list(const[n.inputs[1]])
                r = len(ins[0])
                out = tuple(ins[0][i] + int(pads[i]) + int(pads[i + r]) for i in range(r))
            elif op in ("ReduceMean", "ReduceMax", "ReduceSum"):
                axes = n.attrs.get("axes") or (list(const[n.inputs[1]]) if len(n.inputs) > 1 and n.inputs[1] in const else None)
                keep = n.attrs.get("keepdims", 1)
                r = len(ins[0])
                axes = [a % r for a in axes] if axes is not None else list(range(r))
                out = tuple((1 if i in axes else d) for i, d in enumerate(ins[0]) if keep or i not in axes)
            elif op in ("Squeeze", "Unsqueeze"):
                axes = n.attrs.get("axes") or list(const[n.inputs[1]])
                if op == "Squeeze":
                    r = len(ins[0])
                    axes = [a % r for a in axes]
                    out = tuple(d for i, d in enumerate(ins[0]) if i not in axes)
                else:
                    res = list(ins[0])
                    for a in sorted(axes):
                        res.insert(a % (len(res) + 1), 1)
                    out = tuple(res)
            elif op == "Concat":
                ax = n.attrs.get("axis", 0) % len(ins[0])
                out = tuple(sum(s[ax] for s in ins) if i == ax else d for i, d in enumerate(ins[0]))
            elif op in ("QuantizeLinear", "DequantizeLinear", "BatchNormalization", "InstanceNormalization",
                        "LayerNormalization", "LRN", "Dropout", "Softmax", "LogSoftmax", "Identity", "Cast"):
                out = ins[0]                        # shape-preserving (per-channel parameters do not broadcast on the last axis)
            elif op == "DynamicQuantizeLinear":
                shapes[n.outputs[0]] = ins[0]
                continue
            elif op in ("Shape", "Constant"):
                continue
            else:                                   # elementwise / activation / Q-DQ: broadcast the known inputs
                known = [s for s in ins if s is not None]
                if known:
                    out = tuple(np.broadcast_shapes(*known))
        except (KeyError, TypeError, IndexError, ValueError):
            out = None
        if out is not None:
            shapes[n.outputs[0]] = tuple(int(d) for d in out)
    return None if unknown else int(macs)


# ------------------------------------------------------------------ TFLite
WEIGHT_OPS = {"CONV_2D": (1, 2), "DEPTHWISE_CONV_2D": (1, 2), "FULLY_CONNECTED": (1, 2), "TRANSPOSE_CONV": (1, 3),
              "BATCH_MATMUL": (1,)}


def tflite_metrics(path: Path) -> dict:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from edgepack.toolkit.tf_import import quiet_stderr
    with open(path, "rb") as f:
        ident = f.read(8)[4:]
    if ident != b"TFL3":                               # the flatbuffer file identifier every .tflite carries
        raise ModelError(f"{path}: not a TFLite model (bytes 4-7 are {ident!r}; a .tflite flatbuffer has b'TFL3' there)")
    try:
        with quiet_stderr():
            it = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                             experimental_preserve_all_tensors=True)
            it.allocate_tensors()
    except Exception as e:
        raise ModelError(f"{path}: not a loadable TFLite model ({first_line(e, 160)})") from None
    tensors = {d["index"]: d for d in it.get_tensor_details()}
    ops = it._get_ops_details()
    produced = {o for op in ops for o in op["outputs"]}
    weights = {}
    for op in ops:
        name = op["op_name"]
        for pos in WEIGHT_OPS.get(name, ()):
            if pos < len(op["inputs"]):
                idx = op["inputs"][pos]
                if idx >= 0 and idx not in produced:
                    weights[idx] = None
        if name in ("DEQUANTIZE", "DENSIFY"):         # fp16 weights, or sparse-encoded weights (stored non-zeros only)
            idx = op["inputs"][0]
            if idx not in produced:
                weights[idx] = None
    params = nonzero = 0
    for idx in weights:
        d = tensors[idx]
        n = int(np.prod(d["shape"])) if len(d["shape"]) else 1
        params += n
        try:
            arr = it.get_tensor(idx)
            zps = d["quantization_parameters"].get("zero_points", [])
            zp = 0 if len(zps) == 0 or np.all(zps == 0) else (zps.reshape([-1] + [1] * (arr.ndim - 1)) if len(zps) > 1 else zps[0])
            nonzero += int(np.count_nonzero(arr != zp))
        except ValueError:
            nonzero += n
    macs = 0
    for op in ops:
        name = op["op_name"]
        if name not in WEIGHT_OPS:
            continue
        w = tensors[op["inputs"][1]]["shape"]
        out = tensors[op["outputs"][0]]["shape"]
        if name == "CONV_2D":
            macs += int(np.prod(w)) * int(out[1] * out[2]) * int(out[0])
        elif name == "DEPTHWISE_CONV_2D":
            macs += int(np.prod(w[1:])) * int(out[1] * out[2]) * int(out[0])
        elif name == "FULLY_CONNECTED":
            macs += int(np.prod(w)) * int(np.prod(out[:-1]))
        elif name == "TRANSPOSE_CONV":
            macs += int(np.prod(w)) * int(np.prod(tensors[op["inputs"][2]]["shape"][1:3]))
        elif name == "BATCH_MATMUL":
            a = tensors[op["inputs"][0]]["shape"]
            macs += int(np.prod(a)) * int(w[-1])
    counts = Counter(op["op_name"] for op in ops)
    return {"params": int(params), "nonzero_params": int(nonzero), "macs": int(macs), "ops": dict(counts),
            "qdq_nodes": counts.get("QUANTIZE", 0) + counts.get("DEQUANTIZE", 0)}


# ------------------------------------------------------------------ source checkpoints
def checkpoint_metrics(path: Path) -> dict:
    from edgepack.toolkit.api import load_checkpoint
    loaded = load_checkpoint(path)
    counts = loaded.backend.count_params(loaded.model)
    macs = loaded.spec.counts()["macs"] if loaded.spec is not None else None
    return {"params": counts["trainable"], "nonzero_params": loaded.backend.count_nonzero_trainable(loaded.model),
            "macs": macs, "ops": {}, "qdq_nodes": 0}

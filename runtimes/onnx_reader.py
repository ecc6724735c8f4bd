"""A minimal ONNX reader on the protobuf wire format (NumPy only): nodes, initializers, input shapes.

The benchmark harness must work on a runtime-only install, where the `onnx` package is absent.
Only the fields edgepack's metrics need are decoded (see onnx.proto for the field numbers).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from edgepack.toolkit.errors import ModelError

# ONNX TensorProto.DataType -> numpy
DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 5: np.int16, 6: np.int32, 7: np.int64, 10: np.float16, 11: np.float64}


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf):
            raise ModelError("truncated protobuf")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def fields(buf: bytes):
    """Yield (field_number, wire_type, value) for one message; value is int or bytes."""
    i, n = 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        elif wt == 2:
            ln, i = _varint(buf, i)
            v, i = buf[i:i + ln], i + ln
            if i > n:
                raise ModelError("truncated protobuf")
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ModelError(f"unsupported protobuf wire type {wt}")
        yield num, wt, v


def _packed_ints(v, wt) -> list[int]:
    if wt == 0:
        return [v]
    out, i = [], 0
    while i < len(v):
        x, i = _varint(v, i)
        out.append(x)
    return out


def _signed(x: int) -> int:
    return x - (1 << 64) if x >= (1 << 63) else x


@dataclass
class Tensor:
    name: str
    dims: tuple
    dtype: int
    array: np.ndarray | None
    external: dict | None = None      # external data: {"location", "offset", "length"} (the weights in another file)


@dataclass
class Node:
    op_type: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict = field(default_factory=dict)


@dataclass
class Graph:
    nodes: list[Node]
    initializers: dict[str, Tensor]
    inputs: dict[str, tuple]          # name -> shape (-1 for symbolic)
    opset: int | None = None
    outputs: list[str] = field(default_factory=list)
    input_types: dict[str, int] = field(default_factory=dict)   # name -> TensorProto.DataType


def _tensor(buf: bytes) -> Tensor:
    dims, dtype, name, raw, floats, int64s, int32s = [], 1, "", None, [], [], []
    external, location_kind = {}, 0
    for num, wt, v in fields(buf):
        if num == 13:                                    # StringStringEntryProto: key 1, value 2
            entry = {n2: v2.decode() for n2, _, v2 in fields(v)}
            external[entry.get(1, "")] = entry.get(2, "")
        elif num == 14:
            location_kind = v
        elif num == 1:
            dims += _packed_ints(v, wt)
        elif num == 2:
            dtype = v
        elif num == 8:
            name = v.decode()
        elif num == 9:
            raw = v
        elif num == 4:
            floats.append(np.frombuffer(v, "<f4") if wt == 2 else np.frombuffer(v, "<f4"))
        elif num == 7:
            int64s += [_signed(x) for x in _packed_ints(v, wt)]
        elif num == 5:
            int32s += [_signed(x) for x in _packed_ints(v, wt)]
    np_t = DTYPES.get(dtype)
    arr = None
    if np_t is not None:
        count = int(np.prod(dims)) if dims else 1
        if raw is not None:
            arr = np.frombuffer(raw, np.dtype(np_t).newbyteorder("<"))
        elif floats:
            arr = np.concatenate(floats)
        elif int64s:
            arr = np.asarray(int64s, np.int64)
        elif int32s:
            arr = np.asarray(int32s, np.int64).astype(np_t)
        if arr is not None and arr.size == count:
            arr = arr.reshape(dims)
        else:
            arr = None if count else np.zeros(dims, np_t)
    ext = None
    if location_kind == 1 and external.get("location"):
        ext = {"location": external["location"], "offset": int(external.get("offset") or 0),
               "length": int(external["length"]) if external.get("length") else None}
    return Tensor(name, tuple(dims), dtype, arr, ext)


def external_files(g: "Graph") -> list[str]:
    """The files (relative to the model) holding initializers stored as external data, in first-use order."""
    return list(dict.fromkeys(t.external["location"] for t in g.initializers.values() if t.external))


def load_external(g: "Graph", folder) -> None:
    """Read external-data initializers from their files beside the model (`torch.onnx.export` writes large models as
    model.onnx + model.onnx.data); a missing file is a one-line error naming it."""
    from pathlib import Path
    for t in g.initializers.values():
        if not t.external or t.array is not None:
            continue
        f = Path(folder) / t.external["location"]
        np_t = DTYPES.get(t.dtype)
        if not f.is_file():
            raise ModelError(f"external data file {t.external['location']} (tensor {t.name}) not found beside the model")
        if np_t is None:
            continue
        count = int(np.prod(t.dims)) if t.dims else 1
        with open(f, "rb") as fh:
            fh.seek(t.external["offset"])
            raw = fh.read(t.external["length"] or count * np.dtype(np_t).itemsize)
        arr = np.frombuffer(raw, np.dtype(np_t).newbyteorder("<"))
        t.array = arr.reshape(t.dims) if arr.size == count else None


def _attr(buf: bytes):
    name, val, ints = "", None, []
    for num, wt, v in fields(buf):
        if num == 1:
            name = v.decode()
        elif num == 3:
            val = v if v < (1 << 63) else v - (1 << 64)
        elif num == 2:
            val = struct.unpack("<f", v)[0]
        elif num == 4:
            val = v.decode(errors="replace")
        elif num == 8:
            ints += [x if x < (1 << 63) else x - (1 << 64) for x in _packed_ints(v, wt)]
        elif num == 7:                                   # floats
            val = list(np.frombuffer(v, "<f4")) if wt == 2 else (val or []) + [struct.unpack("<f", v)[0]]
        elif num == 5:                                   # a tensor (Constant nodes)
            val = _tensor(v).array
    return name, (ints if ints else val)


def _value_info_shape(buf: bytes) -> tuple[str, tuple]:
    return _value_info(buf)[:2]


def _value_info(buf: bytes) -> tuple[str, tuple, int]:
    name, shape, elem = "", (), 0
    for num, _, v in fields(buf):
        if num == 1:
            name = v.decode()
        elif num == 2:                                   # TypeProto
            for n2, _, v2 in fields(v):
                if n2 == 1:                              # tensor_type
                    for n3, w3, v3 in fields(v2):
                        if n3 == 1 and w3 == 0:
                            elem = v3
                        if n3 == 2:                      # TensorShapeProto
                            dims = []
                            for n4, _, v4 in fields(v3):
                                if n4 == 1:
                                    d = -1
                                    for n5, w5, v5 in fields(v4):
                                        if n5 == 1 and w5 == 0:
                                            d = v5
                                    dims.append(d)
                            shape = tuple(dims)
    return name, shape, elem


def read_onnx(data: bytes) -> Graph:
    graph_buf, opset = None, None
    try:
        for num, wt, v in fields(data):
            if num == 7 and wt == 2:
                graph_buf = v if graph_buf is None else graph_buf + v    # merged repeats (edgepack archives)
            elif num == 8 and wt == 2:
                dom, ver = "", None
                for n2, _, v2 in fields(v):
                    if n2 == 1:
                        dom = v2.decode()
                    elif n2 == 2:
                        ver = v2
                if dom in ("", "ai.onnx"):
                    opset = ver
    except (ModelError, UnicodeDecodeError, struct.error, IndexError) as e:
        raise ModelError(f"not a valid ONNX model ({e})") from None
    if graph_buf is None:
        raise ModelError("not a valid ONNX model (no graph)")
    nodes, inits, inputs, types, outputs = [], {}, {}, {}, []
    for num, wt, v in fields(graph_buf):
        if num == 1:
            ins, outs, op, attrs = [], [], "", {}
            for n2, _, v2 in fields(v):
                if n2 == 1:
                    ins.append(v2.decode())
                elif n2 == 2:
                    outs.append(v2.decode())
                elif n2 == 4:
                    op = v2.decode()
                elif n2 == 5:
                    k, val = _attr(v2)
                    attrs[k] = val
            nodes.append(Node(op, ins, outs, attrs))
        elif num == 5:
            t = _tensor(v)
            inits[t.name] = t
        elif num == 11:
            name, shape, elem = _value_info(v)
            inputs[name], types[name] = shape, elem
        elif num == 12:
            outputs.append(_value_info(v)[0])
    inputs = {k: s for k, s in inputs.items() if k not in inits}
    return Graph(nodes, inits, inputs, opset, outputs, {k: t for k, t in types.items() if k in inputs})

"""The edgepack archive (.epk): ONNX graph + bitmask/values (or uint8) weights, gzip-compressed.

The codec, shared by the exporter (exporters/sparse_archive.py) and the runner (runtimes/archive.py).
The format is specified in exporters/SPARSE_FORMAT.md. Reading needs NumPy only, so the benchmark
harness can run archives on a runtime-only install.
"""
from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np

from edgepack.toolkit.errors import ModelError

MAGIC = b"EPK\x01"
VERSION = 1
ONNX_FLOAT = 1
_NP = {"fp32": np.dtype("<f4"), "fp16": np.dtype("<f2"), "int8": np.dtype("i1")}


# ------------------------------------------------------------------ protobuf wire encoding (no onnx needed)
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field_bytes(num: int, payload: bytes) -> bytes:
    return _varint((num << 3) | 2) + _varint(len(payload)) + payload


def _tensor_proto(name: str, dims: list[int], array: np.ndarray) -> bytes:
    """TensorProto{dims=1 (packed int64), data_type=2, name=8, raw_data=9} for a float32 tensor."""
    packed = b"".join(_varint(int(d)) for d in dims)
    msg = _field_bytes(1, packed) if dims else b""
    msg += _varint((2 << 3) | 0) + _varint(ONNX_FLOAT)
    msg += _field_bytes(8, name.encode())
    msg += _field_bytes(9, np.ascontiguousarray(array, dtype="<f4").tobytes())
    return msg


# ------------------------------------------------------------------ encodings
def encode_tensor(arr: np.ndarray, kind: str, values: str = "fp32") -> tuple[dict, bytes]:
    flat = arr.astype(np.float32).ravel()
    if kind == "weights-uint8":
        lo, hi = float(flat.min()), float(flat.max())
        span = (hi - lo) or 1.0
        q = np.round((flat - lo) / span * 255).astype(np.uint8)
        return {"encoding": "minmax-uint8", "min": lo, "max": hi}, q.tobytes()
    mask = flat != 0
    nz = flat[mask]
    meta = {"encoding": "bitmask", "values": values, "nnz": int(mask.sum())}
    if values == "int8":
        scale = float(np.abs(nz).max() / 127) if len(nz) else 1.0
        vals = np.clip(np.round(nz / scale), -127, 127).astype(np.int8).tobytes()
        meta["scale"] = scale
    else:
        vals = nz.astype(_NP[values]).tobytes()
    bitmask = np.packbits(mask).tobytes()
    if values == "fp32" and len(bitmask) + len(vals) >= flat.nbytes:    # a bitmask would not pay
        return {"encoding": "dense"}, flat.astype("<f4").tobytes()
    return meta, bitmask + vals


def decode_tensor(meta: dict, payload: bytes) -> np.ndarray:
    dims = meta["dims"]
    numel = int(np.prod(dims)) if dims else 1
    enc = meta["encoding"]
    if enc == "dense":
        return np.frombuffer(payload, "<f4").reshape(dims).copy()
    if enc == "minmax-uint8":
        q = np.frombuffer(payload, np.uint8).astype(np.float32)
        return (meta["min"] + q * ((meta["max"] - meta["min"]) / 255)).astype(np.float32).reshape(dims)
    if enc == "bitmask":
        nbytes = (numel + 7) // 8
        mask = np.unpackbits(np.frombuffer(payload[:nbytes], np.uint8), count=numel).astype(bool)
        vals = np.frombuffer(payload[nbytes:], _NP[meta["values"]])
        if len(vals) != meta["nnz"] or int(mask.sum()) != meta["nnz"]:
            raise ModelError(f"tensor {meta['name']}: corrupt archive (non-zero count mismatch)")
        out = np.zeros(numel, np.float32)
        out[mask] = vals.astype(np.float32) * (meta["scale"] if meta["values"] == "int8" else 1.0)
        return out.reshape(dims)
    raise ModelError(f"tensor {meta['name']}: unknown encoding {enc!r}")


# ------------------------------------------------------------------ writing (needs the onnx package)
def write_archive(onnx_path: Path, out_path: Path, kind: str = "sparse", values: str = "fp32") -> dict:
    import onnx
    from onnx import numpy_helper
    model = onnx.load(str(onnx_path))
    keep, entries, payload = [], [], bytearray()
    for init in model.graph.initializer:
        if init.data_type != ONNX_FLOAT or not init.dims:
            keep.append(init)
            continue
        arr = numpy_helper.to_array(init)
        meta, data = encode_tensor(arr, kind, values)
        meta.update(name=init.name, dims=[int(d) for d in init.dims], onnx_dtype=ONNX_FLOAT,
                    offset=len(payload), length=len(data))
        entries.append(meta)
        payload += data
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    graph = model.SerializeToString()
    header = json.dumps({"version": VERSION, "kind": kind, "graph_bytes": len(graph), "tensors": entries},
                        separators=(",", ":")).encode()
    blob = MAGIC + struct.pack("<I", len(header)) + header + graph + bytes(payload)
    tmp = out_path.with_name(out_path.name + ".tmp")
    tmp.write_bytes(gzip.compress(blob, compresslevel=9, mtime=0))
    tmp.replace(out_path)
    numel = sum(int(np.prod(e["dims"])) for e in entries)
    nnz = sum(e.get("nnz", int(np.prod(e["dims"]))) for e in entries)
    bpv = {"fp32": 4, "fp16": 2, "int8": 1}[values]
    return {"kind": kind, "values": values if kind == "sparse" else "uint8", "tensors": len(entries),
            "numel": numel, "nnz": nnz, "sparsity": 1 - nnz / max(numel, 1), "graph_bytes": len(graph),
            "header_bytes": len(header),
            "size_bound_bytes": int(nnz * bpv + numel / 8 + len(graph)) if kind == "sparse" else int(numel + len(graph))}


# ------------------------------------------------------------------ reading (NumPy only)
def read_archive(path: str | Path) -> tuple[bytes, dict]:
    """Decompress an archive into dense ONNX bytes (plus its header)."""
    path = Path(path)
    try:
        blob = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as e:
        raise ModelError(f"{path}: not an edgepack archive or truncated ({e})") from None
    if blob[:4] != MAGIC:
        raise ModelError(f"{path}: not an edgepack archive (bad magic)")
    (hlen,) = struct.unpack("<I", blob[4:8])
    try:
        header = json.loads(blob[8:8 + hlen])
    except json.JSONDecodeError:
        raise ModelError(f"{path}: corrupt archive header") from None
    if header.get("version") != VERSION:
        raise ModelError(f"{path}: archive version {header.get('version')} not supported (this edgepack reads {VERSION})")
    start = 8 + hlen
    graph = blob[start:start + header["graph_bytes"]]
    base = start + header["graph_bytes"]
    inits = b""
    for meta in header["tensors"]:
        data = blob[base + meta["offset"]: base + meta["offset"] + meta["length"]]
        if len(data) != meta["length"]:
            raise ModelError(f"{path}: archive truncated in tensor {meta['name']}")
        inits += _field_bytes(5, _tensor_proto(meta["name"], meta["dims"], decode_tensor(meta, data)))
    return graph + _field_bytes(7, inits), header


def to_onnx_file(archive: str | Path, out: str | Path) -> Path:
    data, _ = read_archive(archive)
    Path(out).write_bytes(data)
    return Path(out)

"""Reader for MNIST-format IDX files (gzip-compressed or raw)."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from edgepack.toolkit.errors import DataError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: cannot read ({e.__class__.__name__}: {e}); the file may be truncated") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = struct.unpack(">" + "I" * ndim, raw[4:header])
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path}: IDX payload has {len(raw) - header} bytes, header promises {expected}; the file is truncated or corrupt")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def find_idx(directory: Path, stem: str) -> Path | None:
    """Locate `stem` (e.g. 'train-images-idx3-ubyte') as raw or .gz, also with the dotted variant."""
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        p = Path(directory) / name
        if p.is_file():
            return p
    return None


def write_idx(path: Path, arr: np.ndarray) -> None:
    """An unsigned-byte IDX file (gzip-compressed when `path` ends in .gz), the format read_idx reads."""
    arr = np.ascontiguousarray(arr)
    if arr.dtype != np.uint8:
        raise DataError(f"{path}: IDX files here hold uint8 arrays, not {arr.dtype}")
    data = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes()
    path = Path(path)
    if path.suffix == ".gz":
        data = gzip.compress(data, compresslevel=6, mtime=0)     # no timestamp: the same set, the same bytes
    path.write_bytes(data)

"""Image-folder trees (`split/<class>/*.png|jpg`), CIFAR python batches, safe tar extraction."""
from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np

from edgepack.toolkit.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def safe_extract(tar_path: Path, dest: Path) -> None:
    """Extract a tarball refusing absolute paths, '..' components and links out of `dest`."""
    dest = Path(dest).resolve()
    try:
        with tarfile.open(tar_path) as tar:
            members = tar.getmembers()
            for m in members:
                target = (dest / m.name).resolve()
                if not str(target).startswith(str(dest) + "/") and target != dest:
                    raise DataError(f"{tar_path}: refusing to extract '{m.name}' outside the destination")
                if m.issym() or m.islnk() or m.isdev():
                    raise DataError(f"{tar_path}: refusing to extract link or device '{m.name}'")
            tar.extractall(dest, members=members)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"{tar_path}: cannot extract ({e}); the archive may be truncated") from None


def list_classes(split_dir: Path) -> list[str]:
    return sorted(p.name for p in Path(split_dir).iterdir() if p.is_dir() and not p.name.startswith("."))


def read_image_folder(split_dir: Path, classes: list[str], channels: int, size: tuple[int, int] | None = None):
    """Decode every image of `split_dir/<class>/*` into uint8 NHWC plus int64 labels."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is in every extra
        raise DataError("reading image folders needs Pillow: pip install pillow") from None
    files, labels = [], []
    for idx, cls in enumerate(classes):
        d = Path(split_dir) / cls
        if not d.is_dir():
            continue
        for f in sorted(d.iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                files.append(f)
                labels.append(idx)
    if not files:
        raise DataError(f"{split_dir}: no images found under <class>/ folders")
    mode = "L" if channels == 1 else "RGB"
    first = Image.open(files[0])
    w, h = size[::-1] if size else first.size
    out = np.empty((len(files), h, w, channels), dtype=np.uint8)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                im = im.convert(mode)
                if im.size != (w, h):
                    im = im.resize((w, h), Image.BILINEAR)
                out[i] = np.asarray(im).reshape(h, w, channels)
        except OSError as e:
            raise DataError(f"{f}: cannot decode image ({e})") from None
    return out, np.asarray(labels, dtype=np.int64)


def read_cifar_batches(folder: Path):
    """The official CIFAR-10 python batches (data_batch_1..5, test_batch)."""
    def load(name):
        p = Path(folder) / name
        try:
            with open(p, "rb") as f:
                d = pickle.load(f, encoding="bytes")
        except FileNotFoundError:
            raise DataError(f"{p}: file not found") from None
        except Exception as e:
            raise DataError(f"{p}: not a CIFAR python batch ({e})") from None
        x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return x, np.asarray(d[b"labels"], dtype=np.int64)

    parts = [load(f"data_batch_{i}") for i in range(1, 6)]
    xt, yt = load("test_batch")
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), xt, yt

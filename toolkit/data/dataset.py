"""The one in-memory form of a data set: uint8 NHWC images + int64 labels, framework-free.

Every consumer (torch and Keras training, int8 calibration, benchmark accuracy) takes its
float batches from here, in the layout it asks for, so preprocessing is defined once.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterator

import numpy as np

from edgepack.toolkit.errors import OptionError

LAYOUTS = ("NHWC", "NCHW")


class ImageSet:
    """What every in-memory image set shares (classification `Dataset`, detection `DetectionSet`): uint8 NHWC
    `x_train`, its `classes`, and the preprocessing (`mean`, `std`, `scale`) that makes model input of it."""
    modality = "image"            # what x holds; a task may be the default for a modality (Task.default_for)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one image."""
        return tuple(int(s) for s in self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def normalize(self, x: np.ndarray, layout: str = "NHWC") -> np.ndarray:
        return normalize(x, self.mean, self.std, layout, self.scale)

    def preprocessing(self) -> dict:
        """How raw uint8 pixels become model input; stored in every artifact record."""
        return {"scale": self.scale, "mean": list(self.mean), "std": list(self.std), "layout_source": "NHWC"}

    def with_preprocessing(self, pre: dict | None) -> "ImageSet":
        """The same images for a model that expects other input: {"mean", "std", "scale"} (any of them; one value
        applies to every channel). Used for model files users bring; the exports' records carry it."""
        if not pre:
            return self
        c = self.input_shape[2]

        def per_channel(key, default):
            v = pre.get(key)
            if v is None:
                return tuple(default)
            v = [float(x) for x in (v if isinstance(v, (list, tuple)) else [v])]
            if len(v) not in (1, c):
                raise OptionError(f"--{key} has {len(v)} values; {self.name} images have {c} channel(s)")
            return tuple(v * c if len(v) == 1 else v)
        mean, std = per_channel("mean", self.mean), per_channel("std", self.std)
        scale = float(pre.get("scale") or self.scale)
        if min(std) <= 0 or scale <= 0:
            raise OptionError("--std values and --scale must be > 0")
        if (mean, std, scale) == (tuple(self.mean), tuple(self.std), self.scale):
            return self
        return replace(self, mean=mean, std=std, scale=scale,
                       notes=self.notes + [f"input preprocessing: x * {scale:g}, mean {list(mean)}, std {list(std)}"])

    def test_sha256(self) -> str:
        """Content hash of the test images and labels: which data a figure was measured on, wherever it lies."""
        if getattr(self, "_test_sha", None) is None:
            import hashlib
            h = hashlib.sha256(np.ascontiguousarray(self.x_test).tobytes())
            h.update(self.label_bytes(self.y_test))
            self._test_sha = h.hexdigest()
        return self._test_sha

    def sha256(self) -> str:
        """Content hash of the whole data set (train and test): recipe steps recompute when it changes."""
        if getattr(self, "_sha", None) is None:
            import hashlib
            h = hashlib.sha256(self.test_sha256().encode())
            h.update(np.ascontiguousarray(self.x_train).tobytes())
            h.update(self.label_bytes(self.y_train))
            self._sha = h.hexdigest()
        return self._sha

    def golden_raw(self, n: int, seed: int) -> dict:
        """Raw inputs a bundle's golden vectors carry besides the model input of `test_subset(n, seed)` (an audio
        set's clips, which a device turns into features itself); none for images."""
        return {}

    def classes_in(self, y: np.ndarray) -> np.ndarray:
        """The class indices that occur in labels `y` (a subset's, say)."""
        return np.unique(y)

    def present_classes(self) -> np.ndarray:
        """The class indices that occur in the labels (train and test)."""
        return np.union1d(self.classes_in(self.y_train), self.classes_in(self.y_test))

    def split(self, val_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Seeded, stratification-free train/validation split of the training indices."""
        if not 0.0 <= val_fraction < 1.0:
            raise OptionError(f"validation fraction must be in [0, 1), got {val_fraction}")
        idx = np.random.default_rng(seed).permutation(len(self.y_train))
        n_val = int(round(len(idx) * val_fraction))
        return np.sort(idx[n_val:]), np.sort(idx[:n_val])


@dataclass
class Dataset(ImageSet):
    name: str
    source: str                      # what was actually read (path, URL or fallback), for records
    x_train: np.ndarray              # uint8 (N, H, W, C)
    y_train: np.ndarray              # int64 (N,)
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    mean: tuple[float, ...]          # per channel, on the [0, 1] scale
    std: tuple[float, ...]
    notes: list[str] = field(default_factory=list)
    fallback: bool = False           # an offline stand-in (scikit-learn's digits), never the named data set itself
    scale: float = 1 / 255.0         # pixels are multiplied by this before mean/std

    def label_bytes(self, y: np.ndarray) -> bytes:
        """The labels as the content hashes read them."""
        return np.ascontiguousarray(y).astype(np.int64).tobytes()

    def describe(self) -> str:
        """One line for stderr: which data a command used."""
        what = f"{self.name} from {self.source}"
        if self.fallback:
            what += " (OFFLINE STAND-IN, not the real data set)"
        return (f"data: {what}: {len(self.y_train):,} train / {len(self.y_test):,} test images, "
                f"{self.num_classes} classes, test sha256 {self.test_sha256()[:12]}")

    def calibration(self, n: int = 200, seed: int = 0, layout: str = "NHWC") -> np.ndarray:
        """N real training images, stratified by class and seeded, normalized, for quantization calibration."""
        return self.normalize(self.x_train[stratified_indices(self.y_train, n, seed + 1)], layout)

    def test_subset(self, n: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """n test images stratified by class (seeded; all when n is None or >= the test set), uint8, and labels.

        Never "the first n": image-folder copies are ordered by class, so the first images are one class."""
        idx = stratified_indices(self.y_test, n, seed)
        return self.x_test[idx], self.y_test[idx]


def stratified_indices(y: np.ndarray, n: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of n labels drawn per class in proportion to the class sizes (largest remainder), seeded."""
    total = len(y)
    if n is None or int(n) >= total:
        return np.arange(total)
    n = int(n)
    classes, counts = np.unique(y, return_counts=True)
    exact = counts * n / total
    take = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - take), kind="stable")[:n - take.sum()]:
        take[i] += 1
    if n >= len(classes):                                 # every class represented when there is room
        short = take == 0
        take[short] = 1
        while take.sum() > n:
            take[np.argmax(take)] -= 1
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(y == c), size=k, replace=False) for c, k in zip(classes, take) if k]
    return np.sort(np.concatenate(picked)) if picked else np.arange(0)


def parse_preprocessing(mean: str | None, std: str | None, scale: float | None) -> dict | None:
    """The --mean/--std/--scale flags (bench, export, deploy): None when none is given."""
    if mean is None and std is None and scale is None:
        return None
    if (mean is None) != (std is None):
        raise OptionError("--mean and --std go together")
    if scale is not None and not scale > 0:
        raise OptionError(f"--scale must be > 0, got {scale}")
    pre = {"scale": scale if scale is not None else 1 / 255.0}
    for flag, text in (("mean", mean), ("std", std)):
        if text is None:
            continue
        try:
            pre[flag] = [float(t) for t in text.split(",") if t.strip()]
        except ValueError:
            raise OptionError(f"--{flag} expects comma-separated numbers, got {text!r}") from None
    if mean is not None and any(v <= 0 for v in pre["std"]):
        raise OptionError("--std values must be > 0")
    return pre


PREPROCESSING_HELP = {
    "mean": "per-channel mean after scaling, e.g. 0.485,0.456,0.406 (default: the file's edgepack record, else the "
            "data set's)",
    "std": "per-channel std after scaling, e.g. 0.229,0.224,0.225",
    "scale": "pixel scale before mean/std (default 1/255)",
}


def add_preprocessing_args(p) -> None:
    """--mean/--std/--scale on an argparse parser."""
    p.add_argument("--mean", default=None, help=PREPROCESSING_HELP["mean"])
    p.add_argument("--std", default=None, help=PREPROCESSING_HELP["std"])
    p.add_argument("--scale", type=float, default=None, help=PREPROCESSING_HELP["scale"])


def normalize(x: np.ndarray, mean, std, layout: str = "NHWC", scale: float = 1 / 255.0) -> np.ndarray:
    if layout not in LAYOUTS:
        raise OptionError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    out = (x.astype(np.float32) * np.float32(scale) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2)) if layout == "NCHW" else out


def augment_crop_flip(x: np.ndarray, rng: np.random.Generator, pad: int = 4, flip: bool = True) -> np.ndarray:
    """CIFAR augmentation on uint8 NHWC: random crop with zero padding + horizontal flip."""
    n, h, w, _ = x.shape
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    dy = rng.integers(0, 2 * pad + 1, n)
    dx = rng.integers(0, 2 * pad + 1, n)
    out = np.empty_like(x)
    for i in range(n):
        out[i] = padded[i, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
    if flip:
        mask = rng.random(n) < 0.5
        out[mask] = out[mask, :, ::-1]
    return out


def cutout_mask(n: int, h: int, w: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Cutout (DeVries & Taylor 2017): per image one size x size square, its centre uniform over the image,
    clipped at the border; True where the pixels are cut. Shape (n, h, w)."""
    cy, cx = rng.integers(0, h, n), rng.integers(0, w, n)
    y0, x0 = np.clip(cy - size // 2, 0, h), np.clip(cx - size // 2, 0, w)
    y1, x1 = np.clip(cy - size // 2 + size, 0, h), np.clip(cx - size // 2 + size, 0, w)
    rows, cols = np.arange(h)[None, :], np.arange(w)[None, :]
    in_y = (rows >= y0[:, None]) & (rows < y1[:, None])
    in_x = (cols >= x0[:, None]) & (cols < x1[:, None])
    return in_y[:, :, None] & in_x[:, None, :]


def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) box-filter resampling weights: output pixel i averages the input span [i, i+1) * n_in/n_out,
    partial pixels weighted by their overlap (PIL's BOX, OpenCV's INTER_AREA); every row sums to 1."""
    edges = np.arange(n_out + 1) * (n_in / n_out)
    lo, hi = edges[:-1, None], edges[1:, None]
    px = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, px + 1) - np.maximum(lo, px), 0, None)
    return (overlap / overlap.sum(1, keepdims=True)).astype(np.float32)


def resize_area(x: np.ndarray, height: int, width: int, layout: str) -> np.ndarray:
    """Downscale a float batch (NHWC or NCHW) to height x width by area averaging; unchanged when already that size."""
    h_axis = 2 if layout == "NCHW" else 1
    h, w = x.shape[h_axis], x.shape[h_axis + 1]
    if (h, w) == (height, width):
        return x
    rh, rw = area_weights(h, height), area_weights(w, width)
    spec = "ih,nchw,jw->ncij" if layout == "NCHW" else "ih,nhwc,jw->nijc"
    return np.ascontiguousarray(np.einsum(spec, rh, x, rw, optimize=True), dtype=np.float32)


def iterate_batches(ds: Dataset, indices: np.ndarray, batch_size: int, layout: str, *, shuffle: bool,
                    augment: bool, seed: int, epoch: int = 0, split: str = "train",
                    cutout: int = 0, size: tuple[int, int] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield normalized float32 batches in `layout`; seeded per epoch so both frameworks see one order.
    With augment: random crop + flip, then (cutout > 0) a cutout square set to 0 after normalization, the mean colour.
    `size` (height, width): the batch is then downscaled to it by area averaging (progressive resizing)."""
    x_all = ds.x_train if split == "train" else ds.x_test
    y_all = ds.y_train if split == "train" else ds.y_test
    rng = np.random.default_rng((seed, epoch))
    order = rng.permutation(indices) if shuffle else np.asarray(indices)
    for s in range(0, len(order), batch_size):
        sel = order[s:s + batch_size]
        xb = x_all[sel]
        if augment:
            xb = augment_crop_flip(xb, rng)
        xn = ds.normalize(xb, layout)
        if augment and cutout:
            mask = cutout_mask(len(xb), xb.shape[1], xb.shape[2], cutout, rng)
            (xn.transpose(0, 2, 3, 1) if layout == "NCHW" else xn)[mask] = 0.0
        if size is not None:
            xn = resize_area(xn, *size, layout)
        yield xn, y_all[sel]

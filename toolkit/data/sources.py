"""Where data comes from: explicit dir -> $EDGEPACK_DATA -> user cache -> download -> bundled fallback.

Each built-in data set is one `DatasetSpec` in `DATASETS`. Every load says what it used
(`Dataset.source`), and a fallback is announced on stderr: data is never substituted silently.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import sys
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgepack.toolkit.data.dataset import Dataset
from edgepack.toolkit.data.idx import find_idx, read_idx
from edgepack.toolkit.data.images import list_classes, read_cifar_batches, read_image_folder, safe_extract
from edgepack.toolkit.errors import DataError, first_line

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# MD5 of the *decompressed* canonical files (so re-compressed copies verify too).
MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://yann.lecun.com/exdb/mnist/")
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def cache_dir() -> Path:
    root = os.environ.get("EDGEPACK_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")), "edgepack")
    return Path(root)


def note(msg: str) -> None:
    print(f"edgepack: {msg}", file=sys.stderr)


def md5_of(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# ---------------------------------------------------------------- readers of a located folder
def load_idx_dir(name: str, folder: Path, mean=None, std=None, classes=None, verify_md5: bool = False) -> Dataset:
    paths = {}
    for stem in MNIST_FILES:
        p = find_idx(folder, stem)
        if p is None:
            raise DataError(f"{folder}: missing IDX file {stem}[.gz]")
        paths[stem] = p
    arrays = {stem: read_idx(p) for stem, p in paths.items()}
    if verify_md5:
        for stem, arr in arrays.items():
            _check_idx_md5(paths[stem], stem)
    x_tr, y_tr = arrays[MNIST_FILES[0]], arrays[MNIST_FILES[1]]
    x_te, y_te = arrays[MNIST_FILES[2]], arrays[MNIST_FILES[3]]
    for stem, want in ((MNIST_FILES[0], (3, 4)), (MNIST_FILES[2], (3, 4)), (MNIST_FILES[1], (1,)), (MNIST_FILES[3], (1,))):
        got = arrays[stem].ndim
        if got not in want:
            what = "images (N, H, W[, C])" if want != (1,) else "labels (N,)"
            raise DataError(f"{paths[stem]}: holds a {got}-D IDX array of shape {arrays[stem].shape}; {stem} must hold "
                            f"{what} — are images and labels swapped?")
    if x_tr.ndim == 3:
        x_tr, x_te = x_tr[..., None], x_te[..., None]
    if len(x_tr) != len(y_tr) or len(x_te) != len(y_te):
        raise DataError(f"{folder}: image and label counts differ")
    n_cls = int(max(y_tr.max(), y_te.max())) + 1
    if mean is None:
        mean, std = _stats(x_tr)
    return Dataset(name, str(folder), x_tr, y_tr.astype(np.int64), x_te, y_te.astype(np.int64),
                   classes or [str(i) for i in range(n_cls)], tuple(mean), tuple(std))


def _check_idx_md5(path: Path, stem: str) -> None:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        digest = md5_of(f.read())
    if digest != MNIST_MD5[stem]:
        raise DataError(f"{path}: checksum mismatch (md5 {digest}, expected {MNIST_MD5[stem]})")


def _stats(x: np.ndarray):
    """Per-channel mean and std of 0..255 images on the 0..1 scale. uint8 images (every built-in reader's) are
    counted per value in slices (exact, without a float64 copy: 0.23 s against 1.1 s for MNIST's 47M pixels, 0.9 s
    against 8.5 s for 50,000 RGB 32x32 images, on a 2-core AMD EPYC)."""
    flat = x.reshape(-1, x.shape[-1])
    if x.dtype != np.uint8:
        xf = flat.astype(np.float64) / 255.0
        return tuple(float(v) for v in xf.mean(0)), tuple(float(v) for v in np.maximum(xf.std(0), 1e-6))
    levels = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for c in range(flat.shape[1]):
        column, counts = flat[:, c], np.zeros(256)
        for i in range(0, len(column), 1 << 18):          # bincount widens to int64: small slices stay in cache
            counts += np.bincount(column[i:i + (1 << 18)], minlength=256)
        mean = counts @ levels / counts.sum()
        means.append(float(mean))
        stds.append(float(max(np.sqrt(counts @ (levels - mean) ** 2 / counts.sum()), 1e-6)))
    return tuple(means), tuple(stds)


def _tree_stamp(root: Path, parts=("train", "test"), extra: str = "") -> str:
    """Cache key of a data tree (`parts` below `root`; "" for all of it): every file's path (its class folder
    included), size and mtime, so moving a file between class folders, or editing one, invalidates the decoded copy;
    `extra` keys what else made the copy (an audio front end)."""
    h = hashlib.sha256(f"{root.resolve()}{'|' + extra if extra else ''}".encode())
    for split in parts:
        base = root / split if split else root
        if not base.is_dir():
            continue
        for dirpath, _, files in sorted(os.walk(base)):
            # the path relative to root, by slicing (os.path.relpath per file was most of a cached load's 2 s)
            rel = split + dirpath[len(str(base)):] + os.sep
            lines = []
            for f in sorted(files):
                st = os.stat(dirpath + os.sep + f)
                lines.append(f"{rel}{f}|{st.st_size}|{st.st_mtime_ns}\n")
            h.update("".join(lines).encode())
    return h.hexdigest()[:16]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def _published(target: Path, suffix: str):
    """A temporary path of its own beside `target`, renamed onto it once written: a reader never sees half a file,
    and processes filling the same cache at once (workers of a grid on a fresh machine) never share a temporary."""
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())             # mkstemp's 0600 would hide a shared cache from other users
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def load_image_tree(name: str, root: Path, mean=None, std=None, channels: int | None = None,
                    immutable: bool = False) -> Dataset:
    """`root/train/<class>/*` and `root/test/<class>/*`, decoded once and cached as one .npy file per array, which
    later loads map into memory (copy-on-write) instead of reading: a consumer of the test split alone (a benchmark
    child) never reads the training images. The cache key is every file's path, size and mtime, or, for a folder
    that never changes (`immutable`: a tarball's extraction, keyed by the tarball), the folder's path alone."""
    train, test = root / "train", root / "test"
    if not train.is_dir() or not test.is_dir():
        raise DataError(f"{root}: expected train/<class>/ and test/<class>/ folders")
    classes = list_classes(train)
    stamp = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16] if immutable else _tree_stamp(root)
    cached = cache_dir() / "decoded" / f"{name}-{stamp}"
    if not (cached / ".done").is_file():
        if channels is None:
            from PIL import Image
            first = next(p for p in (train / classes[0]).iterdir())
            channels = 1 if Image.open(first).mode in ("L", "1", "I;16") else 3
        note(f"decoding images under {root} (once; cached in {cached.parent})")
        x_tr, y_tr = read_image_folder(train, classes, channels)
        x_te, y_te = read_image_folder(test, classes, channels, size=x_tr.shape[1:3])

        def fill(tmp: Path):
            for key, array in (("x_train", x_tr), ("y_train", y_tr), ("x_test", x_te), ("y_test", y_te)):
                np.save(tmp / f"{key}.npy", array)
        _publish_dir(cached, fill)
        for old in cached.parent.glob(f"{name}-*.npz"):   # the single-file format before 2026-12-05, never read now
            with contextlib.suppress(OSError):
                old.unlink()
    x_tr, y_tr, x_te, y_te = (np.asarray(np.load(cached / f"{key}.npy", mmap_mode="c"))
                              for key in ("x_train", "y_train", "x_test", "y_test"))
    if mean is None:
        mean, std = _stats(x_tr)
    return Dataset(name, str(root), x_tr, y_tr, x_te, y_te, classes, tuple(mean), tuple(std))


def _publish_dir(dest: Path, fill) -> None:
    """Fill a temporary folder beside `dest` (`fill(tmp)`) and publish it, its `.done` marker inside, by one rename.
    Processes filling the same cache at once (workers of a grid on a fresh machine) never share a temporary; one
    that finds another's folder published first keeps it (it may be in use); one left half-written is set aside."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))   # same file system: the rename is atomic
    try:
        fill(tmp)
        (tmp / ".done").touch()
        os.chmod(tmp, 0o777 & ~_umask())             # mkdtemp's 0700, as a plain mkdir would have made it
        if dest.exists() and not (dest / ".done").is_file():    # left by an interrupted run: set it aside
            stale = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.stale."))
            with contextlib.suppress(FileNotFoundError):
                os.replace(dest, stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(tmp, dest)
        except OSError:
            if not (dest / ".done").is_file():
                raise
            # another process published the same folder first; theirs may be in use, ours goes
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _extracted(tarball: Path) -> Path:
    """Extract a tarball into the cache once; return the folder holding train/test or batches."""
    digest = hashlib.sha256(f"{tarball.resolve()}|{tarball.stat().st_size}|{tarball.stat().st_mtime_ns}".encode()).hexdigest()[:16]
    dest = cache_dir() / "extracted" / f"{tarball.name.split('.')[0]}-{digest}"
    if not (dest / ".done").is_file():
        note(f"extracting {tarball} into {dest}")
        _publish_dir(dest, lambda tmp: safe_extract(tarball, tmp))
    return dest


def _find_layout(folder: Path) -> tuple[str, Path] | None:
    """Find a CIFAR-like layout at or one/two levels below `folder`."""
    candidates = [folder] + [p for p in sorted(folder.glob("*")) if p.is_dir()] + [p for p in sorted(folder.glob("*/*")) if p.is_dir()]
    for c in candidates:
        if (c / "data_batch_1").is_file() and (c / "test_batch").is_file():
            return "batches", c
        if (c / "train").is_dir() and (c / "test").is_dir():
            return "tree", c
    return None


def load_cifar_like(name: str, location: Path, mean, std) -> Dataset:
    location = Path(location)
    from_tarball = location.is_file()
    if from_tarball:
        if not (location.name.endswith((".tar.gz", ".tgz", ".tar"))):
            raise DataError(f"{location}: expected a folder or a .tar.gz for {name}")
        location = _extracted(location)
    found = _find_layout(location)
    if found is None:
        tarballs = sorted(location.glob("*.tar.gz")) + sorted(location.glob("*.tgz"))
        if tarballs:
            return load_cifar_like(name, tarballs[0], mean, std)
        raise DataError(f"{location}: no CIFAR python batches, train/test image tree or tarball found")
    kind, folder = found
    if kind == "batches":
        x_tr, y_tr, x_te, y_te = read_cifar_batches(folder)
        return Dataset(name, str(folder), x_tr, y_tr, x_te, y_te, list(CIFAR10_CLASSES), tuple(mean), tuple(std))
    return load_image_tree(name, folder, mean, std, channels=3, immutable=from_tarball)


# ---------------------------------------------------------------- downloads (online users)
def _fetch(url: str, timeout: float = 20.0) -> bytes:
    req = urllib.request.Request(url, headers={"User-Agent": "edgepack"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read()


def download_mnist(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for stem in MNIST_FILES:
        target = dest / f"{stem}.gz"
        if target.is_file():
            continue
        last = None
        for mirror in MNIST_MIRRORS:
            try:
                data = _fetch(mirror + stem + ".gz")
                if md5_of(gzip.decompress(data)) != MNIST_MD5[stem]:
                    raise DataError(f"{mirror}{stem}.gz: checksum mismatch")
                with _published(target, ".part") as tmp:
                    tmp.write_bytes(data)
                break
            except Exception as e:  # network errors of every kind: try the next mirror
                last = e
        else:
            raise DataError(f"download of MNIST failed ({last})")
    return dest


def download_cifar10(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / "cifar-10-python.tar.gz"
    if not target.is_file():
        data = _fetch(CIFAR10_URL, timeout=60)
        if md5_of(data) != CIFAR10_MD5:
            raise DataError(f"{CIFAR10_URL}: checksum mismatch")
        with _published(target, ".part") as tmp:
            tmp.write_bytes(data)
    return dest


# ---------------------------------------------------------------- fallbacks bundled in a dependency
def sklearn_digits_as_mnist() -> Dataset:
    """scikit-learn's bundled 8x8 digits (1,797 images), upsampled to 28x28 MNIST-like uint8."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("no MNIST data found and scikit-learn (for the bundled fallback) is not installed") from None
    d = load_digits()
    img = (d.images / 16.0 * 255.0).clip(0, 255).astype(np.uint8)           # (1797, 8, 8), ink bright
    from PIL import Image
    big = np.stack([np.asarray(Image.fromarray(im).resize((20, 20), Image.BILINEAR)) for im in img])
    x = np.zeros((len(big), 28, 28, 1), np.uint8)
    x[:, 4:24, 4:24, 0] = big                                                 # MNIST: 20x20 digit in a 28x28 frame
    y = d.target.astype(np.int64)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(y))
    te, tr = np.sort(idx[:360]), np.sort(idx[360:])
    return Dataset("mnist", "scikit-learn bundled 8x8 digits (offline fallback, upsampled to 28x28)",
                   x[tr], y[tr], x[te], y[te], [str(i) for i in range(10)], (0.1307,), (0.3081,),
                   notes=["offline fallback: not real MNIST"], fallback=True)


# ---------------------------------------------------------------- registry of named data sets
@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    load_dir: Callable[[Path], Dataset]                 # read a located folder / file
    subdirs: tuple[str, ...]                            # names to look for below a data root
    download: Callable[[Path], Path] | None = None
    fallback: Callable[[], Dataset] | None = None
    fallback_text: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)
    derive: Callable[[Path | None], Dataset] | None = None   # made offline from another set (data folder or None)


def _mnist_dir(p: Path) -> Dataset:
    ds = load_idx_dir("mnist", p, mean=(0.1307,), std=(0.3081,))   # the published statistics every MNIST tutorial uses
    if not _is_canonical_mnist(ds):
        ds.mean, ds.std = _stats(ds.x_train)
        ds.notes.append("IDX files named mnist that are not the canonical MNIST: their own mean/std")
        note(f"{p}: these IDX files are not the canonical MNIST (content differs): normalising with their own "
             f"mean {ds.mean[0]:.4f} / std {ds.std[0]:.4f}, not MNIST's")
    return ds


MNIST_TEST_SHA256 = "a0863a96c44e5666edbb30c4071ee79ca0514c621e6349c5967fc78e7305c891"  # Dataset.test_sha256() of the canonical MNIST test set


def _is_canonical_mnist(ds: Dataset) -> bool:
    return ds.x_test.shape == (10000, 28, 28, 1) and ds.test_sha256() == MNIST_TEST_SHA256


def _cifar_dir(p: Path) -> Dataset:
    return load_cifar_like("cifar10", p, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


CANVAS = {"n_train": 6000, "n_test": 1000, "size": 96, "seed": 0}     # the derived detection set, as published


def _canvas_key(mnist_test_sha: str) -> str:
    return hashlib.sha256(f"{mnist_test_sha}|{sorted(CANVAS.items())}".encode()).hexdigest()[:12]


def _canvas_dir(p: Path):
    """A YOLO-format folder, or one holding digit-canvas/, read as a detection set; else `p` locates MNIST to derive
    the set from."""
    from edgepack.toolkit.data.detection import is_yolo_folder, load_yolo
    for c in (p, p / "digit-canvas"):
        if is_yolo_folder(c):
            return load_yolo(c, name="digit-canvas")
    return _derive_canvas(p)


def _derive_canvas(mnist_dir: Path | None):
    """The derived detection set (real MNIST digits on 96 px canvases, `detection.make_digit_canvases`), made once
    per MNIST copy and cached; every record names it and its content hash."""
    from edgepack.toolkit.data.detection import load_yolo, make_digit_canvases
    canonical = cache_dir() / "derived" / f"digit-canvas-{_canvas_key(MNIST_TEST_SHA256)}"
    if mnist_dir is None and (canonical / ".done").is_file():     # made before from the canonical MNIST: no search
        return load_yolo(canonical, name="digit-canvas")
    try:
        mnist = load_dataset("mnist", mnist_dir, allow_fallback=False, quiet=True)
    except DataError:
        raise DataError("digit-canvas is made from real MNIST, and none was found: pass --data-dir with MNIST's IDX "
                        "files (or its folder) or set EDGEPACK_DATA") from None
    dest = cache_dir() / "derived" / f"digit-canvas-{_canvas_key(mnist.test_sha256())}"
    if not (dest / ".done").is_file():
        note(f"digit-canvas: making the derived detection set from {mnist.source} into {dest} (once)")
        _publish_dir(dest, lambda tmp: make_digit_canvases(mnist, tmp, **CANVAS))
    return load_yolo(dest, name="digit-canvas")


SPEECH_COMMANDS_URL = "https://storage.googleapis.com/download.tensorflow.org/data/speech_commands_v0.02.tar.gz"
SPEECH_COMMANDS_SHA256 = "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58"   # torchaudio's, 2.3 GB


def load_speech_set(name: str, location: Path, seed: int = 0):
    """A Speech Commands v2 folder (or its tarball) read into MLPerf Tiny's 12 classes and turned into the front end's
    features once (cached like decoded images; the test clips kept beside them): `edgepack.toolkit.data.audio`."""
    import json
    from edgepack.toolkit.data.audio import AudioSet, MfccFrontEnd, feature_stats, is_speech_folder, read_speech_folder
    location = Path(location)
    if location.is_file():
        location = _extracted(location)
    root = next((c for c in [location] + sorted(p for p in location.glob("*") if p.is_dir()) if is_speech_folder(c)), None)
    if root is None and sorted(location.glob("*.tar.gz")):
        return load_speech_set(name, sorted(location.glob("*.tar.gz"))[0], seed)
    if root is None:
        raise DataError(f"{location}: not a Speech Commands folder (a folder of WAVs per word, testing_list.txt, "
                        "validation_list.txt)")
    fe = MfccFrontEnd()
    cached = cache_dir() / "decoded" / f"{name}-{_tree_stamp(root, ('',), f'{fe.to_dict()}|{seed}')}"
    if not (cached / ".done").is_file():
        note(f"reading the clips under {root} and computing {fe.name} features (once; cached in {cached.parent})")
        read = read_speech_folder(root, seed=seed, progress=lambda i, n: note(f"  {i:,} / {n:,} clips read"))
        (tr, ytr), (va, yva), (te, yte) = (read["splits"][k] for k in ("train", "validation", "test"))

        def fill(tmp: Path):
            np.save(tmp / "x_train.npy", fe(np.concatenate([tr, va]))[..., None])
            np.save(tmp / "y_train.npy", np.concatenate([ytr, yva]))
            np.save(tmp / "val_mask.npy", np.arange(len(tr) + len(va)) >= len(tr))
            np.save(tmp / "x_test.npy", fe(te)[..., None])
            np.save(tmp / "y_test.npy", yte)
            np.save(tmp / "clips_test.npy", te)
            (tmp / "meta.json").write_text(json.dumps({"classes": read["classes"], "notes": read["notes"]}))
        _publish_dir(cached, fill)
    arrays = {k: np.asarray(np.load(cached / f"{k}.npy", mmap_mode="c"))
              for k in ("x_train", "y_train", "val_mask", "x_test", "y_test", "clips_test")}
    meta = json.loads((cached / "meta.json").read_text())
    mean, std = feature_stats(arrays["x_train"])
    return AudioSet(name, str(root), arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
                    meta["classes"], mean, std, notes=list(meta["notes"]), scale=1.0, front_end=fe.to_dict(),
                    clips_test=arrays["clips_test"], val_mask=arrays["val_mask"])


def download_speech_commands(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / "speech_commands_v0.02.tar.gz"
    if not target.is_file():
        with _published(target, ".part") as tmp:
            h = hashlib.sha256()
            req = urllib.request.Request(SPEECH_COMMANDS_URL, headers={"User-Agent": "edgepack"})
            with urllib.request.urlopen(req, timeout=60) as r, open(tmp, "wb") as f:
                while chunk := r.read(1 << 20):
                    h.update(chunk)
                    f.write(chunk)
            if h.hexdigest() != SPEECH_COMMANDS_SHA256:
                raise DataError(f"{SPEECH_COMMANDS_URL}: checksum mismatch (sha256 {h.hexdigest()[:16]}...)")
    return target


def _speech_dir(p: Path):
    return load_speech_set("speech-commands", p)


def _synth_key() -> str:
    from edgepack.toolkit.data.speech_synth import SYNTH
    return hashlib.sha256(f"{sorted(SYNTH.items())}|espeak-ng".encode()).hexdigest()[:12]


def _synth_dir(p: Path):
    """A folder holding the synthetic set (or one named synthetic-speech/); else the set is made in the cache."""
    from edgepack.toolkit.data.audio import is_speech_folder
    for c in (p, p / "synthetic-speech"):
        if is_speech_folder(c):
            return load_speech_set("synthetic-speech", c)
    return _derive_speech(None)


def _derive_speech(_unused: Path | None):
    """The synthetic keyword set (espeak-ng, `edgepack.toolkit.data.speech_synth`), made once and cached; every record names
    it `synthetic-speech` and its content hash."""
    from edgepack.toolkit.data.speech_synth import make_synthetic_speech
    dest = cache_dir() / "derived" / f"synthetic-speech-{_synth_key()}"
    if not (dest / ".done").is_file():
        note(f"synthetic-speech: speaking the keyword set with espeak-ng into {dest} (once, about a minute)")
        _publish_dir(dest, lambda tmp: make_synthetic_speech(
            tmp, progress=lambda i, n: note(f"  {i:,} / {n:,} clips spoken")))
    return load_speech_set("synthetic-speech", dest)


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec("mnist", "MNIST handwritten digits, 28x28x1, 10 classes (IDX files)", _mnist_dir,
                         ("mnist", "MNIST", "MNIST/raw"), download_mnist, sklearn_digits_as_mnist,
                         "scikit-learn's bundled 8x8 digits"),
    "cifar10": DatasetSpec("cifar10", "CIFAR-10, 32x32x3, 10 classes (python batches or image-folder tree/tarball)",
                           _cifar_dir, ("cifar10", "cifar-10-batches-py", "cifar10-jpeg.tar.gz", "cifar-10-python.tar.gz"),
                           download_cifar10),
    "digit-canvas": DatasetSpec("digit-canvas", "object detection, DERIVED offline: real MNIST digits, 1-5 per 96x96 "
                                "canvas, YOLO format (made from MNIST on first use; not a detection benchmark)",
                                _canvas_dir, ("digit-canvas",), derive=_derive_canvas),
    "speech-commands": DatasetSpec("speech-commands", "Google Speech Commands v2 keyword spotting, MLPerf Tiny's 12 "
                                   "classes (10 words, _silence_, _unknown_), 49x10 MFCC features of 1 s 16 kHz clips",
                                   _speech_dir, ("speech_commands_v0.02", "speech-commands", "speech_commands",
                                                 "speech_commands_v0.02.tar.gz"), download_speech_commands),
    "synthetic-speech": DatasetSpec("synthetic-speech", "keyword spotting, SYNTHETIC speech made offline by espeak-ng "
                                    "in the Speech Commands layout (MLPerf Tiny's 12 classes; not Speech Commands)",
                                    _synth_dir, ("synthetic-speech",), derive=_derive_speech),
}


def _locate(spec: DatasetSpec, root: Path) -> Path | None:
    for sub in spec.subdirs:
        p = root / sub
        if p.exists():
            return p
    return None


TEST_SET_META = "edgepack-test-set.json"   # beside the IDX files of a test set `edgepack bench --device` sends


def write_test_set(ds: Dataset, folder: Path) -> dict:
    """A classification data set's test split as gzipped IDX files plus its name, classes and preprocessing: what
    `edgepack bench --device` sends, so a device needs no data folder. The training split is one image per class
    (IDX readers want one; nothing on the device reads it). Returns the metadata (with the test set's sha256)."""
    from edgepack.toolkit.data.idx import write_idx
    x_te, y_te = np.asarray(ds.x_test), np.asarray(ds.y_test)
    if x_te.dtype != np.uint8 or x_te.ndim != 4 or y_te.ndim != 1 or int(y_te.max(initial=0)) > 255:
        raise DataError(f"{ds.name}: only image classification test sets (uint8 images, < 256 classes) travel to a "
                        "device; bench this data set on the device with its own copy (--data-dir there)")
    folder.mkdir(parents=True, exist_ok=True)
    first = [int(np.flatnonzero(ds.y_train == c)[0]) for c in np.unique(ds.y_train)]
    x_tr, y_tr = ds.x_train[first], ds.y_train[first]
    for stem, arr in zip(MNIST_FILES, (x_tr, y_tr, x_te, y_te)):
        write_idx(folder / f"{stem}.gz", arr.astype(np.uint8) if arr.ndim == 1 else arr)
    meta = {"name": ds.name, "source": ds.source, "classes": list(ds.classes), "mean": list(ds.mean),
            "std": list(ds.std), "scale": ds.scale, "test_sha256": ds.test_sha256(), "fallback": ds.fallback}
    (folder / TEST_SET_META).write_text(json.dumps(meta, indent=1))
    return meta


def load_test_set(folder: Path) -> Dataset:
    """A test set written by `write_test_set` (on the device), checked against the hash it travelled with."""
    meta = json.loads((folder / TEST_SET_META).read_text())
    ds = load_idx_dir(meta["name"], folder, mean=tuple(meta["mean"]), std=tuple(meta["std"]), classes=meta["classes"])
    ds.scale, ds.fallback = float(meta["scale"]), bool(meta.get("fallback"))
    ds.source = f"{meta['source']} (test set sent by edgepack bench --device)"
    if ds.test_sha256() != meta["test_sha256"]:
        raise DataError(f"{folder}: the test set does not match the hash it was sent with (a damaged copy)")
    return ds


def _looks_like_idx(p: Path) -> bool:
    return find_idx(p, MNIST_FILES[0]) is not None


STAND_INS = {"digits": "mnist"}     # explicit names for the offline stand-ins: `--data digits`


def recorded_stand_in(dataset_record: dict | None) -> bool:
    """Whether an artifact record's `dataset` says it was made on an offline stand-in (older records: by its note)."""
    d = dataset_record or {}
    return bool(d.get("fallback") or "offline fallback" in " ".join(d.get("notes") or []))


def recorded_folder(dataset_record: dict | None) -> str | None:
    """The folder or tarball an artifact record's `dataset` was read from, while it still exists (never a stand-in's):
    how later steps find a data set by its record, a custom-named one included."""
    d = dataset_record or {}
    src = d.get("source")
    return src if src and not recorded_stand_in(d) and Path(src).exists() else None


def stand_in_name(name: str) -> str:
    """'mnist' -> 'digits': the name that asks for the stand-in of a data set explicitly."""
    return next((k for k, v in STAND_INS.items() if v == name), name)


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, *, allow_download: bool = True,
                 allow_fallback: bool = True, quiet: bool = False) -> Dataset:
    """Load a named data set (or a folder of IDX files / an image-folder tree under any name), say on stderr
    which data it is, and refuse data no classifier can use. `allow_fallback=False` (bench, export) never
    substitutes the offline stand-in for a missing data set: it must be asked for by name (`digits`)."""
    if name in STAND_INS:
        ds = DATASETS[STAND_INS[name]].fallback()
    else:
        ds = _load_dataset(name, data_dir, allow_download=allow_download, allow_fallback=allow_fallback)
    present = ds.present_classes()
    if ds.num_classes < 2 or len(present) < 2:
        raise DataError(f"{ds.source}: {len(present)} class found; a classifier needs at least two")
    if not quiet:
        note(ds.describe())
    return ds


def _load_dataset(name: str, data_dir, *, allow_download: bool, allow_fallback: bool) -> Dataset:
    spec = DATASETS.get(name)
    if data_dir is not None:
        d = Path(data_dir)
        if not d.exists():
            raise DataError(f"{d}: data directory does not exist")
        if d.is_dir() and (d / TEST_SET_META).is_file():
            return load_test_set(d)
        if spec is not None:
            target = d if (d.is_file() or spec.name != "mnist" or _looks_like_idx(d)) else (_locate(spec, d) or d)
            return spec.load_dir(target)
        if d.is_dir() and _looks_like_idx(d):
            return load_idx_dir(name, d)
        from edgepack.toolkit.data.detection import coco_files, is_yolo_folder, load_coco, load_yolo
        if d.is_dir() and is_yolo_folder(d):
            return load_yolo(d, name=name)
        if d.is_dir() and coco_files(d):
            return load_coco(*coco_files(d), name=name)
        from edgepack.toolkit.data.audio import is_speech_folder
        if d.is_dir() and is_speech_folder(d):
            return load_speech_set(name, d)
        if d.is_dir() and (d / "train").is_dir():
            return load_image_tree(name, d)
        raise DataError(f"{d}: unknown data set {name!r} and the folder holds neither IDX files, train/<class>/ images, "
                        "a YOLO set (images/train, labels/train), a COCO one (annotations/*train*.json) nor "
                        "a Speech Commands one (a folder of WAVs per word, testing_list.txt) "
                        f"(built-in: {', '.join(DATASETS)})")
    if spec is None:
        raise DataError(f"unknown data set {name!r}: use one of {', '.join(DATASETS)} or pass --data-dir with IDX files or train/<class>/ images")
    env = os.environ.get("EDGEPACK_DATA")
    if env and not Path(env).is_dir():
        raise DataError(f"EDGEPACK_DATA={env}: no such folder (it names the folder holding mnist/, cifar10/, ...); "
                        "fix it or unset it")
    if env:
        p = _locate(spec, Path(env))
        if p is not None:
            return spec.load_dir(p)
    if spec.derive is not None:
        return spec.derive(None)
    cached = cache_dir() / "data" / spec.name
    if cached.exists() and any(cached.iterdir()):
        try:
            return spec.load_dir(cached)
        except DataError as e:
            note(f"cached copy unusable ({e}); trying download")
    errors = []
    allow_download = allow_download and os.environ.get("EDGEPACK_OFFLINE", "") in ("", "0")
    if allow_download and spec.download is not None:
        try:
            note(f"{name}: not found locally, downloading into {cached}")
            return spec.load_dir(spec.download(cached))
        except Exception as e:
            errors.append(f"download failed: {first_line(e, 160)}")
    if allow_fallback and spec.fallback is not None:
        ds = spec.fallback()
        note(f"{name}: no local copy ({'; '.join(errors) or 'download disabled'}); "
             f"USING OFFLINE FALLBACK: {ds.source}. Pass --data-dir or set EDGEPACK_DATA for the real data set.")
        return ds
    stand_in = stand_in_name(name)
    hint = f", or --data {stand_in} for the offline stand-in ({spec.fallback_text})" if stand_in != name else ""
    raise DataError(f"{name}: no local copy found ({'; '.join(errors) or 'download disabled: EDGEPACK_OFFLINE'}); "
                    f"pass --data-dir DIR or set EDGEPACK_DATA{hint}")

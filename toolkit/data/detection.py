"""Object-detection data (groundwork for the detection task): the two formats users have, YOLO and COCO JSON, read into
one in-memory form, letterboxed to the model's square input with the boxes mapped; and a derived set made offline from
real MNIST digits on canvases, written in YOLO format by `make_digit_canvases` (no detection set can be downloaded on
this project's machines; every figure from it must say so).

In memory (`DetectionSet`): uint8 images (N, S, S, C) and, as its labels `y_train` / `y_test`, per image an array
(k, 5) of `[class, x1, y1, x2, y2]` in pixels of the letterboxed image (a NumPy object array, so that every consumer
of a data set indexes and batches them as it does class labels): the layout `edgepack.toolkit.tasks.detection_map` scores. Bad input is one line naming the
file (and line): a label outside its image, a class id beyond the class list, a malformed line, a COCO annotation whose
image id is not among its images. An empty YOLO label file is an image without objects (YOLO's convention), counted.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgepack.toolkit.data.dataset import ImageSet, stratified_indices
from edgepack.toolkit.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass
class DetectionSet(ImageSet):
    name: str
    source: str
    x_train: np.ndarray                     # uint8 (N, S, S, C), letterboxed
    y_train: np.ndarray                     # object (N,): per image (k, 5) float32: class, x1, y1, x2, y2 (pixels)
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    notes: list[str] = field(default_factory=list)
    scale: float = 1 / 255.0
    fallback: bool = False                  # never an offline stand-in (the derived set says what it is by its name)

    def __post_init__(self):          # lists of per-image boxes become object arrays; a numeric array (a training
        # view's dense targets, `Task.training_targets`) stays as it is
        self.y_train, self.y_test = (y if isinstance(y, np.ndarray) and y.dtype != object else boxes_array(y)
                                     for y in (self.y_train, self.y_test))

    @property
    def boxes_train(self) -> np.ndarray:
        return self.y_train

    @property
    def boxes_test(self) -> np.ndarray:
        return self.y_test

    def label_bytes(self, y: np.ndarray) -> bytes:
        return b"".join(np.ascontiguousarray(b, np.float32).tobytes() + b"|" for b in y)

    def classes_in(self, y: np.ndarray) -> np.ndarray:
        return np.unique(np.concatenate([b[:, 0] for b in y] or [np.zeros(0)]).astype(int))

    def _strata(self, boxes: list) -> np.ndarray:
        """Each image's most frequent class (-1: no object): what subsets are stratified by."""
        return np.array([int(np.bincount(b[:, 0].astype(int)).argmax()) if len(b) else -1 for b in boxes])

    def test_subset(self, n: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        idx = stratified_indices(self._strata(self.y_test), n, seed)
        return self.x_test[idx], self.y_test[idx]

    def calibration(self, n: int = 200, seed: int = 0, layout: str = "NHWC") -> np.ndarray:
        idx = stratified_indices(self._strata(self.y_train), n, seed + 1)
        return self.normalize(self.x_train[idx], layout)

    def describe(self) -> str:
        objects = sum(len(b) for b in self.y_test)
        return (f"data: {self.name} from {self.source}: {len(self.x_train):,} train / {len(self.x_test):,} test images "
                f"({objects:,} test objects), {self.num_classes} classes, test sha256 {self.test_sha256()[:12]}")


def boxes_array(boxes) -> np.ndarray:
    """Per-image box arrays as a NumPy object array (k, 5) float32 each: indexable like class labels."""
    out = np.empty(len(boxes), object)
    for i, b in enumerate(boxes):
        out[i] = np.asarray(b, np.float32).reshape(-1, 5)
    return out


# ---------------------------------------------------------------------------------------------- letterbox
def letterbox(img: np.ndarray, size: int, fill: int = 0) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Resize (H, W, C) uint8 to fit size x size keeping its aspect ratio (bilinear), padded evenly with `fill`:
    (image, scale, (pad_x, pad_y)); a pixel (x, y) of the source lands at (x * scale + pad_x, y * scale + pad_y)."""
    from PIL import Image
    h, w = img.shape[:2]
    s = size / max(h, w)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    pil = Image.fromarray(img[..., 0] if img.shape[2] == 1 else img)
    resized = np.asarray(pil.resize((nw, nh), Image.BILINEAR) if (nw, nh) != (w, h) else pil)
    resized = resized[..., None] if resized.ndim == 2 else resized
    out = np.full((size, size, img.shape[2]), fill, np.uint8)
    px, py = (size - nw) // 2, (size - nh) // 2
    out[py:py + nh, px:px + nw] = resized
    return out, s, (px, py)


def map_boxes(boxes: np.ndarray, scale: float, pad: tuple[int, int]) -> np.ndarray:
    """[class, x1, y1, x2, y2] in source pixels -> letterboxed pixels."""
    out = np.asarray(boxes, np.float32).copy()
    out[:, [1, 3]] = out[:, [1, 3]] * scale + pad[0]
    out[:, [2, 4]] = out[:, [2, 4]] * scale + pad[1]
    return out


def unmap_boxes(boxes: np.ndarray, scale: float, pad: tuple[int, int]) -> np.ndarray:
    """The inverse of `map_boxes`: predictions on the letterboxed input back to the source image's pixels."""
    out = np.asarray(boxes, np.float32).copy()
    out[:, [1, 3]] = (out[:, [1, 3]] - pad[0]) / scale
    out[:, [2, 4]] = (out[:, [2, 4]] - pad[1]) / scale
    return out


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image
    try:
        with Image.open(path) as im:
            a = np.asarray(im.convert("L") if im.mode in ("L", "1", "I;16") else im.convert("RGB"))
    except OSError as e:
        raise DataError(f"{path}: not a readable image ({e})") from None
    return a[..., None] if a.ndim == 2 else a


def _stack(images: list[np.ndarray], where: str) -> np.ndarray:
    channels = {im.shape[2] for im in images}
    if len(channels) > 1:
        raise DataError(f"{where}: images mix {sorted(channels)} channels; give one kind (all gray or all RGB)")
    return np.stack(images) if images else np.zeros((0, 1, 1, 1), np.uint8)


# ---------------------------------------------------------------------------------------------- YOLO
def _yolo_classes(root: Path) -> list[str]:
    if (root / "classes.txt").is_file():
        return [line.strip() for line in (root / "classes.txt").read_text().splitlines() if line.strip()]
    yaml = root / "data.yaml"
    if yaml.is_file():                       # `names: [a, b]` or `names:` followed by `  0: a` lines (Ultralytics)
        lines = yaml.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.strip().startswith("names:"):
                rest = line.split(":", 1)[1].strip()
                if rest.startswith("["):
                    return [n.strip().strip("'\"") for n in rest.strip("[]").split(",") if n.strip()]
                names = []
                for sub in lines[i + 1:]:
                    if not sub.startswith((" ", "\t")) or ":" not in sub:
                        break
                    names.append(sub.split(":", 1)[1].strip().strip("'\""))
                return names
    raise DataError(f"{root}: no classes.txt or data.yaml with names: (the class list of a YOLO data set)")


def _yolo_split(root: Path, split: str, classes: list[str], size: int | None):
    img_dir, lab_dir = root / "images" / split, root / "labels" / split
    files = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if img_dir.is_dir() else []
    if not files:
        raise DataError(f"{img_dir}: no images ({', '.join(IMAGE_SUFFIXES)})")
    if not lab_dir.is_dir():
        raise DataError(f"{lab_dir}: no labels folder (YOLO format: labels/{split}/<image stem>.txt beside images/{split}/)")
    images, boxes, empty = [], [], 0
    for f in files:
        img = _read_image(f)
        h, w = img.shape[:2]
        lab = lab_dir / (f.stem + ".txt")
        rows = []
        text = lab.read_text() if lab.is_file() else ""
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                c, cx, cy, bw, bh = int(parts[0]), *map(float, parts[1:5])
                if len(parts) != 5:
                    raise ValueError
            except (ValueError, IndexError):
                raise DataError(f"{lab}:{n}: expected 'class cx cy w h' (5 numbers), got {line.strip()!r}") from None
            if not 0 <= c < len(classes):
                raise DataError(f"{lab}:{n}: class id {c} is not in the {len(classes)} classes (0..{len(classes) - 1})")
            x1, y1, x2, y2 = cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2
            if bw <= 0 or bh <= 0 or min(x1, y1) < -1e-6 or max(x2, y2) > 1 + 1e-6:
                raise DataError(f"{lab}:{n}: box {cx:g} {cy:g} {bw:g} {bh:g} is not inside the image (normalised "
                                "centre, width and height must keep it within 0..1)")
            rows.append([c, x1 * w, y1 * h, x2 * w, y2 * h])
        empty += not rows
        size = size or max(h, w)                    # not given: the first image's longer side
        out, s, pad = letterbox(img, size)
        images.append(out)
        boxes.append(map_boxes(np.array(rows, np.float32).reshape(-1, 5), s, pad))
    if empty == len(files):
        raise DataError(f"{lab_dir}: none of its {len(files)} label files holds an object (all empty or missing): "
                        "not a detection set's labels")
    return _stack(images, str(img_dir)), boxes, empty


def is_yolo_folder(root: Path) -> bool:
    return (root / "images" / "train").is_dir() and (root / "labels").is_dir()


def load_yolo(root: str | Path, size: int | None = None, name: str | None = None) -> DetectionSet:
    """A YOLO-format set: `images/{train,val|test}/*`, `labels/<split>/<stem>.txt` (`class cx cy w h`, normalised),
    class names in classes.txt or data.yaml; letterboxed to size x size (default: the first image's longer side).
    A missing or empty label file is an image without objects (YOLO's convention for background images), counted in
    the notes; a split where every label file is empty is refused (a wrong labels folder, not a set of backgrounds)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    classes = _yolo_classes(root)
    test_split = next((s for s in ("test", "val") if (root / "images" / s).is_dir()), "val")
    x_tr, b_tr, e_tr = _yolo_split(root, "train", classes, size)
    x_te, b_te, e_te = _yolo_split(root, test_split, classes, size or x_tr.shape[1])
    return _finish(name or root.name, str(root), x_tr, b_tr, x_te, b_te, classes,
                   [f"YOLO format; test split '{test_split}'; images without objects: {e_tr} train, {e_te} test"])


# ---------------------------------------------------------------------------------------------- COCO
def _coco_split(json_path: Path, images_dir: Path, size: int, classes: list[str] | None):
    try:
        doc = json.loads(Path(json_path).read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{json_path}: not a readable COCO JSON file ({e})") from None
    cats = sorted(doc.get("categories") or [], key=lambda c: c["id"])
    names = [c.get("name", str(c["id"])) for c in cats]
    if classes is not None and names != classes:
        raise DataError(f"{json_path}: categories {names} differ from the training file's {classes}")
    cat_index = {c["id"]: i for i, c in enumerate(cats)}
    imgs = {im["id"]: im for im in doc.get("images") or []}
    per_image: dict = {i: [] for i in imgs}
    for a in doc.get("annotations") or []:
        if a.get("image_id") not in imgs:
            raise DataError(f"{json_path}: annotation {a.get('id')} names image id {a.get('image_id')}, which is not "
                            "among its images")
        if a.get("category_id") not in cat_index:
            raise DataError(f"{json_path}: annotation {a.get('id')} has category {a.get('category_id')}, not among "
                            "its categories")
        if a.get("iscrowd"):
            continue
        x, y, w, h = a["bbox"]
        im = imgs[a["image_id"]]
        if w <= 0 or h <= 0 or x < -1e-6 or y < -1e-6 or x + w > im["width"] + 1e-6 or y + h > im["height"] + 1e-6:
            raise DataError(f"{json_path}: annotation {a.get('id')}: box {a['bbox']} is not inside its "
                            f"{im['width']}x{im['height']} image")
        per_image[a["image_id"]].append([cat_index[a["category_id"]], x, y, x + w, y + h])
    images, boxes = [], []
    for i in sorted(imgs):
        img = _read_image(images_dir / imgs[i]["file_name"])
        size = size or max(img.shape[:2])
        out, s, pad = letterbox(img, size)
        images.append(out)
        boxes.append(map_boxes(np.array(per_image[i], np.float32).reshape(-1, 5), s, pad))
    return _stack(images, str(images_dir)), boxes, names


def coco_files(root: Path) -> tuple[Path, Path, Path] | None:
    """(train json, test json, images folder) of a folder laid out as COCO's: annotations/*train*.json and one
    *val* or *test* json, images under images/ (or the folder itself); None when it is not laid out so."""
    ann = root / "annotations"
    if not ann.is_dir():
        return None
    jsons = sorted(ann.glob("*.json"))
    train = [p for p in jsons if "train" in p.name]
    test = [p for p in jsons if "test" in p.name] or [p for p in jsons if "val" in p.name]
    if len(train) != 1 or len(test) != 1:
        raise DataError(f"{ann}: expected one *train*.json and one *val*.json or *test*.json (COCO layout), found "
                        f"{', '.join(p.name for p in jsons) or 'none'}")
    return train[0], test[0], (root / "images" if (root / "images").is_dir() else root)


def load_coco(train_json: str | Path, test_json: str | Path, images_dir: str | Path, size: int | None = None,
              name: str = "coco-json") -> DetectionSet:
    """A COCO-JSON set: one annotation file per split (`images`, `annotations` with xywh `bbox`, `categories`),
    image files under `images_dir` (by their `file_name`); crowd annotations are left out, as COCO's evaluation does."""
    x_tr, b_tr, classes = _coco_split(Path(train_json), Path(images_dir), size, None)
    x_te, b_te, _ = _coco_split(Path(test_json), Path(images_dir), size or x_tr.shape[1], classes)
    return _finish(name, str(images_dir), x_tr, b_tr, x_te, b_te, classes, ["COCO JSON format"])


def _finish(name, source, x_tr, b_tr, x_te, b_te, classes, notes) -> DetectionSet:
    if not classes:
        raise DataError(f"{source}: no classes")
    xf = x_tr.reshape(-1, x_tr.shape[-1]).astype(np.float64) / 255.0
    return DetectionSet(name, source, x_tr, b_tr, x_te, b_te, list(classes), tuple(xf.mean(0)), tuple(xf.std(0) + 1e-8),
                        notes)


# ---------------------------------------------------------------------------------------------- the derived set
def make_digit_canvases(mnist, out: str | Path, n_train: int = 2000, n_test: int = 500, size: int = 96, seed: int = 0,
                        max_objects: int = 5, digit_px: tuple[int, int] = (14, 40)) -> dict:
    """Real MNIST digits on black size x size canvases, 1..max_objects per image, each scaled to digit_px (min, max)
    pixels and placed at random where it overlaps earlier ones by IoU <= 0.2; seeded; written in YOLO format (images,
    labels, classes.txt) with `edgepack_dataset.json` recording how it was made and its content hash. Training
    canvases take MNIST's training digits, test canvases its test digits. Returns that record."""
    from PIL import Image

    from edgepack.toolkit.tasks.detection_map import box_iou
    out = Path(out)
    rng = np.random.default_rng(seed)
    h = hashlib.sha256()
    counts = {}
    for split, n, xs, ys in (("train", n_train, mnist.x_train, mnist.y_train), ("test", n_test, mnist.x_test, mnist.y_test)):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        objects = 0
        for i in range(n):
            canvas = np.zeros((size, size), np.uint8)
            placed, lines = [], []
            for _ in range(int(rng.integers(1, max_objects + 1))):
                j = int(rng.integers(len(ys)))
                hi = min(digit_px[1], size)                    # a small canvas caps the digit at its own size
                px = int(rng.integers(min(digit_px[0], hi), hi + 1))
                digit = np.asarray(Image.fromarray(xs[j][..., 0]).resize((px, px), Image.BILINEAR))
                rows, cols = np.nonzero(digit > 30)
                if not len(rows):
                    continue
                for _try in range(20):
                    x0, y0 = int(rng.integers(0, size - px + 1)), int(rng.integers(0, size - px + 1))
                    box = np.array([[x0 + cols.min(), y0 + rows.min(), x0 + cols.max() + 1, y0 + rows.max() + 1]], float)
                    if not placed or box_iou(box, np.array(placed)).max() <= 0.2:
                        break
                else:
                    continue
                canvas[y0:y0 + px, x0:x0 + px] = np.maximum(canvas[y0:y0 + px, x0:x0 + px], digit)
                placed.append(box[0])
                x1, y1, x2, y2 = box[0]
                lines.append(f"{int(ys[j])} {(x1 + x2) / 2 / size:.6f} {(y1 + y2) / 2 / size:.6f} "
                             f"{(x2 - x1) / size:.6f} {(y2 - y1) / size:.6f}")
            stem = f"{split}_{i:06d}"
            Image.fromarray(canvas).save(out / "images" / split / f"{stem}.png")
            (out / "labels" / split / f"{stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
            h.update(canvas.tobytes())
            h.update("\n".join(lines).encode())
            objects += len(lines)
        counts[split] = {"images": n, "objects": objects}
    (out / "classes.txt").write_text("\n".join(mnist.classes) + "\n")
    record = {"derived_from": f"{mnist.name} ({mnist.source}), test sha256 {mnist.test_sha256()[:12]}",
              "what": "real MNIST digits on black canvases (a derived set made offline, not a detection benchmark)",
              "size": size, "seed": seed, "max_objects": max_objects, "digit_px": list(digit_px), "splits": counts,
              "sha256": h.hexdigest()}
    (out / "edgepack_dataset.json").write_text(json.dumps(record, indent=2))
    return record

"""Object detection: boxes and classes per image, judged by COCO's mAP@0.5:0.95 (and mAP@0.5).

Every format and runtime is compared on its raw model outputs: decoding and non-maximum suppression run here, in
NumPy, the same code for every file (and on a device's runtime-only install), and their time is measured and reported
beside the model's, never hidden in it. Two output layouts decode:

- `grid` (edgepack's own detectors, e.g. `tiny-det`): one output (N, cells, 5 + classes), cells of a square grid of
  stride s = input side / grid side, row-major; per cell raw values tx, ty, tw, th, objectness, class logits. Centre
  ((col + sigmoid(tx)) * s, (row + sigmoid(ty)) * s), size (s * exp(tw), s * exp(th)), score sigmoid(obj) x softmax.
  Nothing nonlinear is left in the graph after the last convolution, so an int8 file quantizes only that map.
- `yolo` (Ultralytics YOLOv8 / YOLO11 exports): one output (N, 4 + classes, anchors) or its transpose, boxes as
  centre x, y, width, height in input pixels, class scores already in [0, 1] (the export keeps its decode in-graph).

Detections: every class whose score passes `conf` (COCO evaluation's 0.001 by default), per-class NMS at IoU `iou`,
at most `max_det` per image. Quality: `edgepack.toolkit.tasks.detection_map` (equal to pycocotools, tested).
Verification of a quantized file: its mAP@0.5:0.95 against the source's on the same images, within
`verify_max_drop` points (mAP x 100); every output's fidelity (SNR, cosine) recorded beside it.
"""
from __future__ import annotations

import math
import time

import numpy as np

from edgepack.toolkit.errors import ModelError, OptionError
from edgepack.toolkit.outputs import save_figure
from edgepack.toolkit.tasks.base import Task, fidelity, fidelity_line, shape_mismatch
from edgepack.toolkit.tasks.detection_map import box_iou, mean_average_precision

DEPLOY_CONF = 0.25      # the score threshold a deployed detector typically keeps (Ultralytics' predict default)
TARGET_FIELDS = 6       # grid training targets per cell: mask, tx, ty, tw, th, class


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * v))       # overflow-free


# ---------------------------------------------------------------- output layouts
def head_layout(shapes: dict, num_classes: int, where: str) -> tuple[str, str]:
    """(output name, layout) of a detector's outputs; one line when no output decodes as boxes."""
    found = []
    for name, shape in shapes.items():
        per = tuple(int(d) for d in tuple(shape)[1:])
        if len(per) != 2:
            continue
        a, k = per
        if k == 5 + num_classes and a > 0 and math.isqrt(a) ** 2 == a:
            found.append((name, "grid"))
        elif a == 4 + num_classes and k > 0:
            found.append((name, "yolo"))
        elif k == 4 + num_classes and a > 0:
            found.append((name, "yolo-t"))
    if len(found) == 1:
        return found[0]
    outs = ", ".join(f"{n} {tuple(s)}" for n, s in shapes.items())
    if found:
        raise ModelError(f"{where}: several outputs decode as boxes ({', '.join(n for n, _ in found)}); a detector "
                         "here has one box output")
    raise ModelError(f"{where}: its outputs ({outs}) do not decode as boxes for {num_classes} classes: expected one "
                     f"output (N, cells, 5 + {num_classes}) of a square grid (edgepack's head) or (N, 4 + {num_classes}, "
                     f"anchors) (an Ultralytics YOLOv8/YOLO11 export)")


def candidates(out: np.ndarray, layout: str, input_hw: tuple[int, int], num_classes: int,
               conf: float) -> list[np.ndarray]:
    """Per image, every (class, box) whose score passes `conf`: (m, 6) [class, x1, y1, x2, y2, score], before NMS."""
    out = out.astype(np.float32, copy=False)
    n = len(out)
    h, w = input_hw
    if layout == "grid":
        cells = out.shape[1]
        side = math.isqrt(cells)
        stride = w / side
        row, col = np.divmod(np.arange(cells), side)
        cx = (col + _sigmoid(out[..., 0])) * stride
        cy = (row + _sigmoid(out[..., 1])) * stride
        bw = stride * np.exp(np.clip(out[..., 2], -8, 6))
        bh = stride * np.exp(np.clip(out[..., 3], -8, 6))
        logits = out[..., 5:]
        e = np.exp(logits - logits.max(-1, keepdims=True))
        scores = _sigmoid(out[..., 4])[..., None] * e / e.sum(-1, keepdims=True)
    else:
        o = out if layout == "yolo-t" else out.transpose(0, 2, 1)          # (N, anchors, 4 + classes)
        cx, cy, bw, bh = o[..., 0], o[..., 1], o[..., 2], o[..., 3]
        scores = o[..., 4:]
    x1, y1 = np.clip(cx - bw / 2, 0, w), np.clip(cy - bh / 2, 0, h)
    x2, y2 = np.clip(cx + bw / 2, 0, w), np.clip(cy + bh / 2, 0, h)
    result = []
    for i in range(n):
        a, c = np.nonzero(scores[i] > conf)
        keep = (x2[i, a] > x1[i, a]) & (y2[i, a] > y1[i, a])
        a, c = a[keep], c[keep]
        result.append(np.stack([c.astype(np.float32), x1[i, a], y1[i, a], x2[i, a], y2[i, a], scores[i, a, c]], 1)
                      .reshape(-1, 6))
    return result


def nms(dets: np.ndarray, iou: float, max_det: int) -> np.ndarray:
    """Per-class greedy non-maximum suppression (boxes of different classes never suppress each other)."""
    if len(dets) == 0:
        return dets
    dets = dets[np.argsort(-dets[:, 5], kind="mergesort")]
    shifted = dets[:, 1:5] + dets[:, :1] * 4096.0        # one pass for all classes: classes far apart in space
    keep = []
    alive = np.ones(len(dets), bool)
    for i in range(len(dets)):
        if not alive[i]:
            continue
        keep.append(i)
        if len(keep) >= max_det:
            break
        rest = np.flatnonzero(alive[i + 1:]) + i + 1
        if len(rest):
            alive[rest[box_iou(shifted[i:i + 1], shifted[rest])[0] > iou]] = False
    return dets[keep]


# ---------------------------------------------------------------- training targets and loss (reference in NumPy)
def grid_targets(boxes: np.ndarray, input_hw: tuple[int, int], cells: int) -> np.ndarray:
    """Training targets of a grid head for each image's boxes: (N, cells, 6) [mask, tx, ty, tw, th, class]; the
    cell holding a box's centre is responsible for it (tx, ty in [0, 1): its offset there; tw, th: log(size /
    stride)); a cell wanted by two boxes keeps the larger (the set-up of YOLOv1 / FCOS-lite heads)."""
    side = math.isqrt(cells)
    stride = input_hw[1] / side
    t = np.zeros((len(boxes), cells, TARGET_FIELDS), np.float32)
    for i, b in enumerate(boxes):
        for c, x1, y1, x2, y2 in sorted(np.asarray(b).tolist(), key=lambda r: (r[3] - r[1]) * (r[4] - r[2])):
            cx, cy, bw, bh = (x1 + x2) / 2 / stride, (y1 + y2) / 2 / stride, (x2 - x1) / stride, (y2 - y1) / stride
            col, row = min(int(cx), side - 1), min(int(cy), side - 1)
            t[i, row * side + col] = (1.0, cx - col, cy - row, math.log(max(bw, 1e-3)), math.log(max(bh, 1e-3)), c)
    return t


def grid_loss_numpy(out: np.ndarray, target: np.ndarray) -> float:
    """The grid head's training loss, the definition both frameworks' losses are tested against: per image, the sum
    over cells of the objectness BCE, plus over responsible cells the BCE of the centre offsets, the squared error of
    the log sizes and the class cross-entropy; averaged over images."""
    o, t = out.astype(np.float64), target.astype(np.float64)
    m = t[..., 0]

    def bce(logit, y):
        return np.maximum(logit, 0) - logit * y + np.log1p(np.exp(-np.abs(logit)))
    obj = bce(o[..., 4], m).sum()
    xy = (bce(o[..., 0:2], t[..., 1:3]).sum(-1) * m).sum()
    wh = (((o[..., 2:4] - t[..., 3:5]) ** 2).sum(-1) * m).sum()
    logits = o[..., 5:]
    lse = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    picked = np.take_along_axis(logits, t[..., 5:6].astype(int), -1)[..., 0]
    ce = ((lse - picked) * m).sum()
    return float((obj + xy + wh + ce) / len(o))


# ---------------------------------------------------------------- the task
class Detection(Task):
    name = "detection"
    description = ("boxes and classes per image (edgepack's grid head or an Ultralytics YOLOv8/11 export): COCO "
                   "mAP@0.5:0.95 and mAP@0.5, decoded and NMS'd in the harness")
    metric = "mAP"
    options = ("conf", "iou", "max_det")
    objective = "boxes"                 # a grid head's per-cell targets (`training_targets`, `grid_loss_numpy`)
    calibration_samples = 500   # measured (benchmarks/results/digit_detection): YOLOv8n's int8 files lose about a point
                                # of mAP more at 200 calibration images than at 500
    onnx_weights = "uint8"      # measured (same): YOLOv8n's 7-bit int8 weights cost 1.4 points, 8-bit ones 0.7; uint8
                                # weights keep 8 bits on CPUs whose int8 kernels saturate (AVX2 without VNNI)
    float_tail = True       # measured (benchmarks/results/digit_detection): an int8 head costs tiny-det (Keras) 2 points

    def __init__(self, conf: float = 0.001, iou: float = 0.6, max_det: int = 100, **rest):
        super().__init__(**rest)
        if not 0 <= float(conf) < 1 or not 0 < float(iou) <= 1 or int(max_det) < 1:
            raise OptionError(f"detection: conf must be in [0, 1), iou in (0, 1], max_det >= 1 (got {conf}, {iou}, "
                              f"{max_det})")
        self.settings = {"conf": float(conf), "iou": float(iou), "max_det": int(max_det)}

    # ------------------------------------------------------------ data
    def view(self, ds):
        if not hasattr(ds, "boxes_test"):
            raise ModelError(f"{ds.name} is a classification data set (a label per image); detection needs boxes: a "
                             "YOLO or COCO-JSON folder (--data-dir), or --data digit-canvas")
        return ds

    def training_targets(self, ds, spec) -> np.ndarray:
        """Dense per-cell targets of `ds`'s training boxes for a grid-head architecture `spec`."""
        cells = spec.walk()[-1].out_shape[0]
        return grid_targets(ds.y_train, ds.input_shape[:2], cells)

    # ------------------------------------------------------------ outputs
    def check_outputs(self, shapes, ds, where):
        head_layout(shapes, ds.num_classes, where)

    def detect(self, outputs: dict, input_hw, num_classes: int, conf: float | None = None) -> tuple[list, float]:
        """Per image the final detections (m, 6), and the decode + NMS time in ms per image (at `conf`, default the
        task's)."""
        name, layout = head_layout({k: v.shape for k, v in outputs.items()}, num_classes, "the model")
        t0 = time.perf_counter()
        s = self.settings
        dets = [nms(d, s["iou"], s["max_det"])
                for d in candidates(outputs[name], layout, input_hw, num_classes, s["conf"] if conf is None else conf)]
        return dets, 1000 * (time.perf_counter() - t0) / max(len(dets), 1)

    def quality(self, outputs, x, y, ds) -> dict:
        dets, ms = self.detect(outputs, x.shape[1:3], ds.num_classes)
        _, ms_deploy = self.detect(outputs, x.shape[1:3], ds.num_classes, conf=DEPLOY_CONF)
        m = mean_average_precision(list(y), dets, ds.num_classes, self.settings["max_det"], curves=True)
        return {"metric": self.metric, "value": m["map"], "se": float("nan"), "map50": m["map50"],
                "per_class": m["per_class"], "objects": m["gt"], "detections": m["dets"], "images": len(y),
                "decode_nms_ms": ms, "decode_nms_ms_deploy": ms_deploy, "deploy_conf": DEPLOY_CONF, "pr50": m["pr50"],
                **{k: v for k, v in self.settings.items()}}

    def format_figure(self, value: float) -> str:
        return f"mAP {value:.4f}"

    def quality_line(self, q):
        return (f"mAP@0.5:0.95 {q['value']:.4f}, mAP@0.5 {q['map50']:.4f} ({q['images']:,} images, {q['objects']:,} "
                f"objects); decode + NMS in NumPy, beside the model's time: {q['decode_nms_ms']:.2f} ms/image at conf "
                f"{q['conf']:g} (evaluation), {q.get('decode_nms_ms_deploy', float('nan')):.2f} ms at conf "
                f"{q.get('deploy_conf', DEPLOY_CONF):g} (deployment)")

    # ------------------------------------------------------------ verification
    def compare(self, got, ref, x, y, ds) -> dict:
        fid = fidelity(got, ref)
        if shape_mismatch(fid):
            return shape_mismatch(fid)
        qg, qr = self.quality(got, x, y, ds), self.quality(ref, x, y, ds)
        return {"shape_ok": True, "outputs": fid, "source_map": qr["value"], "map": qg["value"],
                "source_figure": qr["value"], "figure": qg["value"],
                "source_map50": qr["map50"], "map50": qg["map50"], "delta_pp": 100 * (qg["value"] - qr["value"]),
                "objects": qr["objects"]}

    def judge_figure(self, m, max_drop_pp, at):
        drop = -m["delta_pp"]
        if not drop <= max_drop_pp:
            return [f"mAP@0.5:0.95 {m['map']:.4f} is {drop:.2f} points below the source's {m['source_map']:.4f} "
                    f"(allowed {max_drop_pp:g}){at}"]
        return []

    def notes(self, m, criteria):
        out = list(m.get("notes") or [])
        if m.get("shape_ok") and m.get("source_map", 1) < 0.05:
            out.append(f"the source finds almost nothing (mAP {m['source_map']:.4f} on these images): agreeing with it "
                       "proves little about this file")
        return out

    def verification_line(self, ver) -> str:
        q = ver.quality or {}
        if "map" not in q:
            return fidelity_line(ver.outputs or {})
        line = (f"mAP@0.5:0.95 {q['map']:.4f} vs source {q['source_map']:.4f} ({q['delta_pp']:+.2f} points), mAP@0.5 "
                f"{q['map50']:.4f} vs {q['source_map50']:.4f} on {ver.images} images ({q['objects']} objects); "
                + fidelity_line(ver.outputs or {}))
        return line + "".join(f"; note: {n}" for n in getattr(ver, "notes", None) or [])

    # ------------------------------------------------------------ report
    def plot(self, curves, path) -> str | None:
        """Precision-recall at IoU 0.5 (COCO's 101 recall points, averaged over classes) of every file."""
        curves = [(label, q) for label, q in curves if q and q.get("pr50")]
        if not curves:
            return None
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6.5, 5))
        recall = np.linspace(0, 1, 101)
        for k, (label, q) in enumerate(curves):
            ax.plot(recall, q["pr50"], lw=1.3, ls=("-", "--", ":", "-.")[k % 4],
                    label=f"{label}: mAP@0.5 {q['map50']:.3f}, @0.5:0.95 {q['value']:.3f}")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision (interpolated, mean over classes)")
        ax.set_title("precision-recall at IoU 0.5, full test set, each file in its runtime", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5, loc="lower left")
        fig.tight_layout()
        save_figure(fig, path, 120)
        plt.close(fig)
        return str(path)


    def draw_examples(self, ds, x, y, files, path) -> str | None:
        """Test images in columns, one row per file: its detections at the deployment threshold (score >= 0.25)
        beside the ground truth (dashed)."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle
        if not files or not len(x):
            return None
        fig, axes = plt.subplots(len(files), len(x), figsize=(2.1 * len(x), 2.3 * len(files)), squeeze=False)
        for r, (label, outputs_of) in enumerate(files):
            dets, _ = self.detect(outputs_of(), x.shape[1:3], ds.num_classes, conf=DEPLOY_CONF)
            for c in range(len(x)):
                ax = axes[r, c]
                ax.imshow(x[c][..., 0] if x.shape[-1] == 1 else x[c], cmap="gray")
                for cls, x1, y1, x2, y2 in np.asarray(y[c]):
                    ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ls="--", lw=0.8, color="lime"))
                for cls, x1, y1, x2, y2, score in dets[c]:
                    ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1.0, color="red"))
                    ax.text(x1, y1 - 1, f"{ds.classes[int(cls)]} {score:.2f}", color="red", fontsize=5.5)
                ax.set_xticks([])
                ax.set_yticks([])
                if c == 0:
                    ax.set_ylabel(label, fontsize=7)
        fig.suptitle(f"detections (red, score >= {DEPLOY_CONF:g}) and ground truth (green, dashed), test images of "
                     f"{ds.name}", fontsize=8)
        fig.tight_layout()
        save_figure(fig, path, 120)
        plt.close(fig)
        return str(path)


TASK = Detection

"""Mean average precision for object detection, COCO's definition, in NumPy (groundwork for the detection task).

COCO's evaluation (pycocotools' COCOeval, the reference every detector reports against): per class and IoU threshold
(0.50, 0.55, ..., 0.95), detections sorted by score (at most `max_dets` per image) are matched greedily to unmatched
ground-truth boxes of that class with IoU >= the threshold; precision is made monotone and sampled at 101 recall
points; AP is their mean; mAP averages over the classes that have ground truth, mAP@0.5 at IoU 0.5 and mAP@0.5:0.95
over all ten thresholds. Areas use COCO's box area (w x h, no +1). Written here, not imported, so that a device with
only the runtime install scores detections the same way; `tests/test_detection_map.py` checks it against pycocotools
on random and hand-computed cases.

Boxes: per image an array (k, 5) of ground truth `[class, x1, y1, x2, y2]` and (m, 6) of detections
`[class, x1, y1, x2, y2, score]`, pixels of the same image, with x2 > x1 and y2 > y1 (a decoder's job: pycocotools
gives boxes of negative width an undefined area, and the two would disagree on them).
"""
from __future__ import annotations

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of a (n, 4) with every box of b (m, 4), xyxy."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _match(gt: np.ndarray, dt: np.ndarray, thr: float) -> np.ndarray:
    """For detections sorted by score (one image, one class), whether each matches a ground-truth box at IoU >= thr
    (COCOeval's greedy rule: the best still-unmatched box above the threshold)."""
    iou = box_iou(dt, gt)
    used = np.zeros(len(gt), bool)
    hit = np.zeros(len(dt), bool)
    for d in range(len(dt)):
        best, best_iou = -1, min(thr, 1 - 1e-10)
        for g in range(len(gt)):
            if not used[g] and iou[d, g] >= best_iou:
                best, best_iou = g, iou[d, g]
        if best >= 0:
            used[best], hit[d] = True, True
    return hit


def average_precision(scores: np.ndarray, hits: np.ndarray, n_gt: int) -> float:
    """COCO's 101-point interpolated AP of one class at one IoU threshold."""
    return float(precision_curve(scores, hits, n_gt).mean())


def precision_curve(scores: np.ndarray, hits: np.ndarray, n_gt: int) -> np.ndarray:
    """The interpolated precision at COCO's 101 recall points (0 beyond the highest recall reached)."""
    if n_gt == 0:
        return np.full(len(RECALL_POINTS), np.nan)
    order = np.argsort(-scores, kind="mergesort")
    tp = np.cumsum(hits[order])
    fp = np.cumsum(~hits[order])
    recall = tp / n_gt
    precision = tp / (tp + fp + np.spacing(1))
    precision = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    idx = np.searchsorted(recall, RECALL_POINTS, side="left")
    return np.array([precision[i] if i < len(precision) else 0.0 for i in idx])


def mean_average_precision(gts: list[np.ndarray], dets: list[np.ndarray], num_classes: int,
                           max_dets: int = 100, curves: bool = False) -> dict:
    """{"map50", "map" (0.5:0.95), "per_class" (AP 0.5:0.95 per class, NaN without ground truth), "gt", "dets"};
    `curves`: also "pr50", the precision at the 101 recall points at IoU 0.5, averaged over the classes present."""
    if len(gts) != len(dets):
        raise ValueError(f"{len(gts)} images of ground truth, {len(dets)} of detections")
    dets = [d[np.argsort(-d[:, 5], kind="mergesort")][:max_dets] if len(d) else np.zeros((0, 6)) for d in dets]
    ap = np.full((len(IOU_THRESHOLDS), num_classes), np.nan)
    pr50 = np.full((num_classes, len(RECALL_POINTS)), np.nan)
    for c in range(num_classes):
        n_gt = int(sum((g[:, 0] == c).sum() for g in gts))
        if n_gt == 0:
            continue
        for t, thr in enumerate(IOU_THRESHOLDS):
            scores, hits = [], []
            for g, d in zip(gts, dets):
                gc, dc = g[g[:, 0] == c, 1:5], d[d[:, 0] == c]
                if len(dc) == 0:
                    continue
                hits.append(_match(gc, dc[:, 1:5], thr))
                scores.append(dc[:, 5])
            curve = precision_curve(np.concatenate(scores) if scores else np.zeros(0),
                                    np.concatenate(hits) if hits else np.zeros(0, bool), n_gt)
            ap[t, c] = float(curve.mean())
            if t == 0:
                pr50[c] = curve
    present = ~np.isnan(ap[0])
    extra = {"pr50": [round(float(v), 5) for v in np.nanmean(pr50[present], 0)]} if curves and present.any() else {}
    return {**extra, "map50": float(np.mean(ap[0, present])) if present.any() else float("nan"),
            "map": float(np.mean(ap[:, present])) if present.any() else float("nan"),
            "per_class": [float(v) for v in np.nanmean(ap, axis=0)] if present.any() else [float("nan")] * num_classes,
            "gt": int(sum(len(g) for g in gts)), "dets": int(sum(len(d) for d in dets))}

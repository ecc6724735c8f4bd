"""edgepack's NumPy mAP (toolkit/tasks/detection_map.py) against pycocotools' COCOeval, the reference detectors report
against, and on a case computed by hand."""
import contextlib
import io

import numpy as np
import pytest

from edgepack.toolkit.tasks.detection_map import average_precision, box_iou, mean_average_precision


def _coco(gts, dets, num_classes):
    """pycocotools' mAP@0.5:0.95 and mAP@0.5 for the same boxes."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    images = [{"id": i + 1, "width": 200, "height": 200} for i in range(len(gts))]
    anns = []
    for i, g in enumerate(gts):
        for c, x1, y1, x2, y2 in g:
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(c) + 1, "iscrowd": 0,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1)})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": c + 1} for c in range(num_classes)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        res = [{"image_id": i + 1, "category_id": int(c) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(s)}
               for i, d in enumerate(dets) for c, x1, y1, x2, y2, s in d]
        dt = gt.loadRes(res) if res else COCO()
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats[0], ev.stats[1]


def _random_case(rng, n_images, num_classes):
    gts, dets = [], []
    for _ in range(n_images):
        k = rng.integers(0, 5)
        xy = rng.uniform(0, 150, (k, 2))
        wh = rng.uniform(8, 50, (k, 2))
        g = np.column_stack([rng.integers(0, num_classes, k), xy, xy + wh])
        d = []
        for c, x1, y1, x2, y2 in g:                             # a noisy detection of most objects
            if rng.random() < 0.85:
                j = rng.normal(0, 4, 4)
                a, b = sorted([x1 + j[0], x2 + j[2]]), sorted([y1 + j[1], y2 + j[3]])      # a box, however jittered
                d.append([c if rng.random() < 0.9 else (c + 1) % num_classes, a[0], b[0], a[1] + 1, b[1] + 1,
                          rng.random()])
        for _ in range(rng.integers(0, 3)):                    # and some false positives
            x, y = rng.uniform(0, 150, 2)
            d.append([rng.integers(0, num_classes), x, y, x + 20, y + 20, rng.random() * 0.5])
        gts.append(g.astype(np.float64))
        dets.append(np.array(d, np.float64).reshape(-1, 6))
    return gts, dets


@pytest.mark.parametrize("seed", range(6))
def test_map_equals_pycocotools(seed):
    rng = np.random.default_rng(seed)
    gts, dets = _random_case(rng, 40, 3)
    ours = mean_average_precision(gts, dets, 3)
    ref_map, ref_map50 = _coco(gts, dets, 3)
    assert ours["map"] == pytest.approx(ref_map, abs=1e-9) and ours["map50"] == pytest.approx(ref_map50, abs=1e-9)


def test_map_on_a_case_computed_by_hand():
    """One class, two images, three objects. Detections by score: A (image 1, IoU 0.64 with its object: a hit at 0.50
    .. 0.60), B (a false positive), C (image 2, exact: a hit everywhere). At IoU 0.5: hits A, C; precision after each
    detection 1, 1/2, 2/3 -> made monotone 1, 2/3, 2/3; recall 1/3, 1/3, 2/3: the 101 recall points up to 1/3 (34 of
    them) have precision 1, those in (1/3, 2/3] (33) have 2/3, the rest 0: AP = (34 + 33 x 2/3) / 101."""
    g1 = np.array([[0, 0, 0, 10, 10], [0, 50, 50, 60, 60]], float)
    g2 = np.array([[0, 20, 20, 40, 40]], float)
    d1 = np.array([[0, 0, 0, 10, 6.4, 0.9], [0, 100, 100, 110, 110, 0.8]], float)       # IoU of A: 64/100
    d2 = np.array([[0, 20, 20, 40, 40, 0.7]], float)
    assert box_iou(d1[:1, 1:5], g1[:1, 1:5])[0, 0] == pytest.approx(0.64)
    r = mean_average_precision([g1, g2], [d1, d2], 1)
    at50 = (34 + 33 * 2 / 3) / 101
    assert r["map50"] == pytest.approx(at50, abs=1e-12)
    # IoU thresholds 0.50, 0.55, 0.60 count A (0.64); 0.65 .. 0.95 (7 of them) do not: C alone, precision 1/3 at recall 1/3
    only_c = (34 * (1 / 3)) / 101
    assert r["map"] == pytest.approx((3 * at50 + 7 * only_c) / 10, abs=1e-12)
    assert r["map"] == pytest.approx(_coco([g1, g2], [d1, d2], 1)[0], abs=1e-12)
    assert average_precision(np.zeros(0), np.zeros(0, bool), 3) == 0.0      # objects, no detections: AP 0

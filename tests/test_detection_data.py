"""Detection data (groundwork for the detection task): letterboxing with boxes mapped, the derived MNIST-canvas set in
YOLO format, YOLO and COCO-JSON readers giving the same boxes, and bad input in one line."""
import json

import numpy as np
import pytest
from PIL import Image

from tests.conftest import MNIST_DIR
from edgepack.toolkit.data.detection import letterbox, load_coco, load_yolo, make_digit_canvases, map_boxes, unmap_boxes
from edgepack.toolkit.errors import DataError


def test_letterbox_keeps_the_aspect_and_maps_boxes_both_ways():
    img = np.zeros((20, 40, 1), np.uint8)
    img[5:10, 10:30] = 255                                         # an object at x 10..30, y 5..10
    out, s, pad = letterbox(img, 32)
    assert out.shape == (32, 32, 1) and s == pytest.approx(0.8) and pad == (0, 8)
    b = map_boxes(np.array([[3, 10, 5, 30, 10]]), s, pad)
    assert np.allclose(b, [[3, 8, 12, 24, 16]])
    ys, xs = np.nonzero(out[..., 0] > 127)
    assert xs.min() >= 7 and xs.max() <= 24 and ys.min() >= 11 and ys.max() <= 16    # the pixels are where the box says
    assert np.allclose(unmap_boxes(b, s, pad), [[3, 10, 5, 30, 10]])


@pytest.fixture(scope="module")
def fake_mnist():
    from edgepack.toolkit.data import Dataset
    rng = np.random.default_rng(0)

    def digits(n):
        x = np.zeros((n, 28, 28, 1), np.uint8)
        x[:, 6:22, 9:19] = rng.integers(100, 255, (n, 16, 10, 1), dtype=np.uint8)     # a blob where a digit would be
        return x
    return Dataset("mnist", "test", digits(200), np.arange(200) % 10, digits(50), np.arange(50) % 10,
                   [str(i) for i in range(10)], (0.13,), (0.3,))


def test_the_derived_set_is_seeded_in_yolo_format_and_reads_back(fake_mnist, tmp_path):
    rec = make_digit_canvases(fake_mnist, tmp_path / "a", n_train=30, n_test=10, size=64, seed=3)
    again = make_digit_canvases(fake_mnist, tmp_path / "b", n_train=30, n_test=10, size=64, seed=3)
    other = make_digit_canvases(fake_mnist, tmp_path / "c", n_train=30, n_test=10, size=64, seed=4)
    assert rec["sha256"] == again["sha256"] != other["sha256"]
    assert "derived set made offline" in rec["what"] and rec["splits"]["test"]["images"] == 10
    ds = load_yolo(tmp_path / "a", 64)
    assert ds.x_train.shape == (30, 64, 64, 1) and ds.classes == [str(i) for i in range(10)]
    assert sum(len(b) for b in ds.boxes_test) == rec["splits"]["test"]["objects"]
    for img, boxes in zip(ds.x_test, ds.boxes_test):
        assert 1 <= len(boxes) <= 5
        for c, x1, y1, x2, y2 in boxes:
            assert 0 <= x1 < x2 <= 64 and 0 <= y1 < y2 <= 64 and 0 <= c < 10
            assert img[int(y1):int(np.ceil(y2)), int(x1):int(np.ceil(x2))].max() > 30      # the digit is in its box
    x, b = ds.test_subset(5, seed=0)
    assert len(x) == len(b) == 5 and ds.calibration(8).shape == (8, 64, 64, 1)
    assert "test objects" in ds.describe()


def test_yolo_bad_input_is_one_line_naming_the_file_and_line(fake_mnist, tmp_path):
    make_digit_canvases(fake_mnist, tmp_path, n_train=3, n_test=2, size=32, seed=0)
    lab = tmp_path / "labels" / "train" / "train_000000.txt"
    for line, says in (("3 1.2 0.5 0.2 0.2", "is not inside the image"), ("12 0.5 0.5 0.2 0.2", "class id 12 is not in"),
                       ("3 0.5 0.5", "expected 'class cx cy w h'")):
        lab.write_text(line + "\n")
        with pytest.raises(DataError, match=rf"train_000000.txt:1: .*{says}"):
            load_yolo(tmp_path, 32)
    lab.write_text("")                                              # an image without objects: YOLO's convention
    ds = load_yolo(tmp_path, 32)
    assert len(ds.boxes_train[0]) == 0 and "images without objects: 1 train" in ds.notes[0]
    (tmp_path / "classes.txt").unlink()
    with pytest.raises(DataError, match="no classes.txt or data.yaml"):
        load_yolo(tmp_path, 32)
    (tmp_path / "data.yaml").write_text("path: .\nnames:\n  0: zero\n  1: one\n")
    lab.write_text("1 0.5 0.5 0.2 0.2\n")
    for f in (tmp_path / "labels").rglob("*.txt"):                  # only classes 0 and 1 now
        if f != lab:
            f.write_text("0 0.5 0.5 0.2 0.2\n")
    assert load_yolo(tmp_path, 32).classes == ["zero", "one"]


def test_a_coco_json_set_reads_like_the_same_set_in_yolo(tmp_path):
    """A small COCO fixture written by hand: two 40x20 images, three boxes."""
    (tmp_path / "img").mkdir()
    for k in (1, 2):
        Image.fromarray(np.full((20, 40), 60 * k, np.uint8)).save(tmp_path / "img" / f"{k}.png")
    doc = {"images": [{"id": 1, "file_name": "1.png", "width": 40, "height": 20},
                      {"id": 2, "file_name": "2.png", "width": 40, "height": 20}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [10, 5, 20, 5]},
                           {"id": 2, "image_id": 2, "category_id": 9, "bbox": [0, 0, 40, 20]},
                           {"id": 3, "image_id": 2, "category_id": 7, "bbox": [2, 2, 4, 4], "iscrowd": 1}],
           "categories": [{"id": 9, "name": "dog"}, {"id": 7, "name": "cat"}]}
    (tmp_path / "train.json").write_text(json.dumps(doc))
    (tmp_path / "val.json").write_text(json.dumps(doc))
    ds = load_coco(tmp_path / "train.json", tmp_path / "val.json", tmp_path / "img", 32)
    assert ds.classes == ["cat", "dog"]                              # categories by id: 7 cat, 9 dog
    assert np.allclose(ds.boxes_test[0], [[0, 8, 12, 24, 16]])       # the letterbox of test_letterbox... above
    assert np.allclose(ds.boxes_test[1], [[1, 0, 8, 32, 24]]) and len(ds.boxes_test[1]) == 1   # the crowd box left out
    doc["annotations"][0]["image_id"] = 5
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match="bad.json: annotation 1 names image id 5, which is not among its images"):
        load_coco(tmp_path / "bad.json", tmp_path / "val.json", tmp_path / "img", 32)
    doc["annotations"][0].update(image_id=1, bbox=[30, 5, 20, 5])
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"box \[30, 5, 20, 5\] is not inside its 40x20 image"):
        load_coco(tmp_path / "bad.json", tmp_path / "val.json", tmp_path / "img", 32)


def test_the_derived_set_from_real_mnist(tmp_path):
    from edgepack.toolkit.data import load_dataset
    mnist = load_dataset("mnist", MNIST_DIR)
    rec = make_digit_canvases(mnist, tmp_path, n_train=100, n_test=40, size=96, seed=0)
    ds = load_yolo(tmp_path, 96, name="mnist-canvas")
    assert ds.x_test.shape == (40, 96, 96, 1) and sum(len(b) for b in ds.boxes_test) == rec["splits"]["test"]["objects"]
    assert mnist.test_sha256()[:12] in rec["derived_from"]
    # every test class present among the objects, boxes of 10..40 px digits
    cls = np.concatenate([b[:, 0] for b in ds.boxes_test]).astype(int)
    assert len(set(cls)) >= 8
    sides = np.concatenate([b[:, 3] - b[:, 1] for b in ds.boxes_test])
    assert sides.min() >= 2 and sides.max() <= 40


def test_yolo_and_coco_folders_load_by_name_through_load_dataset(tmp_path):
    """`--data NAME --data-dir DIR` reads either layout; a folder of neither is one line naming what it looked for."""
    from edgepack.toolkit.data import load_dataset
    coco = tmp_path / "coco"
    (coco / "images").mkdir(parents=True)
    (coco / "annotations").mkdir()
    Image.fromarray(np.full((32, 32), 90, np.uint8)).save(coco / "images" / "a.png")
    doc = {"images": [{"id": 3, "file_name": "a.png", "width": 32, "height": 32}],
           "annotations": [{"id": 1, "image_id": 3, "category_id": 1, "bbox": [4, 4, 10, 12]},
                           {"id": 2, "image_id": 3, "category_id": 2, "bbox": [16, 16, 8, 8]}],
           "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    for split in ("instances_train.json", "instances_val.json"):
        (coco / "annotations" / split).write_text(json.dumps(doc))
    ds = load_dataset("mine", coco, quiet=True)
    assert ds.classes == ["a", "b"] and np.allclose(ds.y_test[0], [[0, 4, 4, 14, 16], [1, 16, 16, 24, 24]])
    with pytest.raises(DataError, match="neither IDX files, train/<class>/ images, a YOLO set"):
        load_dataset("mine", tmp_path / "coco" / "images", quiet=True)

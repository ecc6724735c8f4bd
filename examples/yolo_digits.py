"""A detector users really have: Ultralytics YOLOv8n, built from its model description (no downloaded weights), trained
by Ultralytics' own trainer on edgepack's derived digit-canvas set (real MNIST digits on 96 px canvases, YOLO format),
exported to an fp32 .onnx for `edgepack export|bench|deploy yolo.onnx --task detection`.

Runs offline: YOLO_OFFLINE=1 (no update or hub checks), plots off (they download a font), amp off on CPU (its check
downloads weights), ONNX export without onnxslim (simplify=False, no pip install at run time). Ultralytics is not one
of edgepack's dependencies; use a venv of its own:

    python -m venv yolo-env && yolo-env/bin/pip install ultralytics
    yolo-env/bin/python examples/yolo_digits.py --data DIGIT_CANVAS_FOLDER --out runs/yolo --epochs 20

DIGIT_CANVAS_FOLDER: a YOLO-format folder, e.g. the one `edgepack train --data digit-canvas ...` made (its path is in
the record), or `python -c "from edgepack.toolkit.data import load_dataset; print(load_dataset('digit-canvas').source)"`.
"""
from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="a YOLO-format folder (images/{train,test}, labels/..., classes.txt)")
    p.add_argument("--out", required=True, help="output folder: yolo.onnx, the Ultralytics run, train_log.json")
    p.add_argument("--model", default="yolov8n.yaml", help="an Ultralytics model description (yolov8n.yaml, yolo11n.yaml)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--imgsz", type=int, default=96)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    from ultralytics import YOLO, settings
    settings.update({"sync": False})
    data, out = Path(a.data).resolve(), Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    classes = [c for c in (data / "classes.txt").read_text().split() if c]
    gray = _is_gray(next((data / "images" / "train").iterdir()))
    yaml = out / "data.yaml"                   # Ultralytics' data description of the folder
    yaml.write_text(f"path: {data}\ntrain: images/train\nval: images/test\nchannels: {1 if gray else 3}\n"
                    f"names: {dict(enumerate(classes))}\n")
    model = YOLO(a.model, task="detect")
    t0 = time.time()
    model.train(data=str(yaml), epochs=a.epochs, imgsz=a.imgsz, batch=a.batch, workers=a.workers, device="cpu",
                seed=a.seed, deterministic=True, plots=False, amp=False, project=str(out), name="train", exist_ok=True,
                pretrained=False, verbose=False, mosaic=1.0, fliplr=0.0)    # digits are not mirror-symmetric
    seconds = time.time() - t0
    onnx = Path(model.export(format="onnx", imgsz=a.imgsz, dynamic=True, simplify=False, opset=17))
    shutil.copy(onnx, out / "yolo.onnx")
    metrics = model.val(data=str(yaml), imgsz=a.imgsz, batch=a.batch, device="cpu", plots=False, verbose=False)
    (out / "train_log.json").write_text(
        '{"model": "%s", "epochs": %d, "imgsz": %d, "train_seconds": %.1f, "ultralytics_map50_95": %.5f, '
        '"ultralytics_map50": %.5f, "channels": %d}\n' % (a.model, a.epochs, a.imgsz, seconds, metrics.box.map,
                                                          metrics.box.map50, 1 if gray else 3))
    print(f"{out / 'yolo.onnx'}: trained {a.epochs} epochs in {seconds / 60:.1f} min; Ultralytics' own val "
          f"mAP@0.5:0.95 {metrics.box.map:.4f}, mAP@0.5 {metrics.box.map50:.4f}")


def _is_gray(path: Path) -> bool:
    from PIL import Image
    with Image.open(path) as im:
        return im.mode in ("L", "1", "I;16")


if __name__ == "__main__":
    main()

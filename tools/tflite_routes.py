"""The two PyTorch -> TFLite routes side by side (issue 40): onnx2tf (from the fp32 ONNX) and litert-torch (torch.export
to LiteRT, quantized by ai-edge-quantizer), on every built-in architecture and torchvision's mobilenet_v3_small and
resnet18, each trained in PyTorch first (briefly: the point is the conversion, not the model).

    python -m tools.tflite_routes runs/tflite_routes            # train, export both routes, write export.json
    edgepack bench runs/tflite_routes/*/*/*.tflite --threads 1 --json runs/tflite_routes/results.json
    python -m tools.tflite_routes runs/tflite_routes --table    # the markdown table from both

Each model is exported to fp32, dynamic-range and full-integer .tflite files through each route (verified as every
export is); what did not convert is recorded with its one-line error. The table takes accuracy (or the task's
figure) on the full test set in LiteRT, p50 at 1 thread and size from one bench run, and the conversion time from
the manifests (`export_seconds`: onnx2tf writes all three files in one call, charged to the first).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

MODES = ("tflite", "tflite-dynamic", "tflite-int8")
ROUTES = ("onnx2tf", "litert-torch")
# name: (architecture or torchvision:<name>, data, task, epochs, a checkpoint to use instead of training)
# (OUT/<name>/model.pt, when there, is always used: copy an earlier training there to reuse it)
MODELS = {
    "mnist-tutorial": ("mnist-tutorial", "mnist", None, 1, None),
    "mnist-small": ("mnist-small", "mnist", None, 1, None),
    "mnist-teacher": ("mnist-teacher", "mnist", None, 1, None),
    "cifar-student": ("cifar-student", "cifar10", None, 1, None),
    "cifar-ds-student": ("cifar-ds-student", "cifar10", None, 1, None),
    "cifar-teacher": ("cifar-teacher", "cifar10", None, 1, None),
    "cifar-base": ("cifar-base", "cifar10", None, 1, None),
    "resnet8": ("resnet8", "cifar10", None, 1, None),
    "ds-cnn": ("ds-cnn", "synthetic-speech", None, 3, None),
    "ae-fc": ("ae-fc", "mnist", {"name": "anomaly", "normal_classes": ["0"]}, 3, None),
    "ae-conv": ("ae-conv", "mnist", {"name": "anomaly", "normal_classes": ["0"]}, 3, None),
    "tiny-det": ("tiny-det", "digit-canvas", "detection", 1, None),
    "mobilenet_v3_small": ("torchvision:mobilenet_v3_small", "cifar10", None, 1, None),
    "resnet18": ("torchvision:resnet18", "cifar10", None, 1, None),
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def trained(name: str, out: Path):
    """(model, dataset, task, training seconds) for one entry of MODELS; a checkpoint in `out` is reused."""
    from edgepack.toolkit.api import dataset_for, load_checkpoint, train
    from edgepack.toolkit.backends import get_backend
    from edgepack.toolkit.data import load_dataset
    from edgepack.toolkit.train import TrainConfig
    arch, data, task, epochs, given = MODELS[name]
    cfg = TrainConfig(epochs=epochs, batch_size=64, val_fraction=0.0)
    ckpt = out / name / "model.pt"
    if arch.startswith("torchvision:"):
        import torch
        import torchvision
        ds = load_dataset(data)
        if ckpt.exists():
            return torch.load(ckpt, weights_only=False), ds, task, json.loads((out / name / "train.json").read_text())["seconds"]
        model = getattr(torchvision.models, arch.split(":")[1])(num_classes=ds.num_classes)
        start = time.perf_counter()
        get_backend("torch").fit(model, ds, cfg, verbose=False)
        seconds = time.perf_counter() - start
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model, ckpt)
        (out / name / "train.json").write_text(json.dumps({"seconds": seconds, "epochs": epochs}))
        return model, ds, task, seconds
    for path in (ckpt, Path(given) if given else None):
        if path is not None and path.exists():
            loaded = load_checkpoint(path)
            meta = out / name / "train.json"
            seconds = json.loads(meta.read_text())["seconds"] if meta.exists() else None
            return loaded.model, dataset_for(loaded), task, seconds
    start = time.perf_counter()
    result = train("torch", arch, data, out=out / name, config=cfg, verbose=False, task=task)
    seconds = time.perf_counter() - start
    (out / name / "train.json").write_text(json.dumps({"seconds": seconds, "epochs": epochs}))
    return result.model, result.dataset, task, seconds


def export_all(out: Path, names: list[str], routes=ROUTES) -> None:
    from edgepack.exporters import ExportOptions
    from edgepack.exporters.api import export_model
    summary_path = out / "export.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    for name in names:
        log(f"{name}: training")
        model, ds, task, seconds = trained(name, out)
        entry = summary.get(name) or {"routes": {}}
        entry["train_seconds"] = seconds
        for route in routes:
            log(f"{name}: {route}")
            folder = out / name / route
            shutil.rmtree(folder, ignore_errors=True)        # files of an earlier run (a .FAILED one) do not stay
            start = time.perf_counter()
            try:
                results = export_model(model, list(MODES), ds, folder, ExportOptions(tflite_route=route),
                                       verbose=False, task=task)
                entry["routes"][route] = {r.format: {"file": str(r.path) if r.path else None, "error": r.error}
                                          for r in results}
            except Exception as e:          # noqa: BLE001 - recorded, the next model goes on
                entry["routes"][route] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
            entry["routes"][route]["wall_seconds"] = round(time.perf_counter() - start, 1)
            log(f"{name}: {route}: {entry['routes'][route]}")
        summary[name] = entry
        summary_path.write_text(json.dumps(summary, indent=1))


def table(out: Path) -> list[str]:
    summary = json.loads((out / "export.json").read_text())
    bench = json.loads((out / "results.json").read_text())
    by_file = {str(Path(d["model"]).resolve()): d for d in bench["results"] if d.get("threads") == 1}
    lines = ["| model | route | file | converts | figure in LiteRT | size B | p50 1 thr ms | export s |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for name, entry in summary.items():
        for route in ROUTES:
            r = entry["routes"].get(route, {})
            for fmt in MODES:
                f = r.get(fmt) or {}
                if not f.get("file"):
                    err = f.get("error") or r.get("error") or "not run"
                    lines.append(f"| {name} | {route} | {fmt} | no: {err[:90]} | | | | |")
                    continue
                path = Path(f["file"]).resolve()
                rec = json.loads(Path(str(path) + ".json").read_text())
                secs = rec["steps"][-1]["details"].get("export_seconds", "")
                d = by_file.get(str(path))
                ok = "yes" if not f.get("error") else "verification failed"
                if d is None or not d.get("ok"):
                    lines.append(f"| {name} | {route} | {fmt} | {ok} | bench: {d and d.get('error')} | "
                                 f"{path.stat().st_size:,} | | {secs} |")
                    continue
                q = d.get("quality") or {}
                fig = (f"{q['metric']} {q['value']:.4f}" if q else f"{100 * d['accuracy']:.2f}%")
                lines.append(f"| {name} | {route} | {fmt} | {ok} | {fig} | {d['size_bytes']:,} | "
                             f"{d['latency_ms']['p50']:.3f} | {secs} |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--routes", default=",".join(ROUTES), help="routes to export again (the others are kept)")
    p.add_argument("--table", action="store_true")
    a = p.parse_args()
    if a.table:
        print("\n".join(table(a.out)))
        return
    a.out.mkdir(parents=True, exist_ok=True)
    export_all(a.out, [m for m in a.models.split(",") if m], [r for r in a.routes.split(",") if r])


if __name__ == "__main__":
    sys.exit(main())

"""Full-test-set accuracy of a checkpoint's int8 .onnx per CPU kernel class, portable (--target any) vs
full-range (--target x86-vnni), with the reference cross-checked against ONNX Runtime on this CPU.

    python tools/portability_check.py CHECKPOINT --data mnist --data-dir ../shared/data/mnist --out /tmp/port

Prints one Markdown table (published in benchmarks/results/portability.md). Not part of the installed package.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--data", required=True)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--calibration-samples", type=int, default=200)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    from edgepack.runtimes.machine import cpu_label, onnxruntime_kernel_class
    from edgepack.runtimes import open_runner
    from edgepack.runtimes.qdq_reference import QdqReferenceRunner
    from edgepack.exporters.api import export_model
    from edgepack.exporters.base import ExportOptions
    from edgepack.toolkit.api import dataset_for, load_checkpoint

    loaded = load_checkpoint(a.checkpoint)
    ds = dataset_for(loaded, a.data, a.data_dir)
    x, y = ds.normalize(ds.x_test), ds.y_test
    acc = lambda z: 100 * float((z.argmax(1) == y).mean())  # noqa: E731
    here = onnxruntime_kernel_class()
    print(f"CPU: {cpu_label()}; ONNX Runtime int8 kernel class here: {here}; {len(y):,} test images of {ds.name}\n")
    print("| target | file | bytes | ORT here | exact class | u8s8-sat16 class | reference vs ORT here (top-1 agreement) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for target in ("any", "x86-vnni"):
        out = Path(a.out) / target
        shutil.rmtree(out, ignore_errors=True)
        res = export_model(loaded.model, ["onnx", "onnx-int8"], ds, out,
                           ExportOptions(target=target, calibration_samples=a.calibration_samples), verbose=False)
        for r in res:
            path = r.path
            ort = open_runner(path).predict(x)
            if r.format == "onnx":
                print(f"| - | fp32 `.onnx` | {path.stat().st_size:,} | {acc(ort):.2f}% | | | |")
                continue
            ref = {kc: QdqReferenceRunner(path, kernel_class=kc).load().predict(x) for kc in ("exact", "u8s8-sat16")}
            agree = 100 * float((ref[here].argmax(1) == ort.argmax(1)).mean()) if here in ref else float("nan")
            print(f"| {target} | int8 `.onnx` ({'7-bit' if target == 'any' else '8-bit'} weights) | {path.stat().st_size:,} | "
                  f"{acc(ort):.2f}% | {acc(ref['exact']):.2f}% | {acc(ref['u8s8-sat16']):.2f}% | {agree:.2f}% ({here}) |")


if __name__ == "__main__":
    main()

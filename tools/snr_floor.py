"""The int8 output-fidelity floor of the `raw` task (edgepack.toolkit.tasks.base.MIN_INT8_SNR_DB), measured.

For models trained here briefly on real MNIST (classifiers: mnist-tutorial and mnist-small in both frameworks;
autoencoders: ae-fc and ae-conv, digit 0 normal), it exports the int8 files (both routes), and for each output reports
the SNR of the file's outputs against the source's on 1,000 stratified test images; then it breaks each int8 .onnx the
way a bad calibration does (one activation scale x 4, then x 0.25, on the first QuantizeLinear after the input) and
reports what the SNR falls to, and what that costs a classifier in accuracy.

    python -m tools.snr_floor --data-dir ../shared/data/mnist --out benchmarks/results/tasks/snr_floor.json
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def _broken(src: Path, dst: Path, factor: float) -> str:
    """A copy of an int8 .onnx with the scale of the first activation QuantizeLinear (after the input's) multiplied: its
    DequantizeLinear shares the scale tensor, so the pair stays consistent, as with a calibration range that was off."""
    import onnx
    from onnx import numpy_helper
    m = onnx.load(str(src))
    inits = {t.name: t for t in m.graph.initializer}
    qs = [n for n in m.graph.node if n.op_type == "QuantizeLinear" and n.input[1] in inits]
    node = qs[1] if len(qs) > 1 else qs[0]
    t = inits[node.input[1]]
    t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) * np.float32(factor), t.name))
    onnx.save(m, str(dst))
    return node.output[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    from edgepack.runtimes.machine import cpu_label
    from edgepack.runtimes import open_runner
    from edgepack.exporters.api import export_checkpoint
    from edgepack.exporters.base import ExportOptions
    from edgepack.toolkit.api import train
    from edgepack.toolkit.data import load_dataset
    from edgepack.toolkit.tasks import get_task, matched
    from edgepack.toolkit.tasks.base import fidelity
    from edgepack.toolkit.train import TrainConfig
    ds = load_dataset("mnist", args.data_dir)
    rows = []
    work = Path(tempfile.mkdtemp(prefix="snr-floor-"))
    cases = [("torch", "mnist-tutorial", None), ("keras", "mnist-tutorial", None), ("torch", "mnist-small", None),
             ("keras", "mnist-small", None), ("torch", "ae-fc", "anomaly"), ("keras", "ae-conv", "anomaly")]
    for fw, arch, task in cases:
        res = train(fw, arch, ds, out=work / f"{fw}-{arch}", config=TrainConfig(epochs=args.epochs, batch_size=64),
                    verbose=False, task=task)
        t = get_task(task)
        view = t.view(ds)
        results = export_checkpoint(res.checkpoint, ["onnx-int8", "tflite-int8"], work / f"x-{fw}-{arch}", ds,
                                    options=ExportOptions(calibration_samples=200), verbose=False)
        x, y = view.test_subset(1000, 0)
        xn = view.normalize(x, "NHWC")
        ref = res.backend.predict_outputs(res.model, view.normalize(x, res.backend.LAYOUT))

        def measure(path):
            r = open_runner(path, threads=None)
            try:
                got = r.predict_outputs(xn)
            finally:
                r.close()
            got = matched(ref, got, path.name)[0]
            snr = min(f["snr_db"] for f in fidelity(got, ref).values())
            q = t.quality(got, xn, y, view)
            return snr, q["value"]
        src_q = t.quality(ref, xn, y, view)["value"]
        for r in results:
            snr, q = measure(r.path)
            rows.append({"framework": fw, "arch": arch, "task": t.name, "file": r.format, "case": "as exported",
                         "snr_db": round(snr, 2), "metric": t.metric, "source": round(src_q, 4), "file_value": round(q, 4)})
            if r.format == "onnx-int8":
                for factor in (4.0, 0.25):
                    bad = work / f"bad-{fw}-{arch}-{factor}.onnx"
                    where = _broken(r.path, bad, factor)
                    snr_b, q_b = measure(bad)
                    rows.append({"framework": fw, "arch": arch, "task": t.name, "file": r.format,
                                 "case": f"scale of {where} x {factor:g}", "snr_db": round(snr_b, 2), "metric": t.metric,
                                 "source": round(src_q, 4), "file_value": round(q_b, 4)})
        print(json.dumps(rows[-4:], indent=1), flush=True)
    out = {"cpu": cpu_label(), "epochs": args.epochs, "images": 1000, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()

"""Does OpenVINO's CPU plugin saturate int8 sums where ONNX Runtime does (x86 without VNNI)?

    python tools/openvino_isa_check.py MODEL.int8.onnx --data cifar10 --data-dir DIR [--caps none,AVX512_CORE,AVX2]

Runs one int8 `.onnx` on the full test set in OpenVINO (its default and the f32 hint), once per oneDNN ISA cap
(`ONEDNN_MAX_CPU_ISA`, read by the oneDNN inside OpenVINO's CPU plugin at its first dispatch, so each cap runs in a
fresh process), and prints what executed each convolution and matmul (the compiled model's `primitiveType`, so a
cap that did not take effect shows), beside ONNX Runtime on this CPU and edgepack's NumPy reference of the two
kernel classes (`exact`: int32 sums; `u8s8-sat16`: vpmaddubsw's saturating int16 pair sums). A cap reproduces
oneDNN's kernels of a lower ISA on a CPU that has a higher one; it is not the other CPU (its OpenVINO-own kernels
are not capped in release wheels). Prints one Markdown table; not part of the installed package.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

_CHILD = r"""
import collections, json, sys
import numpy as np
import openvino as ov
path, hint, x_path = sys.argv[1], sys.argv[2], sys.argv[3]
x = np.load(x_path)
core = ov.Core()
cfg = {"INFERENCE_NUM_THREADS": 1}
if hint != "default":
    cfg["INFERENCE_PRECISION_HINT"] = hint
compiled = core.compile_model(core.read_model(path), "CPU", cfg)
kinds = collections.Counter()
for op in compiled.get_runtime_model().get_ordered_ops():
    rt = op.get_rt_info()
    layer = rt["layerType"].astype(str)
    if layer in ("Convolution", "FullyConnected", "MatMul", "GroupConvolution"):
        kinds[f"{layer} {rt['primitiveType'].astype(str)}"] += 1
req = compiled.create_infer_request()
out = []
for i in range(0, len(x), 256):
    req.infer({0: x[i:i + 256]})
    out.append(req.get_output_tensor(0).data.copy())
print(json.dumps({"pred": np.concatenate(out).argmax(1).tolist(), "kinds": dict(kinds),
                  "version": ov.get_version()}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--data", required=True)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--caps", default="none,AVX512_CORE,AVX2")
    ap.add_argument("--scratch", default="/tmp/ov_isa_x.npy")
    a = ap.parse_args()

    import numpy as np

    from edgepack.runtimes.machine import cpu_label, onnxruntime_kernel_class
    from edgepack.runtimes import open_runner
    from edgepack.runtimes.qdq_reference import QdqReferenceRunner
    from edgepack.toolkit.data import load_dataset

    ds = load_dataset(a.data, a.data_dir)
    x, y = ds.normalize(ds.x_test), ds.y_test
    ort = open_runner(a.model).load()
    np.save(a.scratch, np.ascontiguousarray(ort.prepare(x), dtype=np.float32))   # the file's layout, as every runner
    acc = lambda p: 100 * float((np.asarray(p) == y).mean())  # noqa: E731
    print(f"CPU: {cpu_label()}; ONNX Runtime kernel class here: {onnxruntime_kernel_class()}; "
          f"{len(y):,} test images of {ds.name}; file {a.model}\n")
    rows = [("ONNX Runtime (this CPU)", "-", acc(ort.predict(x).argmax(1)), "")]
    for kc in ("exact", "u8s8-sat16"):
        rows.append((f"NumPy reference, {kc} class", "-", acc(QdqReferenceRunner(a.model, kernel_class=kc).load()
                                                                 .predict(x).argmax(1)), ""))
    for cap in a.caps.split(","):
        env = dict(os.environ)
        env.pop("ONEDNN_MAX_CPU_ISA", None)
        if cap != "none":
            env["ONEDNN_MAX_CPU_ISA"] = cap
        for hint in ("default", "f32"):
            r = subprocess.run([sys.executable, "-c", _CHILD, a.model, hint, a.scratch], env=env,
                               capture_output=True, text=True, check=True)
            res = json.loads(r.stdout.strip().splitlines()[-1])
            kinds = ", ".join(f"{k} x{v}" for k, v in sorted(res["kinds"].items()))
            rows.append((f"OpenVINO {res['version'].split('-')[0]} ({hint})", cap, acc(res["pred"]), kinds))
    print("| runtime | oneDNN ISA cap | accuracy | convolution / matmul kernels |")
    print("| --- | --- | ---: | --- |")
    for name, cap, accuracy, kinds in rows:
        print(f"| {name} | {cap} | {accuracy:.2f}% | {kinds} |")


if __name__ == "__main__":
    main()

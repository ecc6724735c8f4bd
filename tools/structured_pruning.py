"""Structured pruning really cuts cost: parameters and MACs read back from the exported ONNX files
after the channels are gone, and ONNX Runtime latency (batch 1, 1 thread) of dense vs pruned, measured by
the harness in one run. Models: cifar-base (a trained checkpoint if given, else fresh weights: latency and
MACs do not depend on the weight values), torchvision resnet18 and mobilenet_v2 at CIFAR size.

    python -m tools.structured_pruning [--checkpoint runs/.../model.pt] [--ratio 0.5]
Writes benchmarks/results/structured_pruning.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="a trained cifar-base checkpoint (optional)")
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"))
    args = ap.parse_args(argv)
    import torch
    import torchvision
    from edgepack.benchmarks.harness import BenchSettings, benchmark
    from edgepack.runtimes.machine import machine_record
    from edgepack.toolkit.api import load_checkpoint
    from edgepack.toolkit.arch import get_arch
    from edgepack.toolkit.backends import get_backend
    from edgepack.toolkit.backends.torch.compress import prune_structured
    from edgepack.toolkit.backends.torch.export import to_onnx

    T = get_backend("torch")
    models = {"cifar-base": load_checkpoint(args.checkpoint).model if args.checkpoint else T.build(get_arch("cifar-base")),
              "resnet18": torchvision.models.resnet18(num_classes=10), "mobilenet_v2": torchvision.models.mobilenet_v2(num_classes=10)}
    rows = []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        files = []
        for name, model in models.items():
            example = torch.randn(1, 3, 32, 32)
            to_onnx(model, d / f"{name}.dense.onnx", (32, 32, 3))
            pruned = prune_structured(model, example, args.ratio, "l1")
            to_onnx(pruned, d / f"{name}.pruned.onnx", (32, 32, 3))
            files += [d / f"{name}.dense.onnx", d / f"{name}.pruned.onnx"]
        results = benchmark(files, "cifar10", args.data_dir, BenchSettings(threads=[1], runs=200, min_seconds=2.0,
                                                                           accuracy=bool(args.checkpoint)), progress=print)
        by = {Path(r.model).name: r for r in results}
        for name in models:
            dn, pr = by[f"{name}.dense.onnx"], by[f"{name}.pruned.onnx"]
            rows.append({"model": name, "ratio": args.ratio, "dense": {"params": dn.params, "macs": dn.macs, "p50_ms": dn.latency_ms["p50"],
                                                                      "size_bytes": dn.size_bytes, "accuracy": dn.accuracy},
                         "pruned": {"params": pr.params, "macs": pr.macs, "p50_ms": pr.latency_ms["p50"], "size_bytes": pr.size_bytes,
                                    "accuracy": pr.accuracy},
                         "macs_removed": 1 - pr.macs / dn.macs, "latency_ratio": pr.latency_ms["p50"] / dn.latency_ms["p50"]})
    RESULTS.mkdir(exist_ok=True)
    rec = {"date": time.strftime("%Y-%m-%d %H:%M"), "command": "python -m tools.structured_pruning " + " ".join(argv or sys.argv[1:]),
           "machine": machine_record(), "rows": rows}
    (RESULTS / "structured_pruning.json").write_text(json.dumps(rec, indent=2))
    lines = ["# Structured pruning: parameters, MACs and latency after the channels are gone", "",
             f"{rec['date']}, {rec['machine']['cpu']} ({rec['machine']['cores']} cores), ONNX Runtime "
             f"{rec['machine']['runtimes'].get('onnxruntime')}, batch 1, 1 thread, p50 over >= 200 runs; "
             f"L1 filter criterion, {args.ratio:.0%} of the channels of every prunable layer (Torch-Pruning), "
             "figures read from the exported ONNX files.", f"Command: `{rec['command']}`", "",
             "| model | params dense -> pruned | MACs dense -> pruned | MACs removed | p50 dense -> pruned | latency ratio |",
             "| --- | --- | --- | ---: | --- | ---: |"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['dense']['params']:,} -> {r['pruned']['params']:,} | {r['dense']['macs']:,} -> "
                     f"{r['pruned']['macs']:,} | {100 * r['macs_removed']:.1f}% | {r['dense']['p50_ms']:.3f} -> "
                     f"{r['pruned']['p50_ms']:.3f} ms | x{r['latency_ratio']:.2f} |")
    lines += ["", "Accuracy is not part of this measurement unless a trained checkpoint is given (latency and MACs do not "
              "depend on the weight values); the accuracy cost of structured pruning with fine-tuning is measured in "
              "the cifar10_torch recipe.", ""]
    (RESULTS / "structured_pruning.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

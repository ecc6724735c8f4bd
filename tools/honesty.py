"""Are the harness's numbers honest? Two checks, written to benchmarks/results/honesty.{json,md}:

1. Harness vs a bare timing loop: the harness's p50 and the p50 of `for: t0; session.run(...); t1` around the
   same runtime call, same model, same input, same thread count, measured back to back (A, B, A, B, ...).
   Target: within 3%.
2. Repeatability: the harness run several times on the same model; max/min of the p50s. Target: within 5%.

Usage: python -m tools.honesty [--data-dir ../shared/data/mnist] [--model FILE ...]
(without --model it trains and exports a small MNIST model first).
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"

BARE = r"""
import json, sys, time, numpy as np
model, data_dir, runs, threads, data = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
from edgepack.toolkit.data import load_dataset
ds = load_dataset(data, data_dir)
x = ds.normalize(ds.x_test[:1])
if model.endswith(".onnx"):
    import onnxruntime as ort
    so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.inter_op_num_threads = 1
    s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    i = s.get_inputs()[0]
    feed = {i.name: (x.transpose(0, 3, 1, 2) if i.shape[1] == x.shape[3] else x).astype(np.float32)}
    names = [o.name for o in s.get_outputs()]
    call = lambda: s.run(names, feed)
else:
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=model, num_threads=threads); it.allocate_tensors()
    d = it.get_input_details()[0]
    xin = x
    if d["dtype"] != np.float32:
        sc, zp = d["quantization"]; info = np.iinfo(d["dtype"])
        xin = np.clip(np.round(x / sc + zp), info.min, info.max).astype(d["dtype"])
    oi = it.get_output_details()[0]["index"]
    def call():
        it.set_tensor(d["index"], xin); it.invoke(); return it.get_tensor(oi)
for _ in range(5):
    call()
lat = []
for _ in range(runs):
    t = time.perf_counter_ns(); call(); lat.append((time.perf_counter_ns() - t) / 1e6)
print(json.dumps({"p50": float(np.percentile(lat, 50)), "runs": runs}))
"""


def bare_p50(model: Path, data_dir: str, runs: int, threads: int, data: str) -> float:
    out = subprocess.run([sys.executable, "-c", BARE, str(model), data_dir, str(runs), str(threads), data],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["p50"]


def harness_p50(model: Path, data_dir: str, runs: int, threads: int, data: str) -> float:
    from edgepack.benchmarks.harness import BenchSettings, benchmark
    (r,) = benchmark([model], data, data_dir, BenchSettings(threads=[threads], warmup=5, runs=runs, min_seconds=0,
                                                                accuracy=False), progress=lambda m: None)
    if not r.ok:
        raise SystemExit(r.error)
    return r.latency_ms["p50"]


def make_models(data_dir: str, work: Path) -> list[Path]:
    from edgepack.exporters.api import export_checkpoint
    from edgepack.toolkit.api import train
    from edgepack.toolkit.train import TrainConfig
    res = train("keras", "mnist-tutorial", "mnist", data_dir, out=work / "ckpt", config=TrainConfig(epochs=1), verbose=False)
    out = export_checkpoint(res.checkpoint, ["onnx", "tflite", "tflite-int8"], work / "exp", data_dir=data_dir, verbose=False)
    return [r.path for r in out]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"))
    ap.add_argument("--model", nargs="*", default=None)
    ap.add_argument("--data", default="mnist")
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5, help="alternating harness/bare measurements per model")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    from edgepack.runtimes.machine import machine_record
    with tempfile.TemporaryDirectory() as tmp:
        models = [Path(m) for m in args.model] if args.model else make_models(args.data_dir, Path(tmp))
        rows = []
        for m in models:
            h, b = [], []
            for _ in range(args.rounds):                       # interleaved so drift hits both equally
                h.append(harness_p50(m, args.data_dir, args.runs, args.threads, args.data))
                b.append(bare_p50(m, args.data_dir, args.runs, args.threads, args.data))
            hm, bm = float(np.median(h)), float(np.median(b))
            rows.append({"model": m.name, "harness_p50_ms": h, "bare_p50_ms": b, "harness_median_ms": hm, "bare_median_ms": bm,
                         "harness_vs_bare": hm / bm - 1, "repeat_spread": max(h) / min(h) - 1,
                         "within_3pct": abs(hm / bm - 1) <= 0.03, "repeat_within_5pct": max(h) / min(h) - 1 <= 0.05})
            print(f"{m.name}: harness {hm:.4f} ms vs bare {bm:.4f} ms ({100 * (hm / bm - 1):+.1f}%), "
                  f"harness spread over {args.rounds} runs {100 * (max(h) / min(h) - 1):.1f}%", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {"date": time.strftime("%Y-%m-%d %H:%M"), "command": "python -m tools.honesty " + " ".join(argv or sys.argv[1:]),
              "runs_per_measurement": args.runs, "rounds": args.rounds, "threads": args.threads,
              "machine": machine_record(), "python": platform.python_version(), "rows": rows}
    tag = "" if args.data == "mnist" else f"_{args.data}"
    (RESULTS / f"honesty{tag}.json").write_text(json.dumps(record, indent=2))
    lines = ["# Harness honesty", "", f"Measured {record['date']} on {record['machine']['cpu']} ({record['machine']['cores']} cores), "
             f"{args.threads} thread, batch 1, {args.runs} timed runs per measurement, {args.rounds} interleaved rounds.",
             f"Command: `{record['command']}`", "",
             "| model | harness p50 (median of rounds) | bare loop p50 | difference | harness p50 spread across rounds |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['harness_median_ms']:.4f} ms | {r['bare_median_ms']:.4f} ms | "
                     f"{100 * r['harness_vs_bare']:+.1f}% | {100 * r['repeat_spread']:.1f}% |")
    lines += ["", "Targets: harness within 3% of the bare loop; repeated harness p50s within 5% of each other.",
              "The machine is a shared 2-core VM, so it is not a quiet machine: spreads include neighbours' noise.", ""]
    (RESULTS / f"honesty{tag}.md").write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

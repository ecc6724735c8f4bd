"""Where a CIFAR-10 training epoch's time goes on this CPU: the shared batch pipeline (crop + flip + normalize)
against the PyTorch train step that `fit` runs (forward, backward, SGD), per batch, and optionally the same step
under torch.compile. Each part is timed `--repeats` times, interleaved in one run, and the median is reported,
since timings on a shared host drift by the minute.

    python -m tools.epoch_profile [--arch resnet8] [--batch-size 128] [--compile] [--bf16]
Prints one table; `--json PATH` writes the figures with the machine record.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"


def _timed(fn, batches) -> float:
    """Mean seconds per batch of fn over `batches`."""
    t = time.perf_counter()
    for b in batches:
        fn(*b)
    return (time.perf_counter() - t) / len(batches)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet8")
    ap.add_argument("--data-dir", default=str(DEFAULT_DATA))
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--batches", type=int, default=40, help="batches per timing (default 40)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--compile", action="store_true", help="also time the step under torch.compile")
    ap.add_argument("--bf16", action="store_true", help="also time the step in bf16 (the train option precision = bf16)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.batch_size < 1 or args.batches < 1 or args.repeats < 1:
        print("epoch_profile: --batch-size, --batches and --repeats must be positive", file=sys.stderr)
        return 2

    import numpy as np
    import torch

    from edgepack.runtimes.machine import cpu_label, machine_record
    from edgepack.toolkit.arch.zoo import get_arch
    from edgepack.toolkit.backends.torch.model import build
    from edgepack.toolkit.backends.torch.train import train_step
    from edgepack.toolkit.data import iterate_batches, load_dataset
    from edgepack.toolkit.errors import EdgepackError
    from edgepack.toolkit.train import TrainConfig

    try:
        ds = load_dataset("cifar10", args.data_dir, allow_download=False, allow_fallback=False, quiet=True)
        spec = get_arch(args.arch, input_shape=ds.input_shape, num_classes=ds.num_classes)
    except EdgepackError as e:
        print(f"epoch_profile: {e}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    idx = np.arange(len(ds.y_train))
    n = args.batches

    def pipeline(epoch):
        return iterate_batches(ds, idx, args.batch_size, "NCHW", shuffle=True, augment=True, seed=0, epoch=epoch)

    def data_only(epoch):
        t = time.perf_counter()
        for _ in zip(range(n), pipeline(epoch)):
            pass
        return (time.perf_counter() - t) / n

    model = build(spec)
    cfg = TrainConfig(batch_size=args.batch_size, optimizer="sgd", lr=0.1, weight_decay=5e-5)  # the recipe's

    def make_step(net, config=cfg):
        step = train_step(net, config)
        return lambda xb, yb: step(xb, yb, config.lr)

    steps = {"eager": make_step(model)}
    if args.bf16:
        steps["bf16"] = make_step(model, dataclasses.replace(cfg, precision="bf16"))
    compile_s = None
    if args.compile:
        steps["compiled"] = make_step(torch.compile(model))
        t = time.perf_counter()
        for b in zip(range(2), pipeline(99)):
            steps["compiled"](*b[1])
        compile_s = time.perf_counter() - t
    times = {"data": [], **{k: [] for k in steps}}
    for r in range(args.repeats):
        times["data"].append(data_only(r))
        batches = list(b for _, b in zip(range(n + 2), pipeline(100 + r)))
        for name, step in steps.items():
            _timed(step, batches[:2])                         # warm-up
            times[name].append(_timed(step, batches[2:]))
        print(f"epoch_profile: repeat {r + 1}/{args.repeats} done", file=sys.stderr, flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    per_epoch = len(idx) / args.batch_size
    cpu = cpu_label()
    print(f"{args.arch}, batch {args.batch_size}, {torch.get_num_threads()} threads, on {cpu} "
          f"(median of {args.repeats} x {n} batches)")
    print(f"  data pipeline (crop + flip + normalize): {med['data'] * 1e3:7.1f} ms/batch")
    for name in steps:
        total = med["data"] + med[name]
        print(f"  train step, {name:8s}: {med[name] * 1e3:7.1f} ms/batch -> epoch ~{per_epoch * total:.1f} s, "
              f"data {med['data'] / total:.0%} of it")
    if "compiled" in med:
        print(f"  torch.compile: x{med['eager'] / med['compiled']:.2f} on the step, {compile_s:.0f} s to compile")
    if "bf16" in med:
        print(f"  bf16 autocast: x{med['eager'] / med['bf16']:.2f} on the step")
    if args.json:
        Path(args.json).write_text(json.dumps({"arch": args.arch, "batch_size": args.batch_size, "cpu": cpu,
                                               "machine": machine_record(), "seconds_per_batch": times,
                                               "median": med, "compile_seconds": compile_s}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

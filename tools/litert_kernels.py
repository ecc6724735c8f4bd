"""Why is an int8 .tflite slower than its fp32 sibling? Times each file on LiteRT's three kernel paths
(batch 1, 1 thread, the same warm-up and median as a plain invoke loop): AUTO (built-in kernels + the default
XNNPACK delegate, what `edgepack bench` measures), BUILTIN_WITHOUT_DEFAULT_DELEGATES (TFLite's own optimized
kernels) and BUILTIN_REF (reference kernels). If fp32 wins only on the AUTO path, the gap is XNNPACK's fp32
speed-up that the int8 graph does not get, not the quantization itself.

    python -m tools.litert_kernels A.tflite B.tflite ... [--out benchmarks/results/litert_kernels.md]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgepack.runtimes.tflite import time_path

PATHS = ("AUTO", "BUILTIN_WITHOUT_DEFAULT_DELEGATES", "BUILTIN_REF")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--out", default=None, help="markdown file to write (default: print only)")
    args = ap.parse_args(argv)
    missing = [f for f in args.files if not Path(f).is_file()]
    if missing:
        print(f"litert_kernels: error: {missing[0]}: no such file", file=sys.stderr)
        return 2
    from edgepack.runtimes.machine import machine_record
    rows = ["| file | " + " | ".join(f"{p} (us)" for p in PATHS) + " |", "| --- |" + " ---: |" * len(PATHS)]
    for f in args.files:
        t = [time_path(f, p, args.runs) for p in PATHS]
        rows.append(f"| {f} | " + " | ".join(f"{v:.1f}" for v in t) + " |")
        print(rows[-1], flush=True)
    m = machine_record()
    text = ("# LiteRT kernel paths: median invoke time, batch 1, 1 thread\n\n"
            f"Command: `python -m tools.litert_kernels {' '.join(args.files)}`  \n"
            f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores; ai-edge-litert {m.get('runtimes', {}).get('ai-edge-litert', '?')}\n\n"
            + "\n".join(rows) + "\n")
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

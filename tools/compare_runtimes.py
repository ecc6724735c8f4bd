"""Compare two runtime environments (e.g. today's pins vs newer onnxruntime / ai-edge-litert) on the same files:
accuracy in each runtime and p50 at 1 thread, measured in alternating rounds (A B A B ...) so that background
load falls on both alike. Not part of the installed package.

    python tools/compare_runtimes.py --python-a .venv/bin/python --python-b /path/venv/bin/python \\
        --data mnist --data-dir ../shared/data/mnist --rounds 3 FILE...
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bench(python: str, files: list[str], data: str, data_dir: str, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([python, "-m", "edgepack.toolkit.cli", "bench", *files, "--data", data, "--data-dir", data_dir, "--threads", "1",
                    "--runs", "200", "--min-seconds", "1", "--json", str(out)], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return {r["model"]: r for r in json.loads(out.read_text())["results"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--python-a", required=True)
    ap.add_argument("--python-b", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    runs = {"a": [], "b": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.rounds):
            for side in ("a", "b"):
                runs[side].append(bench(getattr(a, f"python_{side}"), a.files, a.data, a.data_dir, Path(tmp) / f"{side}{i}.json"))
    first = {s: runs[s][0][next(iter(runs[s][0]))] for s in runs}
    ver = {s: first[s]["machine"]["runtimes"] for s in runs}
    print(f"CPU: {first['a']['machine']['cpu']} ({', '.join(first['a']['machine']['isa'])}); {a.rounds} alternating rounds, "
          f"p50 = median of the rounds' p50s, 1 thread, batch 1\n")
    print(f"A: onnxruntime {ver['a'].get('onnxruntime')}, ai-edge-litert {ver['a'].get('ai-edge-litert')}; "
          f"B: onnxruntime {ver['b'].get('onnxruntime')}, ai-edge-litert {ver['b'].get('ai-edge-litert')}\n")
    print("| file | runtime | accuracy A | accuracy B | p50 A [ms] | p50 B [ms] | B / A |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for f in a.files:
        key = str(Path(f))
        ra, rb = runs["a"][0].get(key, {}), runs["b"][0].get(key, {})
        pa = statistics.median(r[key]["latency_ms"]["p50"] for r in runs["a"])
        pb = statistics.median(r[key]["latency_ms"]["p50"] for r in runs["b"])
        acc = lambda r: "-" if r.get("accuracy") is None else f"{100 * r['accuracy']:.2f}%"  # noqa: E731
        print(f"| {Path(f).parent.name}/{Path(f).name} | {ra.get('runtime')} | {acc(ra)} | {acc(rb)} | {pa:.4f} | {pb:.4f} | {pb / pa:.2f} |")


if __name__ == "__main__":
    main()

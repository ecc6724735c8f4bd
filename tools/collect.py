"""Publish a finished run into benchmarks/results/<name>/: report.md, results.csv, results.json (without the raw
latency samples), the plots the report shows, and the machine record + command (inside the report/JSON).

    python -m tools.collect runs/mnist_tflite [--name mnist_tflite]
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def collect(run: Path, name: str | None = None) -> Path:
    run = Path(run)
    dest = RESULTS / (name or run.name)
    # hand-written notes beside a published run (README.md, SWEEP.md, ...) survive a re-publish
    notes = {p.name: p.read_text() for p in dest.glob("*.md") if p.name != "report.md"} if dest.exists() else {}
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for fname, text in notes.items():
        (dest / fname).write_text(text)
    report = (run / "report.md").read_text()
    for rel in re.findall(r"\]\(([^)]+\.png)\)", report):
        src = run / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dest / rel)
    (dest / "report.md").write_text(report)
    if (run / "results.csv").is_file():
        shutil.copy(run / "results.csv", dest / "results.csv")
    if (run / "results.json").is_file():
        data = json.loads((run / "results.json").read_text())
        for row in data.get("results", []):
            row.pop("latencies_ms", None)
        (dest / "results.json").write_text(json.dumps(data, indent=1))
    return dest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--name", default=None)
    a = ap.parse_args(argv)
    print(collect(Path(a.run), a.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())

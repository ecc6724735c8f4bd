"""Accuracy against training time, from a CSV of recorded training runs (one row a run), for users choosing their
own trade-off. Times measured on different CPU kinds are not comparable, so a plot holds one CPU kind.

    python -m edgepack.benchmarks.budget_curve benchmarks/results/cifar10_resnet8/budget.csv [--cpu "AMD EPYC"] [--target 0.85]
        [--out budget-xeon.png]

CSV columns: `run` (a label), `epochs`, `train_min` (empty: not recorded; such a run is left out), `cpu`, `n`
(test images), and one column per file whose accuracy was measured (`fp32`, `int8_tflite`, `int8_onnx`, ...).
The PNG is written beside the CSV (`<name>.png`, or `--out`: one image per CPU kind); each point carries its 95% interval on `n` images.
"""
from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path

from edgepack.benchmarks.report import wilson_interval
from edgepack.toolkit.outputs import save_figure

FIXED = ("run", "epochs", "train_min", "cpu", "n")


class CurveError(ValueError):
    """The CSV cannot be plotted (missing file or columns, no timed run of the CPU kind asked for)."""


def load_runs(path: Path) -> tuple[list[dict], list[str]]:
    """The rows and the accuracy columns of a budget CSV."""
    path = Path(path)
    if not path.is_file():
        raise CurveError(f"{path}: no such file")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        missing = [c for c in FIXED if c not in cols]
        if missing:
            raise CurveError(f"{path}: missing column(s) {', '.join(missing)}")
        acc_cols = [c for c in cols if c not in FIXED]
        if not acc_cols:
            raise CurveError(f"{path}: no accuracy column beside {', '.join(FIXED)}")
        return list(reader), acc_cols


def timed_runs(rows: list[dict], cpu: str | None = None) -> tuple[str, list[dict]]:
    """The runs with a recorded training time on one CPU kind (default: the kind with the most timed runs),
    sorted by time."""
    timed = [r for r in rows if (r.get("train_min") or "").strip()]
    if not timed:
        raise CurveError("no run has a recorded training time")
    kinds = Counter(r["cpu"] for r in timed)
    cpu = cpu or kinds.most_common(1)[0][0]
    mine = [r for r in timed if cpu.lower() in r["cpu"].lower()]
    if not mine:
        raise CurveError(f"no timed run on a CPU matching {cpu!r}; timed runs are on: {', '.join(sorted(kinds))}")
    return mine[0]["cpu"], sorted(mine, key=lambda r: float(r["train_min"]))


LABEL_LINE_PT = 11     # one 7-pt run label's line: the step between stacked labels, and the room each needs


def headroom(anchor: float, offset_pt: float, y_lo: float, height_pt: float) -> float:
    """The lowest top of the y axis at which a point `offset_pt` points above `anchor` is still inside an axes
    `height_pt` points tall whose bottom is `y_lo` (one point is (top - y_lo) / height_pt data units)."""
    k = offset_pt / height_pt
    if k >= 1:
        raise CurveError(f"{offset_pt:g} pt of stacked labels do not fit in a {height_pt:g} pt tall plot")
    return (anchor - k * y_lo) / (1 - k)


def plot(path: Path, cpu: str | None = None, target: float | None = 0.85, out: Path | None = None) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, acc_cols = load_runs(path)
    cpu_name, runs = timed_runs(rows, cpu)
    fig, ax = plt.subplots(figsize=(8, 5))
    times = [float(r["train_min"]) for r in runs]
    close = 0.06 * max(max(times) - min(times), 1.0)      # runs nearer than this in time share one place on the axis
    levels = [0]
    for a, b in zip(times, times[1:]):
        levels.append(levels[-1] + 1 if b - a < close else 0)
    markers, glyphs = "os^D", "\u25cf\u25a0\u25b2\u25c6"  # a run's marker, and the same shape before its label
    for i, col in enumerate(acc_cols):
        for lv in sorted(set(levels)):
            pts = [(t, float(r[col]), int(r["n"])) for t, r, level in zip(times, runs, levels)
                   if level == lv and (r.get(col) or "").strip()]
            if not pts:
                continue
            xs = [p[0] + (i - (len(acc_cols) - 1) / 2) * 0.25 for p in pts]   # side by side, not on top of each other
            ys = [100 * p[1] for p in pts]
            lo = [100 * (p[1] - wilson_interval(p[1], p[2])[0]) for p in pts]
            hi = [100 * (wilson_interval(p[1], p[2])[1] - p[1]) for p in pts]
            ax.errorbar(xs, ys, yerr=[lo, hi], fmt=markers[lv % 4], color=f"C{i}", capsize=3,
                        label=col.replace("_", " ") if lv == 0 else None)
    tops = [max([wilson_interval(float(r[c]), int(r["n"]))[1] for c in acc_cols if (r.get(c) or "").strip()],
                default=None) for r in runs]
    cluster = [0]
    for lv in levels[1:]:
        cluster.append(cluster[-1] + (lv == 0))
    ax.set_xlabel("training time (min)")
    ax.set_ylabel("test accuracy (%), 95% interval")
    ax.set_title(f"Accuracy against training time on {cpu_name}", fontsize=10)
    if target:                                            # named in the legend, where no run label can cover it
        ax.axhline(100 * target, color="grey", linestyle="--", linewidth=1, label=f"target {100 * target:g}%")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    ax.margins(x=0.12, y=0.12)
    fig.tight_layout()                                    # the axes' final size: the label room below depends on it
    x_lo, x_hi = ax.get_xlim()
    labels = []                                                          # (x, anchor %, offset pt, text)
    for t, r, lv, top, cl in zip(times, runs, levels, tops, cluster):   # labels above the highest interval, stacked
        anchor = max(tp for tp, c in zip(tops, cluster) if c == cl and tp is not None) if top is not None else None
        if anchor is not None:
            labels.append((t, 100 * anchor, 4 + LABEL_LINE_PT * lv, f"{glyphs[lv % 4]} {r['run']}"))
    height_pt = ax.get_position().height * fig.get_figheight() * 72
    y_lo, y_hi = ax.get_ylim()
    y_hi = max([y_hi] + [headroom(a, off + LABEL_LINE_PT, y_lo, height_pt) for _, a, off, _ in labels])
    ax.set_ylim(y_lo, y_hi)                                               # every stacked label inside the axes
    for t, a, off, text in labels:                                        # text runs inwards from its run's time
        ax.annotate(text, (t, a), textcoords="offset points", xytext=(0, off), fontsize=7,
                    ha="left" if t < (x_lo + x_hi) / 2 else "right")
    out = Path(out) if out else Path(path).with_suffix(".png")
    if out.suffix.lower() != ".png":
        raise CurveError(f"{out}: the plot is written as PNG; give a .png path")
    save_figure(fig, out, 120)
    plt.close(fig)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgepack.benchmarks.budget_curve", description=__doc__.split("\n\n")[0])
    ap.add_argument("csv", type=Path)
    ap.add_argument("--cpu", help="CPU kind to plot (a part of its name; default: the kind with the most timed runs)")
    ap.add_argument("--target", type=float, default=0.85, help="accuracy line to draw (0: none)")
    ap.add_argument("--out", type=Path, help="PNG to write (default: beside the CSV, <name>.png)")
    args = ap.parse_args(argv)
    try:
        out = plot(args.csv, args.cpu, args.target or None, args.out)
    except CurveError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

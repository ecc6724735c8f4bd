"""What a deploy writes: `choose` judges and picks, then writes DIR/best.* with its manifest, deploy.json,
candidates.md, deploy.md (the candidate table with reasons, the Pareto plot, the per-layer attribution, the search's
trials) and the task's example predictions."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from edgepack.toolkit.deploy.rows import Row
from edgepack.toolkit.deploy.select import host_timing_note, pick
from edgepack.toolkit.errors import ModelError
from edgepack.toolkit.outputs import atomic_text, save_figure


def table(rows: list[Row]) -> list[str]:
    """Markdown: every candidate, fastest first, with its verdict (and the tensor arena, where one was measured)."""
    arenas = any(r.arena is not None for r in rows)
    metrics = {r.metric for r in rows}
    metric = next((m for m in metrics if m not in (None, "accuracy")), "accuracy" if "accuracy" in metrics else "quality")
    out = ["| candidate | runtime | p50 ms | size B | gzip B | " + ("tensor arena B | " if arenas else "") + f"{metric} | verdict |",
           "| --- | --- | ---: | ---: | ---: | " + ("---: | " if arenas else "") + "---: | --- |"]
    for r in sorted(rows, key=lambda r: (r.p50_ms is None, r.p50_ms or 0)):
        acc = "-" if r.accuracy is None else (f"{r.accuracy:.2f}%" if r.metric in (None, "accuracy") else
                                              f"{r.accuracy / 100:.4f}")
        verdict = "**picked**" if r.picked else ("ok" if not r.reasons else "; ".join(r.reasons))
        if r.notes:
            verdict += " (verification notes below)"
        arena = (f"{'-' if r.arena is None else f'{r.arena:,}'} | " if arenas else "")
        out.append(f"| {r.label} | {r.runtime or '-'} | {'-' if r.p50_ms is None else f'{r.p50_ms:.4f}'} | "
                   f"{'-' if r.size is None else f'{r.size:,}'} | {'-' if r.gzip is None else f'{r.gzip:,}'} | {arena}{acc} | {verdict} |")
    return out


def notes_lines(rows: list[Row]) -> list[str]:
    """Markdown: each file's verification notes, once per file."""
    seen, out = set(), []
    for r in rows:
        if r.notes and r.file not in seen:
            seen.add(r.file)
            out += [f"- {r.label}: {n}" for n in r.notes]
    return (["", "Verification notes:", ""] + out) if out else []


def _log_share(x: float, xs: list[float]) -> float:
    """Where x lies between the smallest and largest of xs on a log axis (0 to 1; 0.5 when they are all one)."""
    import math
    lo, hi = math.log(min(xs)), math.log(max(xs))
    return 0.5 if hi <= lo else (math.log(x) - lo) / (hi - lo)


def pareto_plot(rows: list[Row], path, title: str) -> str | None:
    """p50 against file size, accuracy as colour; rejected candidates hollow, the pick starred."""
    pts = [r for r in rows if r.p50_ms is not None and r.size is not None and not r.error]
    if not pts:
        return None
    sizes = [r.size for r in pts]
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5.5))
    accs = [r.accuracy for r in pts if r.accuracy is not None]
    lo, hi = (min(accs), max(accs)) if accs else (0, 1)
    if accs and hi - lo < 1.0:                   # a spread under 1 point is not worth a full colour range
        mid = (hi + lo) / 2
        lo, hi = mid - 0.5, mid + 0.5
    cmap = plt.get_cmap("viridis")
    for r in pts:
        c = cmap((r.accuracy - lo) / (hi - lo) if r.accuracy is not None and hi > lo else 0.5)
        if r.picked:
            ax.scatter(r.size, r.p50_ms * 1e3, s=260, marker="*", color=c, edgecolors="red", linewidths=1.5, zorder=3)
        else:
            ax.scatter(r.size, r.p50_ms * 1e3, s=60, facecolors=c if not r.reasons else "none", edgecolors=c, zorder=2)
        right = _log_share(r.size, sizes) > 0.6          # labels of the right-hand points run leftwards, inside the axes
        gap = 9 if r.picked else 4                        # clear of the star
        ax.annotate(f"{r.label} ({r.runtime})", (r.size, r.p50_ms * 1e3), fontsize=7, xytext=(-gap if right else gap, 3),
                    textcoords="offset points", ha="right" if right else "left")
    ax.set_xscale("log")
    ax.margins(x=0.08, y=0.08)
    ax.set_xlabel("file size (bytes, log)")
    ax.set_ylabel("p50 latency (us)")
    ax.set_title(title, fontsize=9)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(lo, hi))
    metric = next((r.metric for r in pts if r.metric), None)
    if accs:                                     # no figure measured: no colour bar pretending one
        fig.colorbar(sm, ax=ax, label="accuracy (%)" if metric in (None, "accuracy") else f"{metric} (x 100)")
    ax.text(0.01, 0.01, "filled: within budgets; hollow: rejected; star: pick", transform=ax.transAxes, fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, 120)
    plt.close(fig)
    return str(path)


EXAMPLE_IMAGES = 6


def draw_examples(out: Path, task, ds, chosen: list) -> list[str]:
    """The task's side-by-side figure of the chosen rows (the fp32 reference and the pick) on a few test images
    (detection: their boxes), each file run in its runtime only if the task draws one; report lines linking it."""
    from edgepack.runtimes import open_runner
    x, y = ds.x_test[:EXAMPLE_IMAGES], ds.y_test[:EXAMPLE_IMAGES]
    xn = ds.normalize(x, "NHWC").astype(np.float32)

    def outputs_of(row):
        def run():
            runner = open_runner(row.file, threads=1, runtime=row.runtime)
            try:
                return runner.predict_outputs(xn)
            finally:
                runner.close()
        return run
    unique = [r for k, r in enumerate(chosen) if not any(r is c for c in chosen[:k])]      # the pick may be fp32
    files = [(f"{r.label} ({r.runtime})", outputs_of(r)) for r in unique]
    path = task.draw_examples(ds, x, y, files, out / "examples.png")
    return ["", "## Predictions on the first test images", "", "![examples](examples.png)"] if path else []


def write_report(out: Path, rows, best, budgets, reference, info, attributions, heading: str, searched=None,
            failure: str = "", extra: list[str] = ()) -> Path:
    from edgepack.runtimes.machine import cpu_label
    from edgepack.exporters.mixed import attribution_table
    from edgepack.toolkit.tasks import get_task
    m = info["machine"]
    where = f"{m.get('cpu')} ({', '.join(m.get('isa') or []) or m.get('arch')})" if m else cpu_label()
    plot = pareto_plot(rows, out / "pareto.png", f"{heading}: p50 vs size on {where}, {info['threads']} thread(s)")
    lines = [f"# {heading}", "", f"- source: `{info['source']}`, data: {info['data']}",
             f"- measured on: **{where}**, ONNX Runtime int8 kernel class `{m.get('ort_int8_kernel_class')}`; "
             f"{info['threads']} thread(s); {info.get('timing') or 'timing settings not recorded'}",
             f"- task: {(info.get('task') or {}).get('name', 'classification')}"
             + (f"; its quality figure: {info['metric']}" if info.get("metric") not in
                (None, "accuracy") else "; no quality figure: every candidate verified output by output" if
                info.get("task") and not info.get("metric") else ""),
             f"- budgets: {budgets.describe(info.get('metric', 'accuracy'))}; preference: {budgets.prefer}",
             f"- fp32 reference: {get_task(info.get('task')).format_figure(reference / 100)} "
             f"({info.get('reference_from') or 'the fp32 ONNX in ONNX Runtime'}, same run)" if reference is not None
             else "- fp32 reference: no quality figure (task without one)" if info.get("task") and not info.get("metric")
             else "- fp32 reference accuracy: not measured",
             (f"- **pick: {best.label}** in {best.runtime}: p50 {best.p50_ms:.4f} ms, {best.size:,} B, "
              f"{best.figure_text()} -> `best{Path(best.file).suffix}`"
              + (f" ({host_timing_note(best, budgets)})" if host_timing_note(best, budgets) else "")) if best is not None
             else f"- **no pick**: {failure} (an earlier `best.*` in this folder, if any, was left as it was)",
             "", "## Candidates", ""] + table(rows) + notes_lines(rows)
    if plot:
        lines += ["", "![pareto](pareto.png)"]
    lines += list(extra)
    if attributions:
        lines += ["", "## Per-layer attribution (source model's layer names)", "",
                  "Each layer kept float in turn, the rest int8; timed in the runtime (interleaved rounds) and compared "
                  "with the source on training images. 'Time int8 costs here' > 0: int8 made this layer slower.", ""]
        from edgepack.exporters.mixed import why_no_proposal
        for a in attributions:
            lines += attribution_table(a, best.float_layers if best is not None and best.format == a.format else []) + [""]
            if why_no_proposal(a):
                lines += [why_no_proposal(a) + ".", ""]
    if searched is not None:
        from edgepack.toolkit.deploy.search import search_table
        lines += ["", "## Mixed-precision search", ""] + search_table(searched, [t.number for t in searched.best()])
    path = out / "deploy.md"
    atomic_text(path, "\n".join(lines) + "\n")
    return path


def choose(out: Path, rows, budgets, reference, info, attributions=(), progress=print,
           heading: str = "edgepack deploy", searched=None, figures=None) -> dict:
    """Judge, pick, and write DIR/best.* (+ manifest), deploy.json, deploy.md and pareto.png (`figures(best)`: more
    report lines, e.g. the task's example predictions). When nothing meets the budgets the table is still written
    and any earlier best.* is left as it was."""
    def tables(best):
        atomic_text(out / "deploy.json", json.dumps({**info, "budgets": budgets.to_dict(),
                                                       "picked": best and best.to_dict(),
                                                       "candidates": [r.to_dict() for r in rows]}, indent=2, default=str))
        atomic_text(out / "candidates.md", "\n".join(table(rows)) + "\n")
    (out / "examples.png").unlink(missing_ok=True)        # this run's figure or none
    try:
        best = pick(rows, budgets, reference)
    except ModelError as e:                                # pick() has judged every row: write why, keep best.*
        tables(None)
        (out / "pareto.png").unlink(missing_ok=True)      # this run's plot or none: never an earlier run's pick
        write_report(out, rows, None, budgets, reference, info, list(attributions), heading, searched, failure=str(e))
        raise
    suffix = Path(best.file).suffix
    tmp = out / f".best{suffix}.tmp"
    shutil.copyfile(best.file, tmp)
    manifest = Path(best.file + ".json")
    record = json.loads(manifest.read_text()) if manifest.is_file() else {}
    record["deploy"] = {"picked": best.to_dict(), "budgets": budgets.to_dict(), "reference_accuracy": reference,
                        "machine": info["machine"], "threads": info["threads"]}
    atomic_text(out / f"best{suffix}.json", json.dumps(record, indent=2, default=str))
    os.replace(tmp, out / f"best{suffix}")
    for other in out.glob("best.*"):                      # one best file: drop a previous pick of another format
        if other.name not in (f"best{suffix}", f"best{suffix}.json"):
            other.unlink()
    tables(best)
    extra = figures(best) if figures else []
    report = write_report(out, rows, best, budgets, reference, info, list(attributions), heading, searched, extra=extra)
    progress("\n".join(table(rows)))
    progress(f"picked {best.label} in {best.runtime}: p50 {best.p50_ms:.4f} ms, {best.size:,} B, {best.figure_text()} "
             f"-> {out / ('best' + suffix)} (report {report})")
    if host_timing_note(best, budgets):
        progress("note: " + host_timing_note(best, budgets))
    return {"best": best, "rows": rows, "report": report}

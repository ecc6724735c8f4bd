"""The run report: one Markdown page over every step's recorded summary, plus merged bench results."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from edgepack.toolkit.tasks import get_task


def _pct(v):
    return "-" if v is None else f"{100 * v:.2f}%"


def _figure(accuracy, quality: dict | None) -> str:
    """A model's test figure: its accuracy, or its task's metric (ROC AUC) where it is not a classifier."""
    if accuracy is None and quality and quality.get("value") is not None:
        return f"{quality['metric']} {quality['value']:.4f}"
    return _pct(accuracy)


def _verified(v: dict, key: str) -> str:
    """A verification's source/export figure: a classifier's accuracy, else the task's (ROC AUC), else '-'."""
    if get_task(v.get("task")).top1:
        return _pct(v.get(key))
    q = v.get("quality") or {}
    value = q.get({"source_accuracy": "source_auc", "export_accuracy": "auc"}[key])
    return "-" if value is None else f"AUC {value:.4f}"


def epochs_cell(summary: dict) -> str:
    """A train step's epochs for the report; under a time budget, also the budget and the ceiling it planned within."""
    n, cfg = summary.get("epochs", "-"), summary.get("config") or {}
    precision = summary.get("precision", "fp32")
    named = "" if precision == "fp32" else precision    # the default arithmetic goes unsaid
    if not cfg.get("time_budget"):
        return f"{n} ({named})" if named else str(n)
    return (f"{n} of at most {cfg.get('epochs', '?')} ({cfg['time_budget']:g}-min time budget"
            + (f", {named}" if named else "")
            + (", stopped on time)" if summary.get("stopped_on_time") else ")"))


def write_run_report(runner, seconds: float) -> None:
    from edgepack.runtimes.machine import machine_record
    from edgepack.benchmarks.report import label
    out, recipe, st = runner.out, runner.recipe, runner.state["steps"]
    step_min = {k: v.get("seconds", 0) / 60 for k, v in st.items() if k in {s.id for s in recipe.steps}}
    lines = [f"# {recipe.name}", "", recipe.description or "", "",
             f"Data: `{recipe.data['name']}`" + (f" from `{recipe.data.get('dir')}`" if recipe.data.get("dir") else "")
             + (f" ({runner._dataset.source}{'; OFFLINE STAND-IN, not the real data set' if runner._dataset.fallback else ''}"
                f"; test sha256 {runner._dataset.test_sha256()[:12]})" if runner._dataset is not None else ""),
             f"Command: `{getattr(runner, 'command', None) or f'edgepack run {recipe.path}' + (' --out ' + str(out) if out else '')}`",
             f"Wall time of this invocation: {seconds / 60:.1f} min (skipped steps cost nothing); "
             f"every step as last run: {sum(step_min.values()):.1f} min "
             f"({', '.join(f'{k} {v:.1f}' for k, v in step_min.items())}).", ""]
    m = machine_record()
    lines += [f"Machine: {m['cpu']}, {m['cores']} cores; int8 ISA: {', '.join(m['isa']) or 'none'}; "
              f"{', '.join(f'{k} {v}' for k, v in m['runtimes'].items())}.", ""]
    timed = [(s.id, st[s.id]) for s in recipe.steps if s.kind == "bench" and st.get(s.id, {}).get("started")]
    if timed:
        import time as _time
        hms = lambda t: _time.strftime("%H:%M:%S", _time.localtime(t))  # noqa: E731
        lines += ["Benchmarks timed (a bench step has its node to itself): " + "; ".join(
            f"{k} on {e.get('node', '?')} {hms(e['started'])}-{hms(e['finished'])}" for k, e in timed) + ".", ""]
    trains = [(s.id, st[s.id]) for s in recipe.steps if s.kind in ("train", "transfer") and s.id in st]
    if trains:
        figure = "test accuracy" if all(info["summary"].get("test_quality") is None for _, info in trains) else "test figure"
        lines += ["## Models", "", f"| step | framework | arch | params | {figure} | epochs | train time | distilled from |",
                  "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |"]
        for sid, info in trains:
            s = info["summary"]
            lines.append(f"| {sid} | {s.get('framework', info['kind'])} | {s.get('arch', '-')} | {s.get('params', '-'):,} | "
                         f"{_figure(s.get('test_accuracy'), s.get('test_quality'))} | {epochs_cell(s)} | {s.get('train_seconds', '-')} s | "
                         f"{s.get('distilled_from', '-')} |" if isinstance(s.get("params"), int) else
                         f"| {sid} | {info['kind']} | - | - | {_pct(s.get('test_accuracy'))} | - | - | - |")
        lines += [""] + [f"![{sid} training]({sid}/history.png)" for sid, info in trains if info["kind"] == "train"] + [""]
    comps = [(s.id, st[s.id]) for s in recipe.steps if s.kind == "compress" and s.id in st]
    if comps:
        lines += ["## Compression", "", "| step | technique | params | non-zero | MACs | accuracy | time |",
                  "| --- | --- | --- | --- | --- | --- | ---: |"]
        for sid, info in comps:
            for r in info["summary"].get("steps", []):
                b, a = r["before"], r["after"]
                macs = f"{b['macs']:,} -> {a['macs']:,}" if b.get("macs") and a.get("macs") else "-"
                lines.append(f"| {sid} | {r['step']} | {b['params']:,} -> {a['params']:,} | {b['nonzero_params']:,} -> "
                             f"{a['nonzero_params']:,} | {macs} | {_pct(b['accuracy'])} -> {_pct(a['accuracy'])} | {r['seconds']} s |")
        lines.append("")
    exps = [(s.id, st[s.id]) for s in recipe.steps if s.kind == "export" and s.id in st]
    if exps:
        lines += ["## Exports (verified against the source model)", "",
                  "| step | format | file | bytes | gzip bytes | source acc | export acc | top-1 agreement | max abs diff | check |",
                  "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        for sid, info in exps:
            for fmt, s in info["summary"].items():
                v = s.get("verification") or {}
                lines.append(f"| {sid} | {fmt} | {s.get('file') or '-'} | {s.get('bytes') or '-':,} | {s.get('gzip_bytes') or '-':,} | "
                             f"{_verified(v, 'source_accuracy')} | {_verified(v, 'export_accuracy')} | "
                             f"{_pct(v.get('top1_agreement')) if get_task(v.get('task')).top1 else '-'} | "
                             f"{v.get('max_abs_diff', 0):.2g} | {'passed' if s['ok'] else 'FAILED: ' + str(s.get('error'))} |"
                             if s.get("bytes") else f"| {sid} | {fmt} | - | - | - | - | - | - | - | FAILED: {s.get('error')} |")
        lines += ["", "Verification accuracies are on N test images drawn per class, seeded (N in each manifest); the full-test-set "
                  "figures are in the benchmark table.", ""]
    benches = [(s.id, st[s.id]) for s in recipe.steps if s.kind == "bench" and s.id in st]
    rows = []
    for sid, info in benches:
        rows += json.loads((out / info["primary"]).read_text())["results"]
    if rows:
        from edgepack.benchmarks.report import write_csv, write_json
        write_json(rows, out / "results.json")
        write_csv(rows, out / "results.csv")
        lines += ["## Benchmark (full test set, in the target runtime)", "",
                  "| model | runtime | threads | accuracy | p50 ms | p90 ms | size B | gzip B | params | non-zero | MACs | peak RSS MB |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for d in rows:
            if not d["ok"]:
                lines.append(f"| {label(d['model'])} | error: {d['error']} |" + " |" * 10)
                continue
            lines.append(f"| {label(d['model'])} | {d['runtime']} | {d['threads']} | {_figure(d['accuracy'], d.get('quality'))} | {d['latency_ms']['p50']:.3f} | "
                         f"{d['latency_ms']['p90']:.3f} | {d['size_bytes']:,} | {d['gzip_bytes']:,} | {d['params']:,} | "
                         f"{d['nonzero_params']:,} | {d['macs'] if d['macs'] is None else format(d['macs'], ',')} | {d['peak_rss_mb']:.1f} |")
        from edgepack.benchmarks.report import arena_lines, task_lines
        names = {d["model"]: label(d["model"]) for d in rows}
        figures = task_lines(rows, names)
        if figures:
            lines += ["", "Task figures (full test set, in the target runtime):", ""] + figures
        arena = arena_lines(rows, names, heading="###")
        if arena:
            lines += [""] + arena
        notes = [(d, n) for d in rows for n in d.get("diagnostics") or []]
        if notes:
            lines += ["", "Diagnostics:", ""] + [f"- {label(d['model'])} ({d['runtime']}, {d['threads']} thr): {n}" for d, n in notes]
        lines.append("")
        for sid, info in benches:
            lines += [f"![{Path(p).stem}]({p})" for p in info["outputs"] if p.endswith(".png")]
        lines.append("")
    curves = [(s.id, st[s.id]) for s in recipe.steps if s.kind == "prune-curve" and s.id in st]
    for sid, info in curves:
        lines += [f"## Pruning curves ({sid})", "", f"![pruning curves]({sid}/pruning_curves.png)", ""]
    tmp = out / ".report.md.tmp"
    tmp.write_text("\n".join(lines))
    tmp.replace(out / "report.md")
    print(f"report: {out / 'report.md'}", file=sys.stderr)

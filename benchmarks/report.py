"""Renderers: they only read `BenchResult` records, so any saved JSON can be rendered again without a rerun."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from edgepack.runtimes.base import arena_of
from edgepack.toolkit.outputs import atomic_text, save_figure

JSON_VERSION = 1
CSV_FIELDS = ["model", "format", "runtime", "threads", "ok", "error", "batch", "latency_min_ms", "latency_p50_ms",
              "latency_p90_ms", "latency_p99_ms", "latency_mean_ms", "latency_std_ms", "runs", "throughput_ips", "load_ms",
              "first_inference_ms", "size_bytes", "gzip_bytes", "params", "nonzero_params", "macs", "peak_rss_mb",
              "accuracy", "test_images", "energy_mj", "energy_method", "cpu", "diagnostics"]


def rows(results) -> list[dict]:
    return [r.to_dict() if hasattr(r, "to_dict") else r for r in results]


def cross_runtime_rows(results) -> list[dict]:
    """Files run on more than one runtime: accuracy, p50 and top-1 agreement with the file's first runtime, side by
    side (first thread count). A runtime that could not load the file is a row with its error."""
    ds = [r.to_dict(raw=True) if hasattr(r, "to_dict") else r for r in results]
    t0 = min((d["threads"] for d in ds), default=1)
    by_file: dict[str, list[dict]] = {}
    for d in ds:
        if d["threads"] == t0 and d.get("runtime"):
            by_file.setdefault(d["model"], []).append(d)
    out = []
    for model, group in by_file.items():
        if len({d["runtime"] for d in group}) < 2:
            continue
        ref = next((d for d in group if d.get("predictions")), None)
        for d in group:
            agree = None
            if ref is not None and d.get("predictions") and len(d["predictions"]) == len(ref["predictions"]):
                agree = sum(a == b for a, b in zip(d["predictions"], ref["predictions"])) / len(ref["predictions"])
            out.append({"model": model, "runtime": d["runtime"], "ok": d["ok"], "error": d.get("error"),
                        "accuracy": d.get("accuracy"), "p50": (d.get("latency_ms") or {}).get("p50"),
                        "agreement": agree, "versus": ref["runtime"] if ref is not None else None})
    return out


def write_json(results, path, extra: dict | None = None) -> None:
    atomic_text(path, json.dumps({"edgepack_bench_version": JSON_VERSION, **(extra or {}), "results": rows(results)}, indent=2))


def flat(d: dict) -> dict:
    lat = d.get("latency_ms") or {}
    e = d.get("energy_mj") or {}
    out = {k: d.get(k) for k in CSV_FIELDS if k in d}
    out.update({f"latency_{k}_ms": lat.get(k) for k in ("min", "p50", "p90", "p99", "mean", "std")}, runs=lat.get("runs"),
               energy_mj=e.get("value"), energy_method=e.get("method"), cpu=(d.get("machine") or {}).get("cpu"),
               diagnostics=" | ".join(d.get("diagnostics") or []))
    return out


def write_csv(results, path) -> None:
    import io
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    w.writeheader()
    for d in rows(results):
        w.writerow(flat(d))
    atomic_text(path, buf.getvalue())


def short_names(ds) -> dict:
    """model path -> the file name, or folder/file where two rows share a file name (model.int8.onnx twice)."""
    names = [Path(d["model"]).name for d in ds]
    return {d["model"]: (label(d["model"]) if names.count(Path(d["model"]).name) > 1 else Path(d["model"]).name) for d in ds}


def label(model: str) -> str:
    """folder/file: several runs often hold files with the same name."""
    p = Path(model)
    return f"{p.parent.name}/{p.name}" if p.parent.name else p.name


def _pct_or_dash(v):
    return "-" if v is None else f"{100 * v:.2f}%"


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def table_lines(results) -> list[str]:
    head = f"{'model':<34}{'runtime':<12}{'thr':>4}{'p50 ms':>9}{'p90 ms':>9}{'load ms':>9}{'size B':>12}{'gzip B':>12}{'params':>12}{'nnz':>12}{'MACs':>15}{'RSS MB':>8}{'figure':>9}"
    lines = [head, "-" * len(head)]
    ds = rows(results)
    names = short_names(ds)
    for d in ds:
        name = names[d["model"]]
        name = name if len(name) <= 33 else "…" + name[-32:]
        if not d["ok"]:
            lines.append(f"{name:<34}ERROR: {d['error']}")
            continue
        lat = d["latency_ms"]
        lines.append(f"{name:<34}{d['runtime'] or '-':<12}{d['threads']:>4}{lat['p50']:>9.3f}{lat['p90']:>9.3f}"
                     f"{_fmt(d['load_ms'], '.1f'):>9}{_fmt(d['size_bytes'], ','):>12}{_fmt(d['gzip_bytes'], ','):>12}"
                     f"{_fmt(d['params'], ','):>12}{_fmt(d['nonzero_params'], ','):>12}{_fmt(d['macs'], ','):>15}"
                     f"{_fmt(d['peak_rss_mb'], '.1f'):>8}{_headline_cell(d):>9}")
    return lines


def _headline_cell(d: dict) -> str:
    """The console's figure column: accuracy in percent as everywhere else, another task's metric as itself."""
    if d.get("accuracy") is not None:
        return f"{100 * d['accuracy']:.2f}%"
    v = _headline(d)
    return "-" if v is None else f"{v:.4f}"


def _headline(d: dict) -> float | None:
    """The task's figure: top-1 accuracy for a classifier, else the task's metric (ROC AUC), None for raw files."""
    if d.get("accuracy") is not None:
        return d["accuracy"]
    return (d.get("quality") or {}).get("value")


def arena_lines(ds: list[dict], names: dict, heading: str = "##") -> list[str]:
    """The report's "Tensor arena" section (Markdown lines, its heading at level `heading`; none when no file was run
    in a microcontroller runtime)."""
    arenas = [(d, arena_of(d.get("runtime_info"))) for d in ds if d["ok"]]
    arenas = [(d, a) for d, a in arenas if a is not None]
    if not arenas:
        return []
    return ([f"{heading} Tensor arena", "", "The RAM a microcontroller must give the file's tensors besides the file itself in "
             "flash, as TensorFlow Lite Micro's recording allocator measured it (reference kernels; optimized kernel "
             "libraries may add scratch buffers).", "", "| model | runtime | tensor arena B | file B |",
             "| --- | --- | ---: | ---: |"]
            + [f"| {names[d['model']]} | {d['runtime']} | {a:,} | {_fmt(d['size_bytes'], ',')} |" for d, a in arenas]
            + [""])


def task_lines(ds: list[dict], names: dict, markdown: bool = True) -> list[str]:
    """The figures of files measured as another task than classification, or with figures beside accuracy (keyword
    spotting's front-end time) (one line each, first thread count), as
    Markdown list items or as plain console lines."""
    from edgepack.toolkit.tasks import get_task
    t0 = min((d["threads"] for d in ds), default=1)
    out = []
    for d in ds:
        if not (d["ok"] and d.get("quality") and d["threads"] == t0):
            continue
        task = get_task(d.get("task"))
        if d["quality"].get("metric") != "accuracy" or task.figures_beside_accuracy:
            name = f"- **{names[d['model']]}**" if markdown else names[d["model"]]
            out.append(f"{name} ({d['runtime']}), task {task.name}: {task.quality_line(d['quality'])}")
    return out


def print_table(results, file=None) -> None:
    import sys
    file = file or sys.stdout
    for line in table_lines(results):
        print(line, file=file)
    emulated = next((d["machine"]["emulated"] for d in rows(results) if (d.get("machine") or {}).get("emulated")), None)
    if emulated:
        print(f"EMULATED ({emulated}): these timings are the emulator's, not a device's", file=file)
    ds = rows(results)
    for line in task_lines(ds, short_names(ds), markdown=False):   # another task's figures in full (mAP@0.5, ...)
        print(line, file=file)
    for d in rows(results):
        for msg in d.get("diagnostics") or []:
            print(f"note: {Path(d['model']).name} ({d['runtime']}, {d['threads']} thr): {msg}", file=file)


# ------------------------------------------------------------------ plots
def _pareto(points):
    """Indices of points not dominated (lower x, higher y)."""
    best, front = -1.0, []
    for i in sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1])):
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def wilson_interval(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% binomial (Wilson) interval of an accuracy measured on n images: how far it could move by chance."""
    if not n:
        return p, p
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / den
    return mid - half, mid + half


def busy_machine(d: dict) -> bool:
    """The timing spread says the machine was busy: std several times the median, or a p99 far above it."""
    lat = d.get("latency_ms") or {}
    return bool(lat) and (lat.get("std", 0) > 3 * lat["p50"] or lat.get("p99", 0) > 10 * lat["p50"])


def task_plots(ok: list[dict], names: dict, out_dir: Path) -> list[Path]:
    """Each task's own figure over the files measured as it (anomaly: the ROC curves in one plot)."""
    from edgepack.toolkit.tasks import get_task
    t0 = min((d["threads"] for d in ok), default=1)
    by_task: dict[str, list] = {}
    for d in ok:
        if d.get("quality") and d.get("task") and d["threads"] == t0:
            by_task.setdefault(d["task"]["name"], []).append((f"{names[d['model']]} ({d['runtime']})", d["quality"], d["task"]))
    made = []
    for name, curves in by_task.items():
        path = get_task(curves[0][2]).plot([(label, q) for label, q, _ in curves], out_dir / f"{name}.png")
        if path:
            made.append(Path(path))
    return made


def _pareto_plots(ok: list[dict], names: dict, out_dir: Path) -> list[Path]:
    """Accuracy against p50 latency and against size, the Pareto front marked (pareto_latency.png, pareto_size.png)."""
    import matplotlib
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    import numpy as np
    from edgepack.runtimes import runtime_label
    made = []
    models = list(dict.fromkeys(d["model"] for d in ok))
    number = {m: i + 1 for i, m in enumerate(models)}
    acc_of = {d["model"]: d for d in ok if d["accuracy"] is not None}          # accuracy: first thread count
    threads = sorted({d["threads"] for d in ok})
    compressible = [d for d in ok if d.get("gzip_bytes") and d.get("size_bytes")]
    ratios = [d["gzip_bytes"] / d["size_bytes"] for d in compressible]
    use_gzip = bool(ratios) and (max(ratios) - min(ratios) > 0.15)            # e.g. pruned files: only gzip shows it
    for key in ("p50", "size"):
        pts = []
        for d in ok:
            a = acc_of.get(d["model"])
            if a is None or (key == "size" and d["threads"] != threads[0]):
                continue
            lo, hi = wilson_interval(a["accuracy"], a.get("test_images") or 0)
            if key == "p50":
                q1, q3 = np.percentile(d["latencies_ms"], [25, 75]) if d.get("latencies_ms") else (d["latency_ms"]["p50"],) * 2
                x, xerr = d["latency_ms"]["p50"], (d["latency_ms"]["p50"] - q1, q3 - d["latency_ms"]["p50"])
            else:
                x, xerr = (d["gzip_bytes"] if use_gzip else d["size_bytes"]) / 1024, (0, 0)
            pts.append((d, x, xerr, 100 * a["accuracy"], (100 * (a["accuracy"] - lo), 100 * (hi - a["accuracy"]))))
        if not pts:
            continue
        fig, (ax, key_ax) = plt.subplots(1, 2, figsize=(11, 5.5), gridspec_kw={"width_ratios": [3, 1.25]})
        front = _pareto([(x, y) for _, x, _, y, _ in pts])
        present = list(dict.fromkeys(d["runtime"] for d, *_ in pts))
        markers = dict(zip(present, "osDvPX^<>"))
        for i, (d, x, xerr, y, yerr) in enumerate(pts):
            colour = f"C{threads.index(d['threads'])}" if key == "p50" else "C0"
            ax.errorbar(x, y, xerr=[[xerr[0]], [xerr[1]]], yerr=[[yerr[0]], [yerr[1]]], fmt=markers.get(d["runtime"], "^"),
                        color=colour, ms=7, mec="C3" if i in front else colour, mew=2 if i in front else 1, elinewidth=0.8,
                        capsize=2, zorder=3)
            ax.annotate(str(number[d["model"]]), (x, y), textcoords="offset points", xytext=(6, 5 - 14 * (i % 2)), fontsize=8,
                        weight="bold")
        fx = sorted((pts[i][1], pts[i][3]) for i in front)
        ax.plot([p[0] for p in fx], [p[1] for p in fx], "--", color="C3", drawstyle="steps-post", lw=1, label="Pareto front")
        for r, m in markers.items():
            ax.plot([], [], m, color="grey", label=runtime_label(r))
        if key == "p50" and len(threads) > 1:
            for t in threads:
                ax.plot([], [], "o", color=f"C{threads.index(t)}", label=f"{t} thread{'s' if t > 1 else ''}")
        if key == "p50":
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            ax.set_xlabel(f"p50 latency per inference, batch {ok[0]['batch']} [ms, log]; bars: interquartile range")
        else:
            ax.set_xlabel(("gzip -9 size" if use_gzip else "file size") + " [KB]"
                          + ("; gzip because the files differ in compressibility (pruning)" if use_gzip else ""))
        ax.set_ylabel("top-1 accuracy on the full test set [%]; bars: 95% interval")
        ax.set_title("accuracy vs " + ("latency" if key == "p50" else "size"))
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="lower right")
        key_ax.axis("off")
        key_ax.text(0, 1, "\n".join(f"{number[m]}  {names[m]}" for m in models if m in acc_of), va="top", fontsize=7,
                    family="monospace", transform=key_ax.transAxes)
        fig.tight_layout()
        fname = "pareto_latency.png" if key == "p50" else "pareto_size.png"
        save_figure(fig, out_dir / fname, 120)
        plt.close(fig)
        made.append(out_dir / fname)
    return made


def _latency_distribution(ok: list[dict], names: dict, out_dir: Path) -> list[Path]:
    """Each file's warm-run latencies as a box plot (latency_distribution.png)."""
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    made = []
    with_raw = [d for d in ok if d.get("latencies_ms")]
    if with_raw:
        fig, ax = plt.subplots(figsize=(9, max(3, 0.45 * len(with_raw) + 1.5)))
        ax.boxplot([d["latencies_ms"] for d in with_raw], orientation="horizontal", whis=(5, 95), showfliers=True,
                   flierprops={"markersize": 2, "alpha": 0.5})
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        for i, d in enumerate(with_raw, 1):
            ax.annotate(f"p50 {d['latency_ms']['p50']:.3g} ms",
                        (d["latency_ms"]["p50"], i), textcoords="offset points", xytext=(0, 9), fontsize=6, ha="center")
        ax.set_yticks(range(1, len(with_raw) + 1), [f"{names[d['model']]} [{d['runtime']}, {d['threads']}t]" for d in with_raw], fontsize=7)
        ax.set_xlabel("latency per inference [ms, log scale]; box: quartiles, whiskers: 5th-95th percentile")
        ax.set_title("latency distribution (warm runs)" + ("\nthe spread says the machine was busy: compare ratios within this run"
                                                           if any(busy_machine(d) for d in with_raw) else ""))
        ax.grid(alpha=0.3, axis="x", which="both")
        fig.tight_layout()
        save_figure(fig, out_dir / "latency_distribution.png", 120)
        plt.close(fig)
        made.append(out_dir / "latency_distribution.png")
    return made


def _confusion_matrices(ok: list[dict], names: dict, out_dir: Path) -> list[Path]:
    """One confusion matrix per classifier file (confusion_matrices.png)."""
    import matplotlib.pyplot as plt
    import numpy as np
    made = []
    cms = [d for d in ok if d.get("confusion")]
    seen = set()
    cms = [d for d in cms if not (d["model"] in seen or seen.add(d["model"]))]
    if cms:
        n = len(cms)
        cols = min(n, 3)
        fig, axes = plt.subplots((n + cols - 1) // cols, cols, figsize=(4.2 * cols, 4 * ((n + cols - 1) // cols)), squeeze=False)
        for ax, d in zip(axes.ravel(), cms):
            cm = np.asarray(d["confusion"])
            im = ax.imshow(cm, cmap="Blues")
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="images")
            if len(cm) <= 12:
                for (r, c), v in np.ndenumerate(cm):
                    ax.text(c, r, str(v), ha="center", va="center", fontsize=5,
                            color="white" if v > cm.max() / 2 else "black")
            ax.set_title(f"{names[d['model']]}\nacc {100 * d['accuracy']:.2f}%", fontsize=8)
            ax.set_xlabel("predicted")
            ax.set_ylabel("true")
            labels = d.get("classes") or list(range(len(cm)))
            ax.set_xticks(range(len(cm)), labels, fontsize=6, rotation=90)
            ax.set_yticks(range(len(cm)), labels, fontsize=6)
        for ax in axes.ravel()[n:]:
            ax.axis("off")
        fig.tight_layout()
        save_figure(fig, out_dir / "confusion_matrices.png", 110)
        plt.close(fig)
        made.append(out_dir / "confusion_matrices.png")
    return made


def plot_all(results, out_dir: Path) -> list[Path]:
    """Every figure of a bench report: the task's own, accuracy against latency and size, the latency distribution,
    the confusion matrices. None without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
    except ImportError:
        return []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ok = [d for d in rows(results) if d["ok"] and d["latency_ms"]]
    if not ok:
        return []
    names = short_names(ok)
    return (task_plots(ok, names, out_dir) + _pareto_plots(ok, names, out_dir) + _latency_distribution(ok, names, out_dir)
            + _confusion_matrices(ok, names, out_dir))


# ------------------------------------------------------------------ Markdown
def write_markdown(results, path: Path, plots: list[Path], command: str = "") -> None:
    ds = rows(results)
    machine = next((d["machine"] for d in ds if d.get("machine")), {})
    lines = ["# edgepack benchmark report", ""]
    kc = machine.get("ort_int8_kernel_class")
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += ["## Machine", ""]
    if machine.get("emulated"):
        lines += [f"- **EMULATED** ({machine['emulated']}): accuracies are the emulated runtime's; the timings below "
                  "are the emulator's, not a device's", ""]
    lines += [f"- CPU: {machine.get('cpu')} ({machine.get('cores')} cores, {machine.get('usable_cores')} usable)",
              f"- int8-relevant ISA: {', '.join(machine.get('isa') or []) or 'none detected'}"
              + (f"; ONNX Runtime int8 kernel class: {kc}" if kc else ""),
              f"- OS: {machine.get('os')}; Python {machine.get('python')}",
              f"- runtimes: {', '.join(f'{k} {v}' for k, v in (machine.get('runtimes') or {}).items())}", "",
              "## Results", "",
              "| model | runtime | threads | p50 ms | p90 ms | p99 ms | load ms | size B | gzip B | params | non-zero | MACs | peak RSS MB | accuracy | energy mJ |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    names = short_names(ds)
    for d in ds:
        name = names[d["model"]]
        if not d["ok"]:
            lines.append(f"| {name} | error: {d['error']} |" + " |" * 13)
            continue
        lat, e = d["latency_ms"], d.get("energy_mj") or {}
        est = "" if "measured" in (e.get("method") or "") else " (est.)"
        acc = ("not measured" if d.get("accuracy_note") else "-") if d["accuracy"] is None else f"{100 * d['accuracy']:.2f}%"
        if d["accuracy"] is None and (d.get("quality") or {}).get("value") is not None:
            acc = f"{d['quality']['metric']} {d['quality']['value']:.4f}"
        lines.append(f"| {name} | {d['runtime']} | {d['threads']} | {lat['p50']:.3f} | {lat['p90']:.3f} | {lat['p99']:.3f} | "
                     f"{_fmt(d['load_ms'], '.1f')} | {_fmt(d['size_bytes'], ',')} | {_fmt(d['gzip_bytes'], ',')} | "
                     f"{_fmt(d['params'], ',')} | {_fmt(d['nonzero_params'], ',')} | {_fmt(d['macs'], ',')} | "
                     f"{_fmt(d['peak_rss_mb'], '.1f')} | {acc} | "
                     f"{_fmt(e.get('value'), '.3f')}{est} |")
    first = next((d for d in ds if d.get("test_images") and d.get("accuracy") is not None), None)
    lines += ["", f"Latency: batch {ds[0].get('batch', 1) if ds else 1}, warm runs after warm-up, each model in its own process. "
              + (f"Accuracy: top-1 on all {first['test_images']:,} test images, in the target runtime." if first else ""), ""]
    figures = task_lines(ds, names)
    if figures:
        lines += ["## Task figures", "", "On the full test set, in the target runtime; the standard error follows +-.", ""]
        lines += figures + [""]
    cross = cross_runtime_rows(results)
    if cross:
        lines += ["## Same file, several runtimes", "",
                  "Top-1 agreement with the file's first runtime on every test image; an int8 `.onnx` runs each consumer's "
                  "own int8 kernels.", "", "| file | runtime | accuracy | top-1 agreement | p50 ms |", "| --- | --- | ---: | ---: | ---: |"]
        for c in cross:
            if not c["ok"]:
                lines.append(f"| {names.get(c['model'], c['model'])} | {c['runtime']} | error: {c['error']} | | |")
                continue
            agree = "-" if c["agreement"] is None else f"{100 * c['agreement']:.2f}% vs {c['versus']}"
            lines.append(f"| {names.get(c['model'], c['model'])} | {c['runtime']} | {_pct_or_dash(c['accuracy'])} | {agree} | "
                         f"{_fmt(c['p50'], '.3f')} |")
        lines.append("")
    busy = [d for d in ds if d["ok"] and busy_machine(d)]
    if busy:
        lines += ["**Machine load warning**: the timing spread of " + ", ".join(f"{names[d['model']]} ({d['threads']}t)" for d in busy)
                  + " (std or p99 far above the median) says something else was running; compare ratios from one run "
                  "and re-measure on a quiet machine (`edgepack run --redo bench`).", ""]
    unmeasured = {names[d["model"]]: d["accuracy_note"] for d in ds if d.get("accuracy_note")}
    if unmeasured:
        lines += ["Not measured: " + "; ".join(f"**{k}**: {v}" for k, v in unmeasured.items()) + ".", ""]
    lines += arena_lines(ds, names)
    notes = [(d, m) for d in ds for m in d.get("diagnostics") or []]
    if notes:
        lines += ["## Diagnostics", ""] + [f"- **{names[d['model']]}** ({d['runtime']}, {d['threads']} thr): {m}" for d, m in notes] + [""]
    prov = [d for d in ds if d.get("record") and d["threads"] == min(x["threads"] for x in ds)]
    if prov:
        lines += ["## Provenance", "", "| model | source | steps | verification |", "| --- | --- | --- | --- |"]
        for d in prov:
            rec = d["record"]
            v = rec.get("verification") or {}
            ver = (f"{'passed' if v.get('passed') else 'FAILED'}: agreement {100 * v['top1_agreement']:.2f}%, max diff "
                   f"{v['max_abs_diff']:.2g} on {v['images']} images" if v else "-")
            from edgepack.toolkit.tasks import get_task
            if v and not get_task(v.get("task")).top1:
                from types import SimpleNamespace
                ver = (f"{'passed' if v.get('passed') else 'FAILED'} as {v['task']['name']}: "
                       + get_task(v["task"]).verification_line(SimpleNamespace(**v)))
            if v.get("kernel_classes"):
                ver += "; target " + str(v.get("target")) + ", " + ", ".join(
                    f"{k} {100 * c['accuracy']:.2f}% ({c['how'].split(':')[0]})" for k, c in v["kernel_classes"].items()
                    if not k.startswith("_") and c.get("accuracy") is not None)
            src = (rec.get("parent") or {}).get("file") or rec.get("framework") or "-"
            lines.append(f"| {names[d['model']]} | {src} | {' -> '.join(s['step'] + ('(' + s['format'] + ')' if s.get('format') else '') for s in rec.get('steps', []))} | {ver} |")
        lines.append("")
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    atomic_text(path, "\n".join(lines))


def load_results(path) -> list[dict]:
    return json.loads(Path(path).read_text())["results"]

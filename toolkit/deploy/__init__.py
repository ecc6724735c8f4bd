"""`edgepack deploy`: the best verified file for a device under the user's budgets.

    source checkpoint or fp32 .onnx/.tflite -> candidates (fp32, fp16, dynamic-range, full int8 portable and full-range, mixed
    precision with the layers found by measurement) -> each verified (exporters) -> each benchmarked on the
    full test set in its runtimes (edgepack.benchmarks.harness) -> judged against the budgets -> DIR/best.* + report

Off-machine: `--candidates-only` writes a bundle (files, manifests, golden vectors, the accuracy measured
here); on the device `edgepack bench BUNDLE --json dev.json` (runtime extra only) checks the golden
vectors and times every file; `edgepack deploy --select dev.json BUNDLE --out DIR` picks for that device.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from edgepack.toolkit.deploy.budgets import Budgets
from edgepack.benchmarks.runners.base import arena_of
from edgepack.toolkit.deploy.select import Row, host_timing_note, notes_lines, pareto_plot, pick, table
from edgepack.toolkit.errors import ModelError, OptionError
from edgepack.toolkit.outputs import atomic_text

# (folder, format, ExportOptions overrides, label): the candidates every source gets
BASE_CANDIDATES = [
    ("onnx-fp32", "onnx", {}, "onnx fp32"),
    ("onnx-int8", "onnx-int8", {}, "onnx int8 (portable 7-bit weights)"),
    ("onnx-int8-full-range", "onnx-int8", {"target": "x86-vnni"}, "onnx int8 (full-range weights)"),
    ("onnx-dynamic", "onnx-int8-dynamic", {}, "onnx dynamic-range"),
    ("tflite-fp32", "tflite", {}, "tflite fp32"),
    ("tflite-fp16", "tflite-fp16", {}, "tflite fp16"),
    ("tflite-dynamic", "tflite-dynamic", {}, "tflite dynamic-range"),
    ("tflite-int8", "tflite-int8", {}, "tflite int8"),
]
MIXED_FORMATS = ("onnx-int8", "tflite-int8")
GOLDEN_IMAGES = 32
REFERENCE = "onnx-fp32"
# the fp32 file whose accuracy an accuracy-drop budget is measured from: the first of these that was benchmarked
REFERENCES = ((REFERENCE, "onnxruntime", "the fp32 ONNX in ONNX Runtime"), ("tflite-fp32", "litert", "the fp32 TFLite in LiteRT"))


def candidates_for(runtimes: list[str] | None) -> list[tuple]:
    """The base candidates of the formats the requested runtimes run (all of them by default): a `--runtime litert`
    deploy makes no .onnx candidates it could not benchmark."""
    if not runtimes or runtimes == ["all"]:
        return list(BASE_CANDIDATES)
    from edgepack.benchmarks.runners import installed_runtimes
    from edgepack.exporters.registry import get_exporter
    keep = [c for c in BASE_CANDIDATES if set(installed_runtimes("x" + get_exporter(c[1]).suffix, runtimes)) & set(runtimes)]
    if not keep:
        raise OptionError(f"none of the runtimes {', '.join(runtimes)} is installed here to run a candidate format")
    return keep


def _check_source(model: Path) -> None:
    """A source deploy can start from (a checkpoint or an fp32 .onnx/.tflite); another model file of a runtime (a
    sparse archive) gets one line saying what is wrong with it (corrupt, two inputs) or that deploy needs the fp32 model."""
    from edgepack.benchmarks.runners import formats_by_suffix, open_runner
    from edgepack.toolkit.backends import backend_for_file
    if not model.exists():
        raise ModelError(f"{model}: not found")
    try:
        backend_for_file(model)
    except ModelError:
        if model.suffix.lower() not in formats_by_suffix():
            raise
        open_runner(model, threads=1).close()                # one line for a corrupt file or a two-input model
        raise ModelError(f"{model}: deploy starts from a checkpoint (.pt, .keras) or an fp32 .onnx/.tflite; for a "
                         f"{model.suffix} file, `edgepack bench` measures it as it is") from None


def deploy(model, out, data=None, data_dir=None, budgets: Budgets | None = None, threads: int = 1,
           candidates_only: bool = False, mixed: bool = True, runtimes: list[str] | None = None, progress=print,
           preprocessing: dict | None = None, mixed_search: str = "attribution", trials: int = 32,
           executor=None, task=None) -> dict:
    """`runtimes`: those the candidates are benchmarked on (default: every runtime that runs each file);
    `preprocessing`: {"mean", "std", "scale"} of a model file whose input is not the data set's default;
    `mixed_search`: how the mixed-precision layer sets are found: `attribution` (each layer float in turn, measured),
    or a search of `trials` trials (exhaustive | tpe | auto, toolkit.deploy.search) run through `executor`;
    `task`: what the model is for (default: its record's, else a classifier where its outputs say so). A task without
    a quality figure (raw) is picked on latency and size among the files verified by their outputs."""
    from edgepack.exporters.api import export_context, export_variants
    from edgepack.exporters.base import ExportOptions
    from edgepack.toolkit.api import check_fits, data_location, dataset_for, load_checkpoint
    from edgepack.benchmarks.harness import BenchSettings
    budgets = budgets or Budgets()
    BenchSettings(threads=[threads], runtimes=runtimes or ["all"])       # option errors before any work
    if budgets.max_arena is not None:
        from edgepack.benchmarks.runners import arena_runtimes
        if not set(runtimes or ()) & set(arena_runtimes()):
            raise OptionError(f"--max-arena judges the tensor arena a runtime measures; add one that does to --runtime "
                              f"({', '.join(arena_runtimes())})")
    if mixed_search != "attribution":
        from edgepack.toolkit.deploy.search import SAMPLERS
        if mixed_search not in SAMPLERS:
            raise OptionError(f"unknown --mixed-search {mixed_search!r}; expected attribution, {', '.join(SAMPLERS)}")
        if trials < 1:
            raise OptionError(f"--trials must be >= 1, got {trials}")
        if not mixed:
            raise OptionError("--mixed-search searches mixed-precision files; --no-mixed skips them: one or the other")
    model, out = Path(model), Path(out)
    _check_source(model)
    loaded = load_checkpoint(model)
    ds = dataset_for(loaded, data, data_dir, preprocessing)
    check_fits(loaded, ds)
    data_name = ds.name                                # what the harness's processes and Ray workers load: the
    if isinstance(data, str) or data is None:         # recorded folder, and a stand-in by its own name
        data_name, data_dir = data_location(loaded, data, data_dir)
    out.mkdir(parents=True, exist_ok=True)
    ctx = export_context(loaded.model, ds, out / "candidates", source_record=loaded.record, source_path=model, task=task)
    ds = ctx.dataset                                   # as the task reads it (a one-class view, say)
    if ctx.task.metric is None and (budgets.max_accuracy_drop is not None or budgets.min_accuracy is not None):
        raise OptionError(f"task {ctx.task.name} has no quality figure for --max-accuracy-drop/--min-accuracy to judge: "
                          "its candidates are verified output by output (SNR floor); give size and latency budgets")
    if mixed_search != "attribution" and not ctx.task.top1:
        raise OptionError(f"--mixed-search scores trials by top-1 accuracy against labels; task {ctx.task.name} is not "
                          "a classifier: drop --mixed-search (per-layer attribution still proposes mixed files)")
    labels = {}
    try:
        base = candidates_for(runtimes)
        variants = [(f, fmt, ExportOptions(**o)) for f, fmt, o, _ in base]
        labels.update({f: lab for f, _, _, lab in base})
        progress(f"deploy: {len(variants)} candidates from {model.name} (task {ctx.task.name})"
                 + (", then mixed precision found by measurement" if mixed else ""))
        results = export_variants(ctx, variants, progress)
        attributions, searched = [], None
        if mixed and mixed_search != "attribution":
            from edgepack.toolkit.deploy.search import Source, search
            done = [fmt for (_, fmt, o), r in zip(variants, results) if r.ok and o.target == "any" and not o.keep_float
                    and fmt in MIXED_FORMATS]
            src = Source(str(model.resolve()), data_name, None if data_dir is None else str(data_dir),
                         tuple(sorted((preprocessing or {}).items())), str((out / "candidates" / ".search").resolve()))
            searched = search(ctx, src, done, budgets, mixed_search, trials, executor, threads,
                              out / "candidates" / ".search", progress, runtimes=runtimes)
            more = []
            for t in searched.best():
                folder = f"{t.config.fmt}-search-trial-{t.number}"
                more.append((folder, t.config.fmt, ExportOptions(keep_float=",".join(t.config.float_layers))))
                found_in = f" in {t.config.runtime}" if t.config.runtime else ""
                labels[folder] = (f"{t.config.fmt.replace('-', ' ')} mixed ({', '.join(t.config.float_layers)} float; "
                                  f"search trial {t.number}{found_in})")
            variants += more
            results += export_variants(ctx, more, progress)
        elif mixed:
            from edgepack.exporters.mixed import attribute, propose
            done = {fmt for (_, fmt, o), r in zip(variants, results) if r.ok and o.target == "any" and not o.keep_float}
            more = []
            for fmt in MIXED_FORMATS:
                if fmt not in done:
                    continue
                progress(f"per-layer attribution of {fmt} (each layer float in turn, timed in its runtime, "
                         f"{threads} thread(s))")
                att = attribute(ctx, fmt, threads=threads, progress=progress)
                attributions.append(att)
                from edgepack.exporters.mixed import why_no_proposal
                if why_no_proposal(att):
                    progress(why_no_proposal(att))
                for k, layers in enumerate(propose(att)):
                    folder = f"{fmt}-mixed-{k + 1}"
                    more.append((folder, fmt, ExportOptions(keep_float=",".join(layers))))
                    labels[folder] = f"{fmt.replace('-', ' ')} mixed ({', '.join(layers)} float)"
            variants += more
            results += export_variants(ctx, more, progress)
    finally:
        ctx.cleanup()
        shutil.rmtree(out / "candidates" / ".search", ignore_errors=True)    # the trials' unverified files
    rows, bench = _measure(variants, results, labels, data_name, data_dir, threads, progress, runtimes or ["all"],
                           quick=candidates_only, max_size=None if candidates_only else budgets.max_size)
    for r in rows:
        r.metric = ctx.task.metric
    ref_row, reference_from = next(((r, what) for folder, runtime, what in REFERENCES for r in rows
                                    if r.label == labels.get(folder) and r.runtime == runtime
                                    and r.accuracy is not None), (None, None))
    reference = ref_row and ref_row.accuracy
    info = {"source": str(model), "data": data_name, "threads": threads, "machine": bench["machine"],
            "task": ctx.task.to_dict(), "metric": ctx.task.metric,
            "timing": bench["timing"],
            "reference_accuracy": reference, "reference_from": reference_from,
            "attributions": [a.to_dict() for a in attributions],
            "search": searched and searched.to_dict()}
    if candidates_only:
        return write_bundle(out, rows, results, variants, ds, loaded, info, progress)
    return choose(out, rows, budgets, reference, info, attributions, progress, searched=searched,
                  figures=lambda best: _examples(out, ctx.task, ds, [r for r in (ref_row, best) if r is not None]))


EXAMPLE_IMAGES = 6


def _examples(out: Path, task, ds, chosen: list) -> list[str]:
    """The task's side-by-side figure of the chosen rows (the fp32 reference and the pick) on a few test images
    (detection: their boxes), each file run in its runtime only if the task draws one; report lines linking it."""
    from edgepack.benchmarks.runners import open_runner
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


def _measure(variants, results, labels, data_name, data_dir, threads, progress, runtimes, quick=False, max_size=None):
    """Benchmark every verified candidate in the runtimes; rows for all, failures included. A file over the size
    budget is not benchmarked (its size is known: it cannot be picked), except the fp32 references an accuracy-drop
    budget is measured from."""
    from edgepack.benchmarks.harness import BenchSettings, benchmark
    from edgepack.benchmarks.machine import cpu_label, machine_record
    from edgepack.toolkit.record import sha256_file
    rows, files = [], []
    for (folder, fmt, opts), r in zip(variants, results):
        if not r.ok:
            rows.append(Row(labels[folder], str(r.path or folder), fmt, "-", None, error=r.error or "export failed"))
            continue
        if max_size is not None and r.path.stat().st_size > max_size and folder not in {f for f, _, _ in REFERENCES}:
            rows.append(Row(labels[folder], str(r.path), fmt, r.record.steps[-1].get("precision", "?"), None,
                            size=r.path.stat().st_size, gzip=r.record.sizes.get("gzip_bytes"), verified=True,
                            sha256=sha256_file(r.path)))
            continue
        files.append((folder, fmt, opts, r))
    settings = BenchSettings(threads=[threads], runtimes=runtimes, **({"runs": 10, "min_seconds": 0.0} if quick else {}))
    progress(f"benchmarking {len(files)} verified candidates on {cpu_label()}, full test set, {threads} thread(s)")
    res = [] if not files else benchmark([str(r.path) for *_, r in files], data_name, data_dir, settings,
                    progress=lambda m: progress("    " + m))
    by_file = {}
    for b in res:
        by_file.setdefault(b.model, []).append(b)
    for folder, fmt, opts, r in files:
        step = r.record.steps[-1]
        floats = (step.get("details") or {}).get("float_layers") or []
        precision = "mixed" if floats else step.get("precision", "?")
        for b in by_file.get(str(r.path), []):
            rows.append(Row(labels[folder], str(r.path), fmt, precision, b.runtime,
                            p50_ms=(b.latency_ms or {}).get("p50"), size=b.size_bytes, gzip=b.gzip_bytes,
                            accuracy=_figure(b),
                            accuracy_from=f"full test set ({b.test_images:,} images) in {b.runtime}" if _figure(b) is not None else "",
                            verified=True, error=None if b.ok else b.error, float_layers=floats,
                            notes=list((r.record.verification or {}).get("notes") or []),
                            sha256=sha256_file(r.path), arena=arena_of(b.runtime_info)))
    return rows, {"machine": machine_record(), "results": res,
                  "timing": f"p50 of at least {settings.runs} runs and {settings.min_seconds:g} s after {settings.warmup} warm-up"}


def _figure(b) -> float | None:
    """A bench result's task figure in points (percent): top-1 accuracy, or the task's metric (ROC AUC x 100)."""
    if b.accuracy is not None:
        return 100 * b.accuracy
    v = (b.quality or {}).get("value")
    return None if v is None else 100 * v


def _report(out: Path, rows, best, budgets, reference, info, attributions, heading: str, searched=None,
            failure: str = "", extra: list[str] = ()) -> Path:
    from edgepack.benchmarks.machine import cpu_label
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
        _report(out, rows, None, budgets, reference, info, list(attributions), heading, searched, failure=str(e))
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
    report = _report(out, rows, best, budgets, reference, info, list(attributions), heading, searched, extra=extra)
    progress("\n".join(table(rows)))
    progress(f"picked {best.label} in {best.runtime}: p50 {best.p50_ms:.4f} ms, {best.size:,} B, {best.figure_text()} "
             f"-> {out / ('best' + suffix)} (report {report})")
    if host_timing_note(best, budgets):
        progress("note: " + host_timing_note(best, budgets))
    return {"best": best, "rows": rows, "report": report}


# ------------------------------------------------------------------ bundles: choose on the device's measurements
def write_bundle(out: Path, rows, results, variants, ds, loaded, info, progress) -> dict:
    from edgepack.benchmarks.golden import BUNDLE_FILE, GOLDEN_FILE, compare_golden, golden_outputs, save_golden, tolerance
    from edgepack.benchmarks.runners import open_runner
    from edgepack.exporters.registry import get_exporter
    from edgepack.toolkit.record import sha256_file
    x, y = ds.test_subset(GOLDEN_IMAGES, seed=1)
    xn = ds.normalize(x, "NHWC").astype(np.float32)
    src = loaded.backend.predict_outputs(loaded.model, ds.normalize(x, loaded.backend.LAYOUT))
    from edgepack.toolkit.tasks import get_task
    classifier = get_task(info.get("task")).top1
    entries = []
    by_file: dict[str, list[Row]] = {}
    for r in rows:
        by_file.setdefault(r.file, []).append(r)
    for (folder, fmt, _), res in zip(variants, results):
        if not res.ok:
            continue
        runner = open_runner(res.path, threads=None)
        try:
            home = compare_golden(golden_outputs(runner, xn), src, classifier, res.path.name)
        finally:
            runner.close()
        ver = res.record.verification or {}
        group = by_file.get(str(res.path), [])
        entries.append({"label": group[0].label if group else folder, "file": str(res.path.relative_to(out)),
                        "format": fmt, "precision": group[0].precision if group else "?",
                        "float_layers": group[0].float_layers if group else [], "sha256": sha256_file(res.path),
                        "size": res.path.stat().st_size,
                        "accuracy": {r.runtime: r.accuracy for r in group if r.accuracy is not None},
                        "kernel_classes": {k: v.get("accuracy") for k, v in (ver.get("kernel_classes") or {}).items()
                                           if not k.startswith("_")} if get_exporter(fmt).kernel_sensitive else None,
                        "golden": home, "tolerance": tolerance(home, get_exporter(fmt).atol)})
    save_golden(out / GOLDEN_FILE, xn, y, src, **ds.golden_raw(GOLDEN_IMAGES, seed=1))
    bundle = {"edgepack_bundle_version": 1, **info, "home_kernel_class": info["machine"].get("ort_int8_kernel_class"),
              "golden_images": int(len(x)), "candidates": entries}
    atomic_text(out / BUNDLE_FILE, json.dumps(bundle, indent=2, default=str))
    progress(f"bundle: {len(entries)} files, golden vectors of {len(x)} test images, accuracy measured here -> {out}\n"
             f"on the device: edgepack bench {out} --json device.json   then here: "
             f"edgepack deploy --select device.json {out} --out DIR")
    return {"bundle": out / BUNDLE_FILE, "entries": entries}


def select_for_device(bundle_dir, device_json, out, budgets: Budgets | None = None, progress=print) -> dict:
    """Pick from a bundle with a device's `edgepack bench BUNDLE --json` results."""
    from edgepack.benchmarks.golden import read_bundle
    budgets = budgets or Budgets()
    bundle = read_bundle(bundle_dir)
    try:
        dev = json.loads(Path(device_json).read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"{device_json}: not a readable bench JSON ({e})") from None
    results = dev.get("results")
    if not isinstance(results, list) or not results:
        raise ModelError(f"{device_json}: no benchmark results in it (write it with `edgepack bench BUNDLE --json`)")
    machine = next((r.get("machine") for r in results if r.get("machine")), {}) or {}
    cls = machine.get("ort_int8_kernel_class")
    by_sha: dict[str, list[dict]] = {}
    for r in results:
        sha = (r.get("golden") or {}).get("sha256")
        if sha:
            by_sha.setdefault(sha, []).append(r)
    if not by_sha:
        raise ModelError(f"{device_json}: its results carry no golden-vector checks; benchmark the bundle folder itself "
                         f"(edgepack bench {bundle_dir} --json ...)")
    rows = []
    from edgepack.toolkit.record import sha256_file
    for e in bundle["candidates"]:
        path = Path(bundle_dir) / e["file"]
        changed = None if path.is_file() and sha256_file(path) == e["sha256"] else (
            f"{e['file']}: {'changed since the bundle was written (sha256 differs)' if path.is_file() else 'missing'}; "
            "the device's figures are of the file as written")
        for r in by_sha.get(e["sha256"], []):
            acc, src = (e["accuracy"] or {}).get(r.get("runtime")), "full test set, measured where the bundle was made"
            if e.get("kernel_classes") and cls != bundle.get("home_kernel_class"):
                acc = None if e["kernel_classes"].get(cls) is None else 100 * e["kernel_classes"][cls]
                src = f"verification subset, kernel class {cls} (the device's), computed where the bundle was made"
            golden = r.get("golden") or {}
            err = changed or (r.get("error") if not r.get("ok", True) else (None if golden.get("passed") else
                                                                            "on the device: " + str(golden.get("error"))))
            rows.append(Row(e["label"], str(Path(bundle_dir) / e["file"]), e["format"], e["precision"], r.get("runtime"),
                            p50_ms=(r.get("latency_ms") or {}).get("p50"), size=e["size"], gzip=r.get("gzip_bytes"),
                            accuracy=acc, accuracy_from=src, metric=bundle.get("metric", "accuracy"), verified=True, error=err, float_layers=e["float_layers"],
                            sha256=e["sha256"], arena=arena_of(r.get("runtime_info"))))
    if not rows:
        raise ModelError(f"{device_json}: none of its results are files of the bundle {bundle_dir}")
    reference, reference_from = next((((e["accuracy"] or {})[rt], what) for folder, rt, what in REFERENCES
                                      for e in bundle["candidates"] if folder in Path(e["file"]).parts
                                      and (e["accuracy"] or {}).get(rt) is not None), (None, None))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    st = dev.get("settings") or {}
    timing = (f"p50 of at least {st['runs']} runs and {st.get('min_seconds', 0):g} s on the device" if "runs" in st
              else None)
    info = {"source": bundle.get("source"), "data": bundle.get("data"), "threads": (results[0].get("threads") or 1),
            "task": bundle.get("task"), "metric": bundle.get("metric", "accuracy"),
            "timing": timing,
            "machine": machine, "reference_accuracy": reference, "reference_from": reference_from and
            f"{reference_from}, where the bundle was made", "bundle": str(bundle_dir), "device_results": str(device_json)}
    return choose(out, rows, budgets, reference, info, (), progress, heading="edgepack deploy --select (device results)")

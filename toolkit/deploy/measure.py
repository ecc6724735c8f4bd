"""Measurement of the candidates: every verified file benchmarked on the full test set in each runtime that runs it
(edgepack.benchmarks.harness), a row per (file, runtime), failures included; and the fp32 reference an accuracy-drop
budget is measured from."""
from __future__ import annotations

from edgepack.toolkit.deploy.candidates import REFERENCES
from edgepack.toolkit.deploy.rows import failed_row, figure_of, measured_row, unmeasured_row


def measure(variants, results, labels, data_name, data_dir, threads, progress, runtimes, quick=False, max_size=None):
    """Benchmark every verified candidate in the runtimes; rows for all, failures included. A file over the size
    budget is not benchmarked (its size is known: it cannot be picked), except the fp32 references an accuracy-drop
    budget is measured from."""
    from edgepack.benchmarks.harness import BenchSettings, benchmark
    from edgepack.runtimes.machine import cpu_label, machine_record
    from edgepack.toolkit.record import sha256_file
    rows, files = [], []
    for (folder, fmt, opts), r in zip(variants, results):
        if not r.ok:
            rows.append(failed_row(labels[folder], str(r.path or folder), fmt, r.error or "export failed"))
            continue
        if max_size is not None and r.path.stat().st_size > max_size and folder not in {f for f, _, _ in REFERENCES}:
            rows.append(unmeasured_row(labels[folder], str(r.path), fmt, r.record.steps[-1].get("precision", "?"),
                                       r.path.stat().st_size, r.record.sizes.get("gzip_bytes"), sha256_file(r.path)))
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
            d = vars(b)                                   # the result as `edgepack bench --json` writes it
            rows.append(measured_row(labels[folder], str(r.path), fmt, precision, d, accuracy=figure_of(d),
                                     accuracy_from=f"full test set ({b.test_images or 0:,} images) in {b.runtime}",
                                     error=None if b.ok else b.error, float_layers=floats,
                                     notes=(r.record.verification or {}).get("notes") or [], sha256=sha256_file(r.path)))
    return rows, {"machine": machine_record(), "results": res,
                  "timing": f"p50 of at least {settings.runs} runs and {settings.min_seconds:g} s after {settings.warmup} warm-up"}


def reference_of(rows, labels: dict) -> tuple:
    """(row, what it is) of the fp32 file accuracy drops are measured from: the first of REFERENCES measured."""
    return next(((r, what) for folder, runtime, what in REFERENCES for r in rows
                 if r.label == labels.get(folder) and r.runtime == runtime and r.accuracy is not None), (None, None))

"""`edgepack deploy`: the best verified file for a device under the user's budgets.

    source checkpoint or fp32 .onnx/.tflite -> candidates (fp32, fp16, dynamic-range, full int8 portable and full-range, mixed
    precision with the layers found by measurement) -> each verified (exporters) -> each benchmarked on the
    full test set in its runtimes (edgepack.benchmarks.harness) -> judged against the budgets -> DIR/best.* + report

Off-machine: `--candidates-only` writes a bundle (files, manifests, golden vectors, the accuracy measured
here); on the device `edgepack bench BUNDLE --json dev.json` (runtime extra only) checks the golden
vectors and times every file; `edgepack deploy --select dev.json BUNDLE --out DIR` picks for that device.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from edgepack.toolkit.deploy.budgets import Budgets
from edgepack.toolkit.deploy.bundle import write_bundle
from edgepack.toolkit.deploy.candidates import BASE_CANDIDATES, candidates_for, check_source, export_candidates  # noqa: F401
from edgepack.toolkit.deploy.device import select_for_device  # noqa: F401  (deploy --select)
from edgepack.toolkit.deploy.measure import measure, reference_of
from edgepack.toolkit.deploy.report import choose, draw_examples
from edgepack.toolkit.errors import OptionError


def deploy(model, out, data=None, data_dir=None, budgets: Budgets | None = None, threads: int = 1,
           candidates_only: bool = False, mixed: bool = True, runtimes: list[str] | None = None, progress=print,
           preprocessing: dict | None = None, mixed_search: str = "attribution", trials: int = 32,
           executor=None, task=None, by_hand: bool = True, calibration_samples: int | None = None) -> dict:
    """`runtimes`: those the candidates are benchmarked on (default: every runtime that runs each file);
    `preprocessing`: {"mean", "std", "scale"} of a model file whose input is not the data set's default;
    `mixed_search`: how the mixed-precision layer sets are found: `attribution` (each layer float in turn, measured),
    or a search of `trials` trials (exhaustive | tpe | auto, toolkit.deploy.search) run through `executor`;
    `task`: what the model is for (default: its record's, else a classifier where its outputs say so); `by_hand`:
    say how to take a bundle to a device (False when edgepack takes it there itself); `calibration_samples`: training
    images every int8 candidate calibrates on (default: the task's, ExportOptions.calibration_count). A task without
    a quality figure (raw) is picked on latency and size among the files verified by their outputs."""
    from edgepack.exporters.api import export_context
    from edgepack.toolkit.api import check_fits, data_location, dataset_for, load_checkpoint
    from edgepack.benchmarks.harness import BenchSettings
    budgets = budgets or Budgets()
    BenchSettings(threads=[threads], runtimes=runtimes or ["all"])       # option errors before any work
    if budgets.max_arena is not None:
        from edgepack.runtimes import arena_runtimes
        if not set(runtimes or ()) & set(arena_runtimes()):
            raise OptionError(f"--max-arena judges the tensor arena a runtime measures; add one that does to --runtime "
                              f"({', '.join(arena_runtimes())})")
    if calibration_samples is not None and calibration_samples < 1:
        raise OptionError(f"--calibration-samples must be >= 1, got {calibration_samples}")
    if mixed_search != "attribution":
        from edgepack.toolkit.deploy.search import SAMPLERS
        if mixed_search not in SAMPLERS:
            raise OptionError(f"unknown --mixed-search {mixed_search!r}; expected attribution, {', '.join(SAMPLERS)}")
        if trials < 1:
            raise OptionError(f"--trials must be >= 1, got {trials}")
        if not mixed:
            raise OptionError("--mixed-search searches mixed-precision files; --no-mixed skips them: one or the other")
    model, out = Path(model), Path(out)
    check_source(model)
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
    src = None
    if mixed and mixed_search != "attribution":
        from edgepack.toolkit.deploy.search import Source
        src = Source(str(model.resolve()), data_name, None if data_dir is None else str(data_dir),
                     tuple(sorted((preprocessing or {}).items())), str((out / "candidates" / ".search").resolve()),
                     calibration=calibration_samples)
    try:
        variants, results, labels, attributions, searched = export_candidates(
            ctx, model, runtimes, mixed, mixed_search, trials, executor, threads, budgets, src, progress,
            common={"calibration_samples": calibration_samples})
    finally:
        ctx.cleanup()
        shutil.rmtree(out / "candidates" / ".search", ignore_errors=True)    # the trials' unverified files
    rows, bench = measure(variants, results, labels, data_name, data_dir, threads, progress, runtimes or ["all"],
                           quick=candidates_only, max_size=None if candidates_only else budgets.max_size)
    for r in rows:
        r.metric = ctx.task.metric
    ref_row, reference_from = reference_of(rows, labels)
    reference = ref_row and ref_row.accuracy
    info = {"source": str(model), "data": data_name, "threads": threads, "machine": bench["machine"],
            "task": ctx.task.to_dict(), "metric": ctx.task.metric,
            "timing": bench["timing"],
            "reference_accuracy": reference, "reference_from": reference_from,
            "attributions": [a.to_dict() for a in attributions],
            "search": searched and searched.to_dict()}
    if candidates_only:
        bundle = write_bundle(out, rows, results, variants, ds, loaded, info, progress)
        if by_hand:
            progress(f"on the device: edgepack bench {out} --json device.json   then here: "
                     f"edgepack deploy --select device.json {out} --out DIR   (or all in one: --device ssh://...)")
        return bundle
    return choose(out, rows, budgets, reference, info, attributions, progress, searched=searched,
                  figures=lambda best: draw_examples(out, ctx.task, ds, [r for r in (ref_row, best) if r is not None]))

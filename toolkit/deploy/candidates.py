"""The candidates of a deploy: the base files every source gets (fp32, fp16, dynamic-range, full int8 portable and
full-range; ExecuTorch fp32 and int8 from PyTorch sources), limited to the formats the requested runtimes run, and the mixed-precision ones found by per-layer
attribution or by the search; all exported and verified through the exporters (`export_candidates`)."""
from __future__ import annotations

from pathlib import Path

from edgepack.toolkit.errors import ModelError, OptionError

# (folder, format, ExportOptions overrides, label): the candidates every source gets
BASE_CANDIDATES = [
    ("onnx-fp32", "onnx", {}, "onnx fp32"),
    ("onnx-int8", "onnx-int8", {"onnx_weights": "int8"}, "onnx int8 (portable 7-bit weights)"),
    ("onnx-int8-full-range", "onnx-int8", {"onnx_weights": "int8", "target": "x86-vnni"}, "onnx int8 (full-range weights)"),
    ("onnx-dynamic", "onnx-int8-dynamic", {}, "onnx dynamic-range"),
    ("tflite-fp32", "tflite", {}, "tflite fp32"),
    ("tflite-fp16", "tflite-fp16", {}, "tflite fp16"),
    ("tflite-dynamic", "tflite-dynamic", {}, "tflite dynamic-range"),
    ("tflite-int8", "tflite-int8", {}, "tflite int8"),
    ("pte-fp32", "pte", {}, "pte fp32 (ExecuTorch)"),                 # PyTorch sources only
    ("pte-int8", "pte-int8", {}, "pte int8 (ExecuTorch)"),
]
# a task whose int8 .onnx files default to uint8 weights (detection) gets that file too, first among the int8 .onnx
UINT8_CANDIDATE = ("onnx-int8-uint8", "onnx-int8", {"onnx_weights": "uint8"}, "onnx int8 (portable 8-bit uint8 weights)")
MIXED_FORMATS = ("onnx-int8", "tflite-int8")
REFERENCE = "onnx-fp32"
# the fp32 file whose accuracy an accuracy-drop budget is measured from: the first of these that was benchmarked
REFERENCES = ((REFERENCE, "onnxruntime", "the fp32 ONNX in ONNX Runtime"), ("tflite-fp32", "litert", "the fp32 TFLite in LiteRT"),
              ("pte-fp32", "executorch", "the fp32 .pte in ExecuTorch"))


def candidates_for(runtimes: list[str] | None, task=None) -> list[tuple]:
    """The base candidates of the formats the requested runtimes run (all of them by default): a `--runtime litert`
    deploy makes no .onnx candidates it could not benchmark. `task`: the source's (its default ONNX weights)."""
    base = list(BASE_CANDIDATES)
    if getattr(task, "onnx_weights", "int8") == "uint8":
        base.insert(next(i for i, c in enumerate(base) if c[1] == "onnx-int8"), UINT8_CANDIDATE)
    from edgepack.runtimes import installed_runtimes
    from edgepack.exporters.registry import get_exporter
    if not runtimes or runtimes == ["all"]:        # every format some installed runtime runs
        return [c for c in base if installed_runtimes("x" + get_exporter(c[1]).suffix)]
    keep = [c for c in base if set(installed_runtimes("x" + get_exporter(c[1]).suffix, runtimes)) & set(runtimes)]
    if not keep:
        raise OptionError(f"none of the runtimes {', '.join(runtimes)} is installed here to run a candidate format")
    return keep


def check_source(model: Path) -> None:
    """A source deploy can start from (a checkpoint or an fp32 .onnx/.tflite); another model file of a runtime (a
    sparse archive) gets one line saying what is wrong with it (corrupt, two inputs) or that deploy needs the fp32 model."""
    from edgepack.runtimes import formats_by_suffix, open_runner
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




def export_candidates(ctx, model: Path, runtimes, mixed: bool, mixed_search: str, trials: int, executor, threads: int,
                      budgets, search_source, progress=print, common: dict | None = None):
    """Export and verify every candidate of `ctx`'s source: the base ones, then mixed precision (found by per-layer
    attribution, or by `mixed_search` run through `executor`). Returns (variants, results, labels, attributions,
    search result or None); `search_source`: how the search's workers rebuild the source (a search.Source);
    `common`: export options every candidate shares (calibration_samples)."""
    from edgepack.exporters.api import export_variants
    from edgepack.exporters.base import ExportOptions
    common = {k: v for k, v in (common or {}).items() if v is not None}

    def options(**o) -> ExportOptions:
        return ExportOptions(**{**common, **o})
    from edgepack.exporters.registry import get_exporter
    base = [c for c in candidates_for(runtimes, ctx.task) if get_exporter(c[1]).accepts(ctx.backend)]
    variants = [(f, fmt, options(**o)) for f, fmt, o, _ in base]
    labels = {f: lab for f, _, _, lab in base}
    progress(f"deploy: {len(variants)} candidates from {model.name} (task {ctx.task.name})"
             + (", then mixed precision found by measurement" if mixed else ""))
    results = export_variants(ctx, variants, progress)
    attributions, searched, more = [], None, []
    done = [fmt for (_, fmt, o), r in zip(variants, results) if r.ok and o.target == "any" and not o.keep_float
            and fmt in MIXED_FORMATS]
    if mixed and mixed_search != "attribution":
        from edgepack.toolkit.deploy.search import search
        searched = search(ctx, search_source, done, budgets, mixed_search, trials, executor, threads,
                          Path(search_source.work), progress, runtimes=runtimes)
        for t in searched.best():
            folder = f"{t.config.fmt}-search-trial-{t.number}"
            more.append((folder, t.config.fmt, options(keep_float=",".join(t.config.float_layers))))
            found_in = f" in {t.config.runtime}" if t.config.runtime else ""
            labels[folder] = (f"{t.config.fmt.replace('-', ' ')} mixed ({', '.join(t.config.float_layers)} float; "
                              f"search trial {t.number}{found_in})")
    elif mixed:
        from edgepack.exporters.mixed import attribute, propose, why_no_proposal
        for fmt in MIXED_FORMATS:
            if fmt not in done:
                continue
            progress(f"per-layer attribution of {fmt} (each layer float in turn, timed in its runtime, "
                     f"{threads} thread(s))")
            att = attribute(ctx, fmt, threads=threads, progress=progress)
            attributions.append(att)
            if why_no_proposal(att):
                progress(why_no_proposal(att))
            for k, layers in enumerate(propose(att)):
                folder = f"{fmt}-mixed-{k + 1}"
                more.append((folder, fmt, options(keep_float=",".join(layers))))
                labels[folder] = f"{fmt.replace('-', ' ')} mixed ({', '.join(layers)} float)"
    variants += more
    results += export_variants(ctx, more, progress)
    return variants, results, labels, attributions, searched

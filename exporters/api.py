"""Export a model to one or more formats, verify each file in its runtime, write manifests.

    from edgepack.exporters import export_checkpoint
    results = export_checkpoint("runs/mnist/model.pt", ["onnx", "tflite-int8"], out="exports")

Users' own models: `export_model(model, formats, dataset, out_dir)` with any torch.nn.Module or
Keras model (a `edgepack.toolkit.data.Dataset` provides calibration and verification images).
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from edgepack.exporters.base import ExportContext, ExportOptions, unused_options
from edgepack.exporters.registry import get_exporter, list_exporters
from edgepack.exporters.verify import Verification, VerificationError, verify_file
from edgepack.toolkit.errors import EdgepackError, OptionError
from edgepack.toolkit.record import ArtifactRecord, environment, sha256_file


@dataclass
class ExportResult:
    format: str
    path: Path | None
    record: ArtifactRecord | None
    verification: Verification | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.verification is not None and self.verification.passed


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for dist in ("onnx", "onnxruntime", "ai-edge-litert", "tensorflow", "torch", "onnx2tf", "tf2onnx", "litert-torch",
                 "ai-edge-quantizer"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


def export_model(model, formats: list[str], dataset, out_dir: str | Path, options: ExportOptions | None = None, *,
                 stem: str = "model", source_record: ArtifactRecord | None = None, source_path: Path | None = None,
                 verbose: bool = True, task=None) -> list[ExportResult]:
    """`task`: what the model is for (a name or {"name", options}); default: the source record's, else inferred from
    its outputs (a classifier), else one line asking for it."""
    ctx = export_context(model, dataset, out_dir, stem=stem, source_record=source_record, source_path=source_path,
                         task=task)
    backend = ctx.backend
    ctx.options = options = options or ExportOptions()
    formats = _check_formats(formats)
    bad = [f for f in formats if not get_exporter(f).accepts(backend)]
    if bad:
        raise OptionError(f"format(s) {', '.join(bad)} cannot be produced from a {backend.NAME} model")
    unused = unused_options(options, [get_exporter(f) for f in formats])
    if unused:
        flags = ", ".join(unused)
        print(f"note: {flags} {'has' if len(unused) == 1 else 'have'} no effect on {', '.join(formats)}", file=sys.stderr)
    formats.sort(key=lambda f: f != "onnx")           # the fp32 ONNX first: later formats reuse it
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for fmt in formats:
            results.append(_export_one(ctx, fmt, verbose))
    finally:
        ctx.cleanup()
    return results


def export_context(model, dataset, out_dir: str | Path, *, stem: str = "model", source_record: ArtifactRecord | None = None,
                   source_path: Path | None = None, task=None) -> ExportContext:
    """One context for several exports of one source (the fp32 ONNX and onnx2tf's conversion are made once), with
    the source's task and the data set as that task reads it; the caller calls `cleanup()`."""
    from edgepack.toolkit.api import resolve_task
    from edgepack.toolkit.backends import backend_for_model
    backend = backend_for_model(model)
    where = source_path.name if source_path is not None else "the model"
    task, dataset = resolve_task(model, backend, dataset, task, source_record, where)
    return ExportContext(model, backend, dataset, ExportOptions(), Path(out_dir), stem,
                         getattr(model, "edgepack_spec", None), source_record, source_path, task=task)


def export_variants(ctx: ExportContext, variants: list[tuple[str, str, ExportOptions]], progress=print) -> list[ExportResult]:
    """Export (folder, format, options) variants of ctx's source into folders under ctx's out_dir, each verified."""
    base = ctx.out_dir
    results = []
    try:
        for i, (folder, fmt, options) in enumerate(variants):
            exp = get_exporter(fmt)
            if not exp.accepts(ctx.backend):
                results.append(ExportResult(fmt, None, None, None, f"cannot be produced from a {ctx.framework} model"))
                continue
            ctx.options, ctx.out_dir = options, base / folder
            ctx.out_dir.mkdir(parents=True, exist_ok=True)
            progress(f"[{i + 1}/{len(variants)}] {folder}: exporting")
            r = _export_one(ctx, fmt, verbose=False)
            results.append(r)
            progress(f"    {verification_line(r.record.sizes, r.verification) if r.record else 'FAILED: ' + str(r.error)}")
    finally:
        ctx.out_dir, ctx.options = base, ExportOptions()
    return results


def _check_formats(formats: list[str]) -> list[str]:
    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in list_exporters()]
    if unknown:
        raise OptionError(f"unknown export format(s) {', '.join(unknown)}; available: {', '.join(list_exporters())}")
    return formats


def _export_one(ctx: ExportContext, fmt: str, verbose: bool) -> ExportResult:
    exp = get_exporter(fmt)
    final = ctx.out_dir / exp.filename(ctx.stem)
    tmp = final.with_name(f".{final.stem}.partial{final.suffix}")
    if verbose:
        print(f"[{fmt}] exporting -> {final}", flush=True)
    try:
        start = time.perf_counter()
        details = exp.export(ctx, tmp)
        # measured, not verification: a route that writes several files in one call (onnx2tf) charges the first
        details["export_seconds"] = round(time.perf_counter() - start, 2)
        ver = verify_file(tmp, ctx, exp)
    except EdgepackError as e:
        tmp.unlink(missing_ok=True)
        if verbose:
            print(f"[{fmt}] FAILED: {e}", flush=True)
        return ExportResult(fmt, None, None, None, str(e))
    except OSError as e:                                 # a full disk: no half-written file left behind, one line
        tmp.unlink(missing_ok=True)
        from edgepack.toolkit.errors import write_error
        raise write_error(final, e) from None
    if not ver.passed:                                   # keep the file for inspection, clearly flagged
        final = final.with_name(f"{final.stem}.FAILED{final.suffix}")
    os.replace(tmp, final)
    if ver.passed:
        ctx.produced[fmt] = final
    rec = _record(ctx, exp, final, details, ver)
    rec.save(final)
    if verbose:
        print(f"[{fmt}] {verification_line(rec.sizes, ver)}", flush=True)
        if details.get("runtime_note"):
            print(f"[{fmt}] note: {details['runtime_note']}", flush=True)
    return ExportResult(fmt, final, rec, ver, None if ver.passed else f"verification failed: {'; '.join(ver.failures)}")


def verification_line(sizes: dict, ver: Verification) -> str:
    """One line: size, the task's figures (a classifier: accuracy change with its margin, agreement), per-kernel-class
    proof, verdict."""
    from edgepack.toolkit.tasks import get_task
    status = "ok" if ver.passed else "FAILED: " + "; ".join(ver.failures)
    task = get_task(ver.task)
    line = f"{sizes['bytes']:,} B (gzip {sizes['gzip_bytes']:,} B), " + task.verification_line(ver)
    if ver.output_match and ver.output_match not in ("by name", "the only output"):
        line += f" (outputs matched {ver.output_match})"
    if ver.kernel_classes:
        line += f", target {ver.target}: kernel classes " + ", ".join(
            f"{k} {task.format_figure(v['accuracy'])}{'' if v['required_by_target'] else ' (not in target)'}"
            if v.get("accuracy") is not None else
            f"{k} SNR {v['min_snr_db']:.1f} dB{'' if v['required_by_target'] else ' (not in target)'}"
            for k, v in ver.kernel_classes.items() if not k.startswith("_")
            and (v.get("accuracy") is not None or v.get("min_snr_db") is not None))
    return f"{line}, on {ver.machine}: {status}"


def _record(ctx: ExportContext, exp, path: Path, details: dict, ver: Verification) -> ArtifactRecord:
    from edgepack.toolkit.api import dataset_info
    src = ctx.source_record
    parent = {"file": str(ctx.source_path), "sha256": sha256_file(ctx.source_path)} if ctx.source_path else None
    rec = ArtifactRecord("export", path.name, framework=ctx.framework, format=exp.name,
                         arch=src.arch if src else (ctx.spec.to_dict() if ctx.spec is not None else None),
                         dataset=dataset_info(ctx.dataset), parent=parent,
                         steps=list(src.steps) if src else [], metrics=dict(src.metrics) if src else {},
                         task=ctx.task.to_dict())
    rec.steps.append({"step": "export", "format": exp.name, "precision": exp.precision, "runtime": exp.runtime,
                      "details": details, "options": exp.option_values(ctx.options)})
    rec.verification = ver.to_dict()
    rec.fill_sizes(path)
    rec.sizes["gzip_ratio"] = round(rec.sizes["bytes"] / max(rec.sizes["gzip_bytes"], 1), 3)
    rec.metrics.update({"versions": _versions(), "environment": environment()})
    return rec


def export_checkpoint(checkpoint: str | Path, formats: list[str], out: str | Path, data=None,
                      data_dir: str | None = None, options: ExportOptions | None = None, verbose: bool = True,
                      preprocessing: dict | None = None, task=None):
    from edgepack.toolkit.api import check_fits, dataset_for, load_checkpoint
    _check_formats(formats)                              # option errors before the model and the data are read
    loaded = load_checkpoint(checkpoint)
    ds = dataset_for(loaded, data, data_dir, preprocessing)
    check_fits(loaded, ds)
    return export_model(loaded.model, formats, ds, out, options, stem=Path(checkpoint).stem,
                        source_record=loaded.record, source_path=Path(checkpoint), verbose=verbose, task=task)


def raise_on_failures(results: list[ExportResult]) -> None:
    failed = [r for r in results if not r.ok]
    if failed:
        raise VerificationError(", ".join(r.format for r in failed),
                                [f"{r.format}: {r.error}" for r in failed])

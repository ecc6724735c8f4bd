"""Exporters of the edgepack archive (.epk): sparse (bitmask + non-zero values) and 8-bit weights.

The codec lives in runtimes/epk.py (the runtime layer, so the archive runner needs no exporter);
the format is specified in exporters/SPARSE_FORMAT.md."""
from __future__ import annotations

from pathlib import Path

from edgepack.runtimes.epk import read_archive, to_onnx_file, write_archive
from edgepack.exporters.base import ExportContext, Exporter

__all__ = ["SparseArchiveExporter", "WeightsUint8Exporter", "read_archive", "write_archive", "to_onnx_file"]


class SparseArchiveExporter(Exporter):
    name = "sparse"
    options = ("sparse_values",)
    tag = "sparse"
    suffix = ".epk"
    description = "edgepack sparse archive: ONNX graph + bitmask/non-zero weights, gzipped (lossless with fp32 values)"
    precision = "fp32"
    atol = 1e-4
    min_agreement = 1.0
    runtime = "onnxruntime"

    def criteria(self, options):
        if options.sparse_values != "fp32":       # lossy value storage: judged like other reduced-precision files
            return None, None
        return super().criteria(options)

    def export(self, ctx: ExportContext, path: Path) -> dict:
        return write_archive(ctx.fp32_onnx(), path, "sparse", ctx.options.sparse_values)


class WeightsUint8Exporter(Exporter):
    name = "weights-uint8"
    tag = "w8"
    suffix = ".epk"
    description = "weights stored in 8 bits (per-tensor min/max -> uint8), loads back to float"
    precision = "archive"
    atol = None
    min_agreement = 0.98
    runtime = "onnxruntime"

    def export(self, ctx: ExportContext, path: Path) -> dict:
        return write_archive(ctx.fp32_onnx(), path, "weights-uint8")


EXPORTERS = (SparseArchiveExporter, WeightsUint8Exporter,)   # registered by exporters/registry.py

"""ExecuTorch `.pte` (PyTorch's own on-device format, XNNPACK delegate): fp32 and int8, from PyTorch sources, verified
in ExecuTorch's runtime like every other format (toolkit/backends/torch/executorch.py does the lowering)."""
from __future__ import annotations

from pathlib import Path

from edgepack.exporters.base import ExportContext, Exporter


class PteExporter(Exporter):
    name = "pte"
    suffix = ".pte"
    description = "ExecuTorch .pte fp32 (torch.export lowered to XNNPACK; batch 1)"
    needs = ("to_pte",)
    precision = "fp32"
    atol = 1e-4
    min_agreement = 1.0
    runtime = "executorch"

    def export(self, ctx: ExportContext, path: Path) -> dict:
        data, details = ctx.backend.to_pte(ctx.model, "fp32", ctx.dataset.input_shape)
        path.write_bytes(data)
        return details


class PteInt8Exporter(PteExporter):
    name = "pte-int8"
    tag = "int8"
    options = ("calibration_samples", "per_channel")
    description = ("ExecuTorch .pte int8 (pt2e with the XNNPACK quantizer: per-channel int8 weights, int8 activations "
                   "calibrated on training images)")
    precision = "int8"
    atol = None
    min_agreement = 0.98

    def export(self, ctx: ExportContext, path: Path) -> dict:
        opts = ctx.options
        calib = ctx.dataset.calibration(opts.calibration_count(ctx.task), opts.seed, "NCHW")
        data, details = ctx.backend.to_pte(ctx.model, "int8", ctx.dataset.input_shape, calib, opts.per_channel)
        path.write_bytes(data)
        return {**details, "calibration": {**details["calibration"], "seed": opts.seed}}


EXPORTERS = (PteExporter, PteInt8Exporter)   # registered by exporters/registry.py

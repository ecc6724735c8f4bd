"""ONNX fp32: torch.onnx (dynamo) for PyTorch sources, tf2onnx for Keras sources; weights in one file."""
from __future__ import annotations

import importlib
from pathlib import Path

from exporters.base import ExportContext, Exporter
from exporters.registry import register_exporter


def write_onnx(ctx: ExportContext, path: Path) -> dict:
    """The framework's own ONNX route (toolkit.backends.<framework>.export.to_onnx)."""
    export = importlib.import_module(f"toolkit.backends.{ctx.framework}.export")
    return export.to_onnx(ctx.model, path, ctx.dataset.input_shape)


@register_exporter
class OnnxExporter(Exporter):
    name = "onnx"
    suffix = ".onnx"
    description = "ONNX fp32 (torch.onnx dynamo exporter / tf2onnx), dynamic batch"
    precision = "fp32"
    atol = 1e-4
    min_agreement = 1.0
    runtime = "onnxruntime"

    def export(self, ctx: ExportContext, path: Path) -> dict:
        details = write_onnx(ctx, path)
        ctx.produced["onnx"] = path
        return details

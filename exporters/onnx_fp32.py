"""ONNX fp32: torch.onnx (dynamo) for PyTorch sources, tf2onnx for Keras sources; weights in one file."""
from __future__ import annotations

from pathlib import Path

from edgepack.exporters.base import ExportContext, Exporter


def input_layout(onnx_path: Path, hwc) -> tuple[str, str]:
    """(input name, 'NCHW' | 'NHWC') of an image model: PyTorch exports NCHW, tf2onnx keeps Keras's NHWC."""
    import onnx
    m = onnx.load(str(onnx_path), load_external_data=False)
    inp = m.graph.input[0]
    dims = tuple(d.dim_value or -1 for d in inp.type.tensor_type.shape.dim[1:])     # -1: a dynamic size
    h, w, c = hwc
    nhwc = dims == (h, w, c) or (len(dims) == 3 and dims[2] == c and -1 in dims[:2])
    nchw = dims == (c, h, w) or (len(dims) == 3 and dims[0] == c and -1 in dims[1:])
    return inp.name, ("NCHW" if nchw and not nhwc else "NHWC")


class OnnxExporter(Exporter):
    name = "onnx"
    suffix = ".onnx"
    description = "ONNX fp32 (torch.onnx dynamo exporter / tf2onnx), dynamic batch"
    precision = "fp32"
    atol = 1e-4
    min_agreement = 1.0
    runtime = "onnxruntime"

    def export(self, ctx: ExportContext, path: Path) -> dict:
        details = ctx.backend.to_onnx(ctx.model, path, ctx.dataset.input_shape)
        ctx.produced["onnx"] = path
        return details


EXPORTERS = (OnnxExporter,)   # registered by exporters/registry.py

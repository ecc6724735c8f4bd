"""PyTorch -> ONNX fp32 (torch.onnx, dynamo exporter with a dynamic batch axis; weights embedded)."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from edgepack.toolkit.backends.onnx_portable import make_portable
from edgepack.toolkit.errors import ModelError, first_line

DEFAULT_OPSET = 18


def to_onnx(model, path: str | Path, input_shape_hwc: tuple[int, int, int], opset: int = DEFAULT_OPSET) -> dict:
    """Write a single-file ONNX model with input 'input' (N, C, H, W) and output 'logits' (a module with several
    outputs: 'output_<i>' for a tuple, its keys for a dict, as `predict_outputs` names them)."""
    import onnx

    from edgepack.toolkit.backends.torch.model import output_names
    h, w, c = input_shape_hwc
    model = model.eval().to(memory_format=torch.contiguous_format)
    example = torch.zeros(2, c, h, w)
    names = output_names(model, example)
    path = Path(path)
    errors = []
    for dynamo in (True, False):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if dynamo:
                    prog = torch.onnx.export(model, (example,), dynamo=True, opset_version=opset,
                                             input_names=["input"], output_names=names,
                                             dynamic_shapes=({0: torch.export.Dim("batch")},),
                                             optimize=True, verbose=False, report=False)
                    prog.save(str(path), external_data=False)
                else:
                    torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=min(opset, 17),
                                      input_names=["input"], output_names=names,
                                      dynamic_axes={"input": {0: "batch"}, **{n: {0: "batch"} for n in names}})
            m = onnx.load(str(path))
            portable = make_portable(m)
            onnx.checker.check_model(m)
            onnx.save(m, str(path))
            return {"exporter": "torch.onnx dynamo" if dynamo else "torch.onnx torchscript", "opset": _opset(m),
                    "ir_version": m.ir_version, "portable": portable,
                    "torch": torch.__version__, "input_layout": "NCHW", "fallback_reason": errors[0] if errors else None}
        except Exception as e:  # the TorchScript exporter is the documented fallback
            errors.append(first_line(e))
    raise ModelError(f"ONNX export failed: {'; '.join(errors)}")


def _opset(m) -> int:
    return next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), -1)

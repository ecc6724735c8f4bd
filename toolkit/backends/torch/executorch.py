"""PyTorch -> ExecuTorch `.pte` (torch.export, lowered to the XNNPACK delegate): fp32, and int8 through the pt2e
flow with ExecuTorch's XNNPACK quantizer (per-channel symmetric int8 weights, int8 activations calibrated on real
training images). The program takes one image (batch 1, NCHW), as on a device."""
from __future__ import annotations

import warnings

import numpy as np
import torch

from edgepack.toolkit.errors import ModelError, OptionError, first_line


def _import_executorch():
    import logging
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)   # torchao's import warns about an Enum there
    try:
        from executorch import version as et_version
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower
    except ImportError as e:
        raise OptionError(f"ExecuTorch export needs the 'executorch' package (pip install 'edgepack[executorch]'): "
                          f"{first_line(e)}") from None
    return et_version.__version__, XnnpackPartitioner, to_edge_transform_and_lower


def to_pte(model, mode: str, input_shape_hwc, calibration: np.ndarray | None = None,
           per_channel: bool = True) -> tuple[bytes, dict]:
    """The .pte program of `model` ("fp32" or "int8"; int8 calibrates on `calibration`, float NCHW images)."""
    version, partitioner, lower = _import_executorch()
    h, w, c = input_shape_hwc
    model = model.eval().to(memory_format=torch.contiguous_format)
    example = (torch.zeros(1, c, h, w),)
    details = {"converter": f"executorch {version} (torch.export, XNNPACK partitioner)", "torch": torch.__version__,
               "input_layout": "NCHW", "batch": 1}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            graph = torch.export.export(model, example)
            if mode == "int8":
                from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
                    XNNPACKQuantizer, get_symmetric_quantization_config)
                from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
                quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=per_channel))
                prepared = prepare_pt2e(graph.module(), quantizer)
                for i in range(len(calibration)):
                    prepared(torch.from_numpy(np.ascontiguousarray(calibration[i:i + 1], np.float32)))
                graph = torch.export.export(convert_pt2e(prepared), example)
                details.update(quantizer="XNNPACKQuantizer (pt2e)", weights=f"int8 {'per-channel' if per_channel else 'per-tensor'} symmetric",
                               activations="int8 per-tensor affine", calibration={"samples": len(calibration),
                                                                                  "split": "train, stratified"})
            program = lower(graph, partitioner=[partitioner()]).to_executorch()
    except OptionError:
        raise
    except Exception as e:
        raise ModelError(f"ExecuTorch export ({mode}) failed: {first_line(e)}") from None
    data = program.buffer
    ops = _non_delegated_ops(program)
    details["not_delegated"] = ops          # ops left to ExecuTorch's portable kernels (slow on a device)
    return data, details


def _non_delegated_ops(program) -> list[str]:
    """Operators the program runs outside the XNNPACK delegate."""
    try:
        plan = program.executorch_program.execution_plan[0]
        return sorted({op.name for op in plan.operators})
    except Exception:       # noqa: BLE001 - a best-effort note for the manifest
        return []

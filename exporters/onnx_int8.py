"""ONNX int8 through ONNX Runtime's quantizer: static QDQ (calibrated on real training images) and dynamic."""
from __future__ import annotations

import logging
import os
import re
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from edgepack.exporters.base import ExportContext, Exporter
from edgepack.exporters.onnx_fp32 import input_layout
from edgepack.exporters.verify import TARGETS
from edgepack.toolkit.backends.onnx_portable import make_portable
from edgepack.toolkit.errors import ModelError, first_line


class _Fallbacks(logging.Filter):
    """Collects ORT's 'Axis 1 is out-of-range for weight ... with rank 1' warnings (per-channel asked for a rank-1
    weight, e.g. a BatchNorm vector tf2onnx left unfolded: quantized per tensor) instead of printing one line each."""

    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def filter(self, record) -> bool:
        m = re.match(r"Axis \d+ is out-of-range for weight '(.+)' with rank 1", record.getMessage())
        if m:
            self.names.append(m.group(1))
            return False
        return True


@contextmanager
def _per_tensor_fallbacks():
    """The rank-1 weights ORT quantized per tensor although per-channel was asked (recorded in the manifest)."""
    f = _Fallbacks()
    root = logging.getLogger()
    root.addFilter(f)
    try:
        yield f.names
    finally:
        root.removeFilter(f)


class ArrayCalibrationReader:
    """ORT CalibrationDataReader over a NumPy array of already-preprocessed inputs."""

    def __init__(self, input_name: str, x: np.ndarray):
        self.input_name, self.x, self.i = input_name, x, 0

    def get_next(self):
        if self.i >= len(self.x):
            return None
        self.i += 1
        return {self.input_name: self.x[self.i - 1:self.i]}

    def rewind(self):
        self.i = 0


def compact_names(path: Path) -> dict:
    """Lossless size pass: short tensor names, no node names/doc strings/value_info (graph inputs and outputs keep
    their names; quantized graphs carry long generated names for every Q/DQ tensor), then the portability pass of
    toolkit.backends.onnx_portable (no debug metadata or unused opsets, the lowest IR version)."""
    import onnx
    m = onnx.load(str(path))
    g = m.graph
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in g.node for a in n.attribute):
        return {"compacted": False, "reason": "subgraphs"}
    before = path.stat().st_size
    keep = {i.name for i in g.input} | {o.name for o in g.output}
    mapping: dict[str, str] = {}

    counter = iter(range(1 << 62))

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        if name not in mapping:                    # never a name the graph's inputs/outputs keep (legacy torch: "9")
            mapping[name] = next(c for c in map(lambda i: format(i, "x"), counter) if c not in keep)
        return mapping[name]
    for t in g.initializer:
        t.name = short(t.name)
        t.doc_string = ""
    for n in g.node:
        n.name, n.doc_string = "", ""
        n.input[:] = [short(x) for x in n.input]
        n.output[:] = [short(x) for x in n.output]
    del g.value_info[:]
    m.doc_string = ""
    portable = make_portable(m)
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return {"compacted": True, "bytes_before": before, "bytes_after": path.stat().st_size, "ir_version": m.ir_version,
            "portable": portable}


def preprocess(src: Path, dst: Path) -> Path:
    """ORT's recommended pre-processing (shape inference + graph optimisation) before quantization."""
    from onnxruntime.quantization.shape_inference import quant_pre_process
    # it leaves sym_shape_infer_temp.onnx and <uuid>.data files in the working directory when its symbolic shape
    # inference fails (a model with a dynamic image size): run it in dst's (temporary) folder
    src, dst, here = Path(src).resolve(), Path(dst).resolve(), os.getcwd()
    os.chdir(dst.parent)                      # (contextlib.chdir is Python 3.11+)
    try:
        try:
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
        except Exception:
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
    finally:
        os.chdir(here)
    return dst


class OnnxInt8StaticExporter(Exporter):
    name = "onnx-int8"
    options = ("calibration_method", "calibration_samples", "onnx_activations", "target", "onnx_weights", "per_channel",
               "keep_float", "int8_tail")
    tag = "int8"
    suffix = ".onnx"
    description = "ONNX int8 QDQ, static (ORT quantize_static, per-channel int8 weights, uint8 activations by default)"
    precision = "int8"
    atol = None
    min_agreement = 0.98
    runtime = "onnxruntime"
    kernel_sensitive = True

    def export(self, ctx: ExportContext, path: Path) -> dict:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        src = preprocess(ctx.fp32_onnx(), ctx.work_dir / "pre.onnx")
        name, layout = input_layout(src, ctx.dataset.input_shape)
        opts = ctx.options
        calib = ctx.dataset.calibration(opts.calibration_count(ctx.task), opts.seed, layout)
        method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                  "percentile": CalibrationMethod.Percentile}[opts.calibration_method]
        # Portable by default: x86 CPUs without VNNI add pairs of u8 x s8 products in int16 with saturation
        # (vpmaddubsw); 7-bit weights (ORT's reduce_range) keep every pair sum in range, so the file computes
        # the same integers on every CPU class. Full-range int8 weights only for a target known to accumulate in
        # int32. uint8 weights (symmetric, zero point 128) take ORT's u8 x u8 kernels, which widen both operands to
        # 16 bits before multiplying (vpmaddwd on x86): full 8-bit weights and exact sums on every CPU class.
        unsigned = opts.check_onnx_types(opts.onnx_weight_type(ctx.task)) == "uint8"    # `auto` resolved here
        seven_bit = not unsigned and "u8s8-sat16" in TARGETS[opts.target]
        from edgepack.exporters.layers import onnx_layers, onnx_tail, resolve
        floats = resolve(onnx_layers(src), opts.float_layers) if opts.float_layers else []
        tail_mode = opts.float_tail(ctx.task)
        tail = onnx_tail(src, with_head=tail_mode == "head") if tail_mode else []
        try:
            fell_back: list[str] = []

            def quantize(out: Path, calibrate_method) -> None:
                with _per_tensor_fallbacks() as names:
                    quantize_static(str(src), str(out), ArrayCalibrationReader(name, calib), quant_format=QuantFormat.QDQ,
                                    per_channel=opts.per_channel, reduce_range=seven_bit,
                                    weight_type=QuantType.QUInt8 if unsigned else QuantType.QInt8,
                                    activation_type=QuantType.QUInt8 if opts.onnx_activations == "uint8" else QuantType.QInt8,
                                    calibrate_method=calibrate_method, nodes_to_exclude=[f.node for f in floats] + tail,
                                    extra_options={"CalibTensorRangeSymmetric": False, "WeightSymmetric": True})
                fell_back[:] = names
            quantize(path, method)
            same_as_minmax = None
            if opts.calibration_method != "minmax":         # say when a calibrator produced MinMax's ranges
                quantize(ctx.work_dir / "minmax.onnx", CalibrationMethod.MinMax)
                same_as_minmax = _activation_ranges(path) == _activation_ranges(ctx.work_dir / "minmax.onnx")
                if same_as_minmax:
                    import onnxruntime
                    print(f"note: {opts.calibration_method} calibration produced the same activation ranges as minmax "
                          f"(onnxruntime {onnxruntime.__version__})", flush=True)
        except Exception as e:
            raise ModelError(f"ORT static quantization failed: {first_line(e)}") from None
        compact = compact_names(path)
        bits = "7-bit" if seven_bit else "8-bit"
        return {"quantizer": "onnxruntime.quantization.quantize_static", "format": "QDQ", "activations": opts.onnx_activations, "names": compact,
                "weights": f"{'uint8' if unsigned else 'int8'} {'per-channel' if opts.per_channel else 'per-tensor'}, "
                           f"{bits} range" + (", symmetric around zero point 128" if unsigned else ""),
                "per_tensor_fallbacks": fell_back,
                "target": opts.target, "reduce_range": seven_bit, "float_layers": [f.name for f in floats], "float_tail": tail, "float_tail_mode": tail_mode,
                "calibration": {"method": opts.calibration_method, "samples": len(calib), "split": "train, stratified",
                                "seed": opts.seed, "same_ranges_as_minmax": same_as_minmax}, "qdq_nodes": _count_qdq(path)}


class OnnxInt8DynamicExporter(Exporter):
    name = "onnx-int8-dynamic"
    tag = "int8-dynamic"
    suffix = ".onnx"
    description = "ONNX dynamic quantization (int8 weights as uint8, activations quantized at run time)"
    precision = "dynamic"
    atol = None
    min_agreement = 0.98
    runtime = "onnxruntime"

    def export(self, ctx: ExportContext, path: Path) -> dict:
        from onnxruntime.quantization import QuantType, quantize_dynamic
        src = preprocess(ctx.fp32_onnx(), ctx.work_dir / "pre-dyn.onnx")
        # QInt8 weights on Conv give ConvInteger(int8) that ORT's CPU provider cannot run: use QUInt8.
        quantize_dynamic(str(src), str(path), weight_type=QuantType.QUInt8, per_channel=False)
        return {"quantizer": "onnxruntime.quantization.quantize_dynamic", "weights": "uint8 per-tensor",
                "names": compact_names(path),
                "why_uint8": "ConvInteger with int8 weights is not implemented in ORT's CPU provider"}


def _activation_ranges(path: Path) -> list:
    """(scale, zero point) of every activation QuantizeLinear, in graph order."""
    import onnx
    from onnx import numpy_helper
    m = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    return [tuple(float(np.asarray(inits[i]).reshape(-1)[0]) for i in n.input[1:3] if i in inits)
            for n in m.graph.node if n.op_type == "QuantizeLinear"]


def _count_qdq(path: Path) -> dict:
    import onnx
    m = onnx.load(str(path))
    ops = [n.op_type for n in m.graph.node]
    return {"QuantizeLinear": ops.count("QuantizeLinear"), "DequantizeLinear": ops.count("DequantizeLinear")}


EXPORTERS = (OnnxInt8StaticExporter, OnnxInt8DynamicExporter,)   # registered by exporters/registry.py

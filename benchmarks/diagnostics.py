"""Explanations a user needs next to the numbers, each backed by something measured on this machine."""
from __future__ import annotations

import tempfile
from pathlib import Path

INT8_ONNX_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger", "QLinearMatMul"}


def is_int8(r) -> bool:
    fmt = (r.record or {}).get("format") or ""
    if "int8" in fmt:
        return True
    if r.format == "onnx":
        return bool(set(r.ops or {}) & INT8_ONNX_OPS)
    if r.format == "tflite":
        return bool(r.input and r.input.get("quantized"))
    return False


def family(r) -> tuple:
    """Files from one source: same parent checkpoint if recorded, else same folder and file stem."""
    parent = ((r.record or {}).get("parent") or {}).get("sha256")
    p = Path(r.model)
    return (parent or str(p.parent / p.name.split(".")[0]),)


def unfused_qdq(model_path: str, threads: int) -> tuple[int, int] | None:
    """(Q/DQ nodes at the model boundary, Q/DQ nodes inside) after ONNX Runtime's full graph optimisation."""
    try:
        import onnxruntime as ort
        from edgepack.runtimes.onnx_reader import read_onnx
        with tempfile.TemporaryDirectory() as d:
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            so.optimized_model_filepath = str(Path(d) / "opt.onnx")
            so.intra_op_num_threads = threads
            so.log_severity_level = 3
            sess = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
            g = read_onnx((Path(d) / "opt.onnx").read_bytes())
        ins = {i.name for i in sess.get_inputs()}
        outs = {o.name for o in sess.get_outputs()}
        qdq = [n for n in g.nodes if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
        edge = [n for n in qdq if (n.op_type == "QuantizeLinear" and n.inputs[0] in ins) or
                (n.op_type == "DequantizeLinear" and n.outputs[0] in outs)]
        return len(edge), len(qdq) - len(edge)
    except Exception:
        return None


def litert_kernel_split(int8_path: str, fp32_path: str, threads: int) -> dict | None:
    """Median invoke time (us) of both files with and without LiteRT's default delegate (XNNPACK)."""
    try:
        from edgepack.runtimes.tflite import time_path
        return {f"{name}_{key}": time_path(path, resolver, runs=300, warmup=50, threads=threads)
                for name, path in (("int8", int8_path), ("fp32", fp32_path))
                for key, resolver in (("auto", "AUTO"), ("builtin", "BUILTIN_WITHOUT_DEFAULT_DELEGATES"))}
    except Exception:
        return None


def _dense(r) -> bool:
    """A dense sibling: at most 5% zero weights (a trained model may hold a few exact zeros)."""
    return bool(r.params) and r.nonzero_params is not None and r.nonzero_params >= 0.95 * r.params


def diagnose(results) -> None:
    ok = [r for r in results if r.ok and r.latency_ms]
    for r in ok:
        siblings = [s for s in ok if s is not r and family(s) == family(r) and s.runtime == r.runtime and s.threads == r.threads]
        if is_int8(r):
            fp32 = [s for s in siblings if s.format == r.format and not is_int8(s) and _dense(s) and "fp16" not in s.model
                    and "dynamic" not in s.model]
            for s in fp32:
                if r.latency_ms["p50"] > s.latency_ms["p50"]:
                    r.diagnostics.append(_int8_slower(r, s))
        if r.params and r.nonzero_params is not None and r.nonzero_params < 0.7 * r.params:
            dense = [s for s in siblings if s.nonzero_params and s.params and s.nonzero_params >= 0.95 * s.params
                     and is_int8(s) == is_int8(r)]
            for s in dense:
                if r.latency_ms["p50"] > 0.95 * s.latency_ms["p50"]:
                    r.diagnostics.append(
                        f"{1 - r.nonzero_params / r.params:.0%} of the weights are zero, yet p50 {r.latency_ms['p50']:.3f} ms is "
                        f"not below the dense {Path(s.model).name} ({s.latency_ms['p50']:.3f} ms): {r.runtime}'s dense kernels "
                        "ignore unstructured zeros; the gain is file size after gzip. Structured pruning removes channels "
                        "and does cut latency.")


def _int8_slower(r, s) -> str:
    causes = []
    machine = r.machine or {}
    if not machine.get("int8_dot_product"):
        causes.append("this CPU has no int8 dot-product instructions (no AVX-512 VNNI / AVX-VNNI / AMX / ARM SDOT), "
                      "so int8 matrix kernels fall back to widening multiplies")
    if r.format == "onnx":
        left = unfused_qdq(r.model, r.threads)
        if left and left[1]:
            causes.append(f"{left[1]} QuantizeLinear/DequantizeLinear nodes inside the graph survive ORT's optimisation "
                          "(QDQ pairs left unfused run as separate float<->int8 conversions; on x86 ORT's CPU provider fuses "
                          "QDQ convs with uint8 activations, not int8: export with --onnx-activations uint8)")
        if left and left[0]:
            causes.append(f"float input/output: {left[0]} quantize/dequantize nodes at the model boundary run on every call")
    if r.format == "tflite":
        k = litert_kernel_split(r.model, s.model, r.threads)
        if k:
            causes.append(f"LiteRT's default XNNPACK delegate speeds the fp32 file up x{k['fp32_builtin'] / k['fp32_auto']:.1f} "
                          f"({k['fp32_builtin']:.1f} -> {k['fp32_auto']:.1f} us) and the int8 file x{k['int8_builtin'] / k['int8_auto']:.1f} "
                          f"({k['int8_builtin']:.1f} -> {k['int8_auto']:.1f} us); on TFLite's built-in kernels alone int8/fp32 is "
                          f"x{k['int8_builtin'] / k['fp32_builtin']:.2f} (medians measured now, batch 1)")
    if r.format == "tflite" and r.input and not r.input.get("quantized"):
        causes.append("the file takes float input, so it quantizes at the model boundary on every call")
    if r.macs is not None and r.macs < 5_000_000:
        causes.append(f"the model is tiny ({r.macs:,} MACs): fixed per-op quantize/requantize overhead dominates")
    ratio = r.latency_ms["p50"] / s.latency_ms["p50"]
    return (f"int8 is slower than its fp32 sibling {Path(s.model).name} on this machine (p50 {r.latency_ms['p50']:.3f} vs "
            f"{s.latency_ms['p50']:.3f} ms, x{ratio:.2f}). Likely cause: " + ("; ".join(causes) or "not identified") + ".")

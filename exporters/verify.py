"""Numerical verification of an exported file against its source model, in the target runtime.

The images are a stratified, seeded subset of the test set (every class represented, whatever the
order of the files on disk). The file's outputs are matched to the source's by name
(`edgepack.toolkit.tasks.match_outputs`: a converter that reorders or renames them is mapped back) and compared by the
source's task (`edgepack.toolkit.tasks`): a classifier as below, an anomaly detector by its ROC AUC change, any other model
(`raw`) output by output (max |diff|, SNR, cosine). For a classifier, what is judged depends on the file:

- exact formats (fp32, fp16, lossless archives): max abs logit difference and top-1 agreement;
- quantized formats (int8, dynamic, 8-bit weights): what users care about. (1) The accuracy change
  with its statistical margin: the file fails when its accuracy drop exceeds `verify_max_drop`
  (percentage points) by more than two standard errors of the paired difference. (2) Top-1
  agreement on the inputs whose source top-1 margin exceeds the quantization noise (6x the RMS
  logit difference): a flip there is an error, not a coin toss between two near-equal classes.
  Overall agreement is recorded but not judged: a weak model has many near-ties.

Files whose results depend on the CPU's int8 kernels (ONNX Runtime's u8 x s8 Conv/Gemm/MatMul) are
also proven per kernel class (`edgepack.runtimes.qdq_reference`): measured in ONNX Runtime for
this CPU's class, by the NumPy reference for the others, and judged by the same criteria on every
class their target covers. Checks are gathered before anything is raised, so a failure names every
check that failed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgepack.toolkit.errors import EdgepackError, ModelError

from edgepack.toolkit.tasks import matched, renamed
from edgepack.toolkit.tasks.classification import (  # noqa: F401 - re-exported: the classifier's criteria
    MIN_CONFIDENT_AGREEMENT, compare, judge)

# --target: the CPUs a file must keep its accuracy on, as ONNX Runtime kernel classes
TARGETS = {
    "any": ("exact", "u8s8-sat16"),
    "x86-avx2": ("u8s8-sat16",),
    "x86-vnni": ("exact",),
    "arm64": ("exact",),
}
TARGET_HELP = ("any: x86 with and without VNNI, ARM64 (int8 .onnx weights 7-bit); x86-avx2: x86 without VNNI "
               "(7-bit); x86-vnni: AVX-512 VNNI / AVX-VNNI / AMX (full-range weights); arm64 (full-range weights)")


class VerificationError(EdgepackError):
    def __init__(self, artifact, failures: list[str]):
        self.failures = failures
        super().__init__(f"{artifact}: verification failed: {'; '.join(failures)}")


@dataclass
class Verification:
    images: int
    runtime: str
    runtime_version: str
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float
    source_accuracy: float
    export_accuracy: float
    atol: float | None
    min_agreement: float | None
    subset: str = ""
    classes_covered: int = 0
    accuracy_delta_pp: float = 0.0
    accuracy_delta_se_pp: float = 0.0
    max_accuracy_drop_pp: float | None = None
    logit_rms_diff: float = 0.0
    confident_images: int = 0
    confident_agreement: float | None = None
    min_confident_agreement: float | None = None
    target: str | None = None
    machine: str = ""
    kernel_classes: dict | None = None
    passed: bool = True
    failures: list[str] = field(default_factory=list)
    task: dict | None = None                 # the task the file was judged as ({"name", options})
    outputs: dict | None = None              # per output (source names): max/mean |diff|, SNR dB, cosine
    output_match: str | None = None          # how the file's outputs were matched to the source's
    quality: dict | None = None              # the task's verification figures (anomaly: AUC of source and file)
    notes: list[str] = field(default_factory=list)   # what the verdict rests on, where a rule had no evidence

    def to_dict(self) -> dict:
        return asdict(self)


def source_outputs(ctx, x_uint8: np.ndarray) -> dict:
    """Every output of the source model by name, for uint8 test images."""
    return ctx.backend.predict_outputs(ctx.model, ctx.dataset.normalize(x_uint8, ctx.backend.LAYOUT))


def _run(path, x: np.ndarray, **runner_options):
    from edgepack.runtimes import open_runner
    runner = open_runner(path, threads=None, **runner_options)
    try:
        return runner.predict_outputs(x), runner.info()
    finally:
        runner.close()


def _figure(m: dict) -> dict:
    """What a kernel-class entry keeps of one comparison: the task's headline figures."""
    outs = m.get("outputs") or {}
    snr = [f["snr_db"] for f in outs.values() if f.get("shape_ok")]
    return {"accuracy": m.get("accuracy", m.get("figure")), "agreement": m.get("agreement"),
            "confident_agreement": m.get("confident_agreement"), "delta_pp": m.get("delta_pp"),
            "min_snr_db": min(snr) if snr else None}


def kernel_class_proof(path, criteria: tuple, x: np.ndarray, ref: dict, y: np.ndarray, measured: dict,
                       target: str, max_drop_pp: float, task, ds, mapping: dict) -> tuple[dict, list[str]]:
    """Judge an ORT int8 file on every kernel class: this CPU's measured, the others by the NumPy reference."""
    from edgepack.runtimes.machine import cpu_label, onnxruntime_kernel_class
    from edgepack.runtimes.onnx_reader import read_onnx
    from edgepack.runtimes.qdq_reference import KERNEL_CLASSES, QdqReferenceRunner, risky_pairs
    here = onnxruntime_kernel_class()
    g = read_onnx(Path(path).read_bytes())
    weights = [t.array for t in g.initializers.values() if t.array is not None and t.array.dtype == np.int8 and t.array.ndim >= 2]
    unsigned = sum(1 for t in g.initializers.values() if t.array is not None and t.array.dtype == np.uint8
                   and t.array.ndim >= 2)          # uint8 weights: u8 x u8 kernels, widened before adding
    risky = sum(risky_pairs(w) for w in weights)
    max_w = max((int(np.abs(w.astype(np.int32)).max()) for w in weights), default=0)
    why_exact = (f"max |w| = {max_w}: every u8 x s8 pair sum is <= {2 * 255 * max_w:,} <= 32,767" if weights else
                 "its weights are uint8: u8 x u8 kernels widen both operands to 16 bits before adding")
    out, failures = {}, []
    for kc in KERNEL_CLASSES:
        if kc == here:
            m, how = measured, f"measured: ONNX Runtime on this CPU, {cpu_label()}"
        elif risky == 0 and here in KERNEL_CLASSES:
            m, how = measured, f"by construction, equal to the measured class: no adjacent weight pair can leave int16 ({why_exact})"
        elif kc == "exact":                         # ORT's own float evaluation of the unfused QDQ graph
            m = task.compare(renamed(_run(path, x, graph_optimization="disable")[0], mapping), ref, x, y, ds)
            how = "reference: ONNX Runtime with QDQ fusion disabled (the graph in float: exact integer sums)"
        else:
            try:
                got = QdqReferenceRunner(path, kernel_class=kc).load().predict_outputs(x, 64)
                m = task.compare(renamed(got, mapping), ref, x, y, ds)
                how = f"reference: NumPy emulation of the {kc} arithmetic"
            except ModelError as e:
                m, how = {"shape_ok": False, "shape": f"not evaluated ({e})"}, f"not evaluated: {e}"
        required = kc in TARGETS[target]
        fails = task.judge(m, criteria, max_drop_pp, f"kernel class {kc}") if required else []
        failures += fails
        out[kc] = {"means": KERNEL_CLASSES[kc], "how": how, "required_by_target": required, **_figure(m),
                   "passed": not fails}
    out["_weights"] = {"max_abs_int8_weight": max_w, "pairs_that_can_saturate": risky, "uint8_weight_tensors": unsigned}
    return out, failures


def verify_file(path, ctx, exporter, reference: dict | None = None) -> Verification:
    """Run the file on the verification subset in its runtime and judge it against the source by the source's task
    (`ctx.task`); `reference`: the source's outputs on that subset, when the caller has them already."""
    from edgepack.runtimes.machine import cpu_label, onnxruntime_kernel_class
    opts, task = ctx.options, ctx.task
    x, y = ctx.dataset.test_subset(opts.verify_images, opts.seed)
    ref = source_outputs(ctx, x) if reference is None else reference
    xn = ctx.dataset.normalize(x, "NHWC")
    raw, info = _run(path, xn)
    got, mapping, how = matched(ref, raw, Path(path).name.replace(".partial", ""))
    m = task.compare(got, ref, xn, y, ctx.dataset)
    criteria = exporter.criteria(opts)
    quantized = criteria[0] is None
    kernel_classes = None
    if getattr(exporter, "kernel_sensitive", False) and m["shape_ok"]:
        # judged on the kernel classes its target covers; this CPU's own figure counts where its class is one of them
        kernel_classes, failures = kernel_class_proof(path, criteria, xn, ref, y, m, opts.target, opts.verify_max_drop,
                                                      task, ctx.dataset, mapping)
        if onnxruntime_kernel_class() not in TARGETS[opts.target]:
            kernel_classes["_note"] = f"this CPU ({cpu_label()}) is outside target {opts.target}: its figure is recorded, not judged"
    else:
        failures = task.judge(m, criteria, opts.verify_max_drop)
    if info.runtime == "litert" and quantized and m["shape_ok"]:
        kernel_classes = {"exact": {
            "means": "LiteRT's int8 kernels (XNNPACK, ruy) accumulate in int32 on x86 and ARM64; the TFLite int8 spec keeps "
                     "weights in [-127, 127], so ARM kernels without dot-product add pairs in int16 without overflow",
            "how": f"measured: LiteRT on this CPU, {cpu_label()}", "required_by_target": True, **_figure(m),
            "passed": not failures}}
    ok = m["shape_ok"]
    classifier = task.top1
    fid = m.get("outputs")
    return Verification(
        len(y), info.runtime, info.runtime_version, m.get("max_abs_diff", _max_of(fid, "max_abs_diff")),
        m.get("mean_abs_diff", _max_of(fid, "mean_abs_diff")),
        m.get("agreement", 0.0), float((next(iter(ref.values())).argmax(1) == y).mean()) if classifier else
        m.get("source_figure", 0.0), m.get("accuracy", m.get("figure", 0.0)),
        criteria[0], None if quantized or not classifier else criteria[1],
        subset=f"stratified by class, seed {opts.seed}", classes_covered=int(len(ctx.dataset.classes_in(y))),
        accuracy_delta_pp=m.get("delta_pp", 0.0) if ok else 0.0, accuracy_delta_se_pp=m.get("se_pp", 0.0) if ok else 0.0,
        max_accuracy_drop_pp=opts.verify_max_drop if quantized and task.metric else None,
        logit_rms_diff=m.get("rms", 0.0) if ok else 0.0,
        confident_images=m.get("confident", 0) if ok else 0, confident_agreement=m.get("confident_agreement") if ok else None,
        min_confident_agreement=MIN_CONFIDENT_AGREEMENT if quantized and classifier else None,
        target=opts.target, machine=cpu_label(), kernel_classes=kernel_classes, passed=not failures, failures=failures,
        task=task.to_dict(), outputs=fid, output_match=how, notes=task.notes(m, criteria) if ok else [],
        quality={k: v for k, v in m.items() if k not in ("outputs", "shape_ok")} if not classifier and ok else None)


def _max_of(fid: dict | None, key: str) -> float:
    vals = [f[key] for f in (fid or {}).values() if f.get("shape_ok")]
    return max(vals) if vals and len(vals) == len(fid) else float("inf")

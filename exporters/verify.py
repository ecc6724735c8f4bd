"""Numerical verification of an exported file against its source model, in the target runtime.

The images are a stratified, seeded subset of the test set (every class represented, whatever the
order of the files on disk). What is judged depends on the file:

- exact formats (fp32, fp16, lossless archives): max abs logit difference and top-1 agreement;
- quantized formats (int8, dynamic, 8-bit weights): what users care about. (1) The accuracy change
  with its statistical margin: the file fails when its accuracy drop exceeds `max_accuracy_drop`
  (percentage points) by more than two standard errors of the paired difference. (2) Top-1
  agreement on the inputs whose source top-1 margin exceeds the quantization noise (6x the RMS
  logit difference): a flip there is an error, not a coin toss between two near-equal classes.
  Overall agreement is recorded but not judged: a weak model has many near-ties.

Files whose results depend on the CPU's int8 kernels (ONNX Runtime's u8 x s8 Conv/Gemm/MatMul) are
also proven per kernel class (`benchmarks.runners.qdq_reference`): measured in ONNX Runtime for
this CPU's class, by the NumPy reference for the others, and judged by the same criteria on every
class their target covers. Checks are gathered before anything is raised, so a failure names every
check that failed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from toolkit.errors import EdgepackError, ModelError

CONFIDENT_MARGIN_X_RMS = 6.0          # source margin > 6 x RMS logit difference: "confident" input
MIN_CONFIDENT_AGREEMENT = 0.99

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

    def to_dict(self) -> dict:
        return asdict(self)


def source_logits(ctx, x_uint8: np.ndarray) -> np.ndarray:
    return ctx.backend.predict(ctx.model, ctx.dataset.normalize(x_uint8, ctx.backend.LAYOUT))


def compare(got: np.ndarray, ref: np.ndarray, y: np.ndarray) -> dict:
    """Every figure the criteria use, for one set of outputs against the source's."""
    if got.shape != ref.shape:
        return {"shape_ok": False, "shape": f"output shape {got.shape} != source {ref.shape}"}
    diff = np.abs(got - ref)
    g, r = got.argmax(1), ref.argmax(1)
    src_ok, exp_ok = r == y, g == y
    n = len(y)
    b, c = int((src_ok & ~exp_ok).sum()), int((~src_ok & exp_ok).sum())      # discordant pairs
    delta = (c - b) / n
    se = float(np.sqrt(max(b + c - (c - b) ** 2 / n, 0.0)) / n)
    rms = float(np.sqrt(np.mean((got - ref) ** 2)))
    top2 = np.sort(ref, axis=1)[:, -2:] if ref.shape[1] > 1 else np.zeros((n, 2))
    confident = (top2[:, 1] - top2[:, 0]) > CONFIDENT_MARGIN_X_RMS * rms
    return {"shape_ok": True, "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "agreement": float((g == r).mean()), "source_accuracy": float(src_ok.mean()),
            "accuracy": float(exp_ok.mean()), "delta_pp": 100 * delta, "se_pp": 100 * se, "rms": rms,
            "confident": int(confident.sum()),
            "confident_agreement": float((g[confident] == r[confident]).mean()) if confident.any() else None}


def judge(m: dict, criteria: tuple, max_drop_pp: float, where: str = "") -> list[str]:
    """The failed checks for one comparison (empty: passed); `criteria` is the exporter's (atol, min_agreement)."""
    at = f" ({where})" if where else ""
    if not m["shape_ok"]:
        return [m["shape"] + at]
    failures = []
    atol, min_agreement = criteria
    if atol is not None:                            # an exact format: numerically equal, same decisions
        if not m["max_abs_diff"] <= atol:
            failures.append(f"max abs logit difference {m['max_abs_diff']:.3g} > {atol:g}{at}")
        if m["agreement"] < min_agreement:
            failures.append(f"top-1 agreement {m['agreement']:.2%} < {min_agreement:.0%}{at}")
        return failures
    drop = -m["delta_pp"]
    if drop > max_drop_pp + 2 * m["se_pp"]:
        failures.append(f"accuracy {100 * m['accuracy']:.2f}% is {drop:.2f} pp below the source's "
                        f"{100 * m['source_accuracy']:.2f}% (allowed {max_drop_pp:g} pp + 2 x {m['se_pp']:.2f} pp){at}")
    ca = m["confident_agreement"]
    if ca is not None and ca < MIN_CONFIDENT_AGREEMENT:
        failures.append(f"top-1 agreement {ca:.2%} < {MIN_CONFIDENT_AGREEMENT:.0%} on the {m['confident']} inputs "
                        f"the source decides by a clear margin{at}")
    return failures


def _run(path, x: np.ndarray, **runner_options):
    from benchmarks.runners import open_runner
    runner = open_runner(path, threads=None, **runner_options)
    try:
        return runner.predict(x), runner.info()
    finally:
        runner.close()


def kernel_class_proof(path, criteria: tuple, x: np.ndarray, ref: np.ndarray, y: np.ndarray, measured: dict,
                       target: str, max_drop_pp: float) -> tuple[dict, list[str]]:
    """Judge an ORT int8 file on every kernel class: this CPU's measured, the others by the NumPy reference."""
    from benchmarks.machine import cpu_label, onnxruntime_kernel_class
    from benchmarks.onnx_reader import read_onnx
    from benchmarks.runners.qdq_reference import KERNEL_CLASSES, QdqReferenceRunner, risky_pairs
    here = onnxruntime_kernel_class()
    g = read_onnx(Path(path).read_bytes())
    weights = [t.array for t in g.initializers.values() if t.array is not None and t.array.dtype == np.int8 and t.array.ndim >= 2]
    risky = sum(risky_pairs(w) for w in weights)
    max_w = max((int(np.abs(w.astype(np.int32)).max()) for w in weights), default=0)
    out, failures = {}, []
    for kc in KERNEL_CLASSES:
        if kc == here:
            m, how = measured, f"measured: ONNX Runtime on this CPU, {cpu_label()}"
        elif risky == 0 and here in KERNEL_CLASSES:
            m, how = measured, ("by construction, equal to the measured class: no adjacent weight pair can leave int16 "
                                f"(max |w| = {max_w}: every u8 x s8 pair sum is <= {2 * 255 * max_w:,} <= 32,767)")
        elif kc == "exact":                         # ORT's own float evaluation of the unfused QDQ graph
            m = compare(_run(path, x, graph_optimization="disable")[0], ref, y)
            how = "reference: ONNX Runtime with QDQ fusion disabled (the graph in float: exact integer sums)"
        else:
            try:
                m = compare(QdqReferenceRunner(path, kernel_class=kc).load().predict(x), ref, y)
                how = f"reference: NumPy emulation of the {kc} arithmetic"
            except ModelError as e:
                m, how = {"shape_ok": False, "shape": f"not evaluated ({e})"}, f"not evaluated: {e}"
        required = kc in TARGETS[target]
        fails = judge(m, criteria, max_drop_pp, f"kernel class {kc}") if required else []
        failures += fails
        out[kc] = {"means": KERNEL_CLASSES[kc], "how": how, "required_by_target": required,
                   "accuracy": m.get("accuracy"), "agreement": m.get("agreement"),
                   "confident_agreement": m.get("confident_agreement"), "delta_pp": m.get("delta_pp"),
                   "passed": not fails}
    out["_weights"] = {"max_abs_int8_weight": max_w, "pairs_that_can_saturate": risky}
    return out, failures


def verify_file(path, ctx, exporter, reference: np.ndarray | None = None) -> Verification:
    from benchmarks.machine import cpu_label, onnxruntime_kernel_class
    opts = ctx.options
    x, y = ctx.dataset.test_subset(opts.verify_images, opts.seed)
    ref = source_logits(ctx, x) if reference is None else reference
    xn = ctx.dataset.normalize(x, "NHWC")
    got, info = _run(path, xn)
    m = compare(got, ref, y)
    criteria = exporter.criteria(opts)
    quantized = criteria[0] is None
    kernel_classes = None
    if getattr(exporter, "kernel_sensitive", False) and m["shape_ok"]:
        # judged on the kernel classes its target covers; this CPU's own figure counts where its class is one of them
        kernel_classes, failures = kernel_class_proof(path, criteria, xn, ref, y, m, opts.target, opts.max_accuracy_drop)
        if onnxruntime_kernel_class() not in TARGETS[opts.target]:
            kernel_classes["_note"] = f"this CPU ({cpu_label()}) is outside target {opts.target}: its figure is recorded, not judged"
    else:
        failures = judge(m, criteria, opts.max_accuracy_drop)
    if info.runtime == "litert" and quantized and m["shape_ok"]:
        kernel_classes = {"exact": {
            "means": "LiteRT's int8 kernels (XNNPACK, ruy) accumulate in int32 on x86 and ARM64; the TFLite int8 spec keeps "
                     "weights in [-127, 127], so ARM kernels without dot-product add pairs in int16 without overflow",
            "how": f"measured: LiteRT on this CPU, {cpu_label()}", "required_by_target": True,
            "accuracy": m["accuracy"], "agreement": m["agreement"], "confident_agreement": m["confident_agreement"],
            "delta_pp": m["delta_pp"], "passed": not failures}}
    ok = m["shape_ok"]
    return Verification(
        len(y), info.runtime, info.runtime_version, m.get("max_abs_diff", float("inf")), m.get("mean_abs_diff", float("inf")),
        m.get("agreement", 0.0), float((ref.argmax(1) == y).mean()), m.get("accuracy", 0.0),
        criteria[0], None if quantized else criteria[1],
        subset=f"stratified by class, seed {opts.seed}", classes_covered=int(len(np.unique(y))),
        accuracy_delta_pp=m.get("delta_pp", 0.0) if ok else 0.0, accuracy_delta_se_pp=m.get("se_pp", 0.0) if ok else 0.0,
        max_accuracy_drop_pp=opts.max_accuracy_drop if quantized else None, logit_rms_diff=m.get("rms", 0.0) if ok else 0.0,
        confident_images=m.get("confident", 0) if ok else 0, confident_agreement=m.get("confident_agreement") if ok else None,
        min_confident_agreement=MIN_CONFIDENT_AGREEMENT if quantized else None,
        target=opts.target, machine=cpu_label(), kernel_classes=kernel_classes, passed=not failures, failures=failures)

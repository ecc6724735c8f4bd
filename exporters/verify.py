"""Numerical verification of an exported file against its source model, in the target runtime.

Checks are gathered before anything is raised (output shape, max abs difference, top-1 agreement),
so a failure names every check that failed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from toolkit.errors import EdgepackError


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
    min_agreement: float
    passed: bool = True
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def source_logits(ctx, x_uint8: np.ndarray) -> np.ndarray:
    return ctx.backend.predict(ctx.model, ctx.dataset.normalize(x_uint8, ctx.backend.LAYOUT))


def verify_file(path, ctx, exporter, reference: np.ndarray | None = None) -> Verification:
    from benchmarks.runners import open_runner
    x, y = ctx.dataset.test_subset(ctx.options.verify_images)
    ref = source_logits(ctx, x) if reference is None else reference
    runner = open_runner(path, threads=None)
    try:
        got = runner.predict(ctx.dataset.normalize(x, "NHWC"))
        info = runner.info()
    finally:
        runner.close()
    failures = []
    if got.shape != ref.shape:
        failures.append(f"output shape {got.shape} != source {ref.shape}")
        diff = np.array([np.inf])
        agree = 0.0
    else:
        diff = np.abs(got - ref)
        agree = float((got.argmax(1) == ref.argmax(1)).mean())
    max_diff = float(diff.max())
    if exporter.atol is not None and not max_diff <= exporter.atol:
        failures.append(f"max abs logit difference {max_diff:.3g} > {exporter.atol:g}")
    if agree < exporter.min_agreement:
        failures.append(f"top-1 agreement {agree:.2%} < {exporter.min_agreement:.0%}")
    return Verification(len(y), info.runtime, info.runtime_version, max_diff, float(diff.mean()), agree,
                        float((ref.argmax(1) == y).mean()), float((got.argmax(1) == y).mean()) if got.ndim == 2 else 0.0,
                        exporter.atol, exporter.min_agreement, not failures, failures)

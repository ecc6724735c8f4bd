"""Which layers make an int8 file slow or inaccurate, measured in its runtime: per-layer attribution, and the
mixed-precision layer sets worth trying.

For one int8 format (ORT QDQ, TFLite full-integer) the attribution writes the full-int8 file and, for every
compute layer, the same file with only that layer kept float (`keep_float`); each is timed in its runtime
(interleaved rounds, so drift on a shared machine hits every variant alike) and run on training images
against the source model. What a layer costs is the difference it makes when it leaves int8: time saved
(which includes the quantize/dequantize work at its boundaries, which a per-op profile does not show) and
logit error removed. Training images are used, so the choice of layers never looks at the test set.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from edgepack.runtimes.timing import time_interleaved
from edgepack.toolkit.errors import EdgepackError
from edgepack.toolkit.tasks import matched


@dataclass
class LayerCost:
    layer: str
    op: str
    p50_us: float              # the file with only this layer float
    saved_us: float            # full-int8 p50 minus p50_us (> 0: int8 made this layer slower)
    rms: float                 # logit RMS against the source, this layer float
    rms_removed: float         # full-int8 RMS minus rms (> 0: int8 error this layer carried)
    agreement: float | None    # top-1 agreement with the source, this layer float (classifiers)


@dataclass
class Attribution:
    format: str
    runtime: str
    threads: int
    images: int
    full_p50_us: float
    full_rms: float
    full_agreement: float | None   # top-1 agreement with the source (a classifier's; None for other tasks)
    noise_us: float            # spread of the full-int8 file's per-round medians
    layers: list[LayerCost]
    error: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def attribute(ctx, fmt: str, threads: int = 1, images: int = 500, rounds: int = 5, runs: int = 200,
              progress=print) -> Attribution:
    """Leave-one-layer-float attribution of `fmt` (onnx-int8 or tflite-int8) for the source in `ctx`."""
    from edgepack.runtimes import open_runner
    from edgepack.exporters.layers import onnx_layers
    from edgepack.exporters.registry import get_exporter
    exp = get_exporter(fmt)
    layers = onnx_layers(ctx.fp32_onnx())
    work = ctx.work_dir / f"attribution-{fmt}"
    work.mkdir(exist_ok=True)
    base = ctx.options
    x = ctx.dataset.calibration(images, base.seed + 7, "NHWC")       # training images, not the calibration draw
    ref = ctx.backend.predict_outputs(ctx.model, x if ctx.backend.LAYOUT == "NHWC" else x.transpose(0, 3, 1, 2))
    variants = [("", None)] + [(layer.name, layer) for layer in layers]
    paths = []
    try:
        for i, (name, _) in enumerate(variants):
            progress(f"  [{fmt}] {'full int8' if not name else name + ' float'} ({i + 1}/{len(variants)})")
            ctx.options = dataclasses.replace(base, keep_float=name)
            p = work / f"v{i}{exp.suffix}"
            exp.export(ctx, p)
            paths.append(p)
    except EdgepackError as e:
        return Attribution(fmt, exp.runtime, threads, images, 0, 0, 0, 0, [], error=str(e))
    finally:
        ctx.options = base
    runners = [open_runner(p, threads=threads) for p in paths]
    try:
        outs = [matched(ref, r.predict_outputs(x), p.name)[0] for r, p in zip(runners, paths)]   # every output, by name
        feeds = [r.prepare(x[:1]) for r in runners]
        med = time_interleaved([r.run for r in runners], feeds, rounds, runs)
        runtime = runners[0].info().runtime
    finally:
        for r in runners:
            r.close()
    p50 = np.median(med, axis=0)
    flat_ref = np.concatenate([v.reshape(len(x), -1) for v in ref.values()], axis=1)
    flat = [np.concatenate([o[k].reshape(len(x), -1) for k in ref], axis=1) for o in outs]
    rms = [float(np.sqrt(np.mean((o - flat_ref) ** 2))) for o in flat]
    classifier = ctx.task.top1
    agree = [float((o.argmax(1) == flat_ref.argmax(1)).mean()) if classifier else None for o in flat]
    noise = float(np.median(np.abs(med[:, 0] - p50[0])) * 1.4826) if rounds > 1 else 0.0
    costs = [LayerCost(layer.name, layer.op, float(p50[i]), float(p50[0] - p50[i]), rms[i], rms[0] - rms[i], agree[i])
             for i, (_, layer) in enumerate(variants) if layer is not None]
    return Attribution(fmt, runtime, threads, len(x), float(p50[0]), rms[0], agree[0], noise, costs)


def propose(att: Attribution, max_sets: int = 4) -> list[list[str]]:
    """Layer sets to keep float, from the measurements: the layers whose float version is measurably faster,
    cumulatively by time saved (one, two, three of them), and the one or two carrying the most int8 error."""
    if att.error or not att.layers:
        return []
    threshold = max(3 * att.noise_us, 0.02 * att.full_p50_us)
    fast = sorted((c for c in att.layers if c.saved_us > threshold), key=lambda c: -c.saved_us)
    sets = [[c.layer for c in fast[:k]] for k in range(1, min(len(fast), 3) + 1)]
    noisy = sorted((c for c in att.layers if c.rms_removed > 0.1 * att.full_rms), key=lambda c: -c.rms_removed)
    sets += [[c.layer for c in noisy[:k]] for k in range(1, min(len(noisy), 2) + 1)]
    out = []
    for s in sets:
        if sorted(s) not in [sorted(o) for o in out] and len(s) < len(att.layers):
            out.append(s)
    return out[:max_sets]


def why_no_proposal(att: Attribution) -> str | None:
    """Why `propose` found no layer set, in words (None when it found some, or the attribution failed)."""
    if att.error or not att.layers or propose(att):
        return None
    threshold = max(3 * att.noise_us, 0.02 * att.full_p50_us)
    return (f"no mixed-precision candidate from {att.format}: no layer's float version was faster by more than "
            f"{threshold:.1f} us (3x the round-to-round spread or 2% of the full-int8 p50, whichever is larger) and none "
            f"carries more than 10% of the int8 error (logit RMS {att.full_rms:.4f})")


def attribution_table(att: Attribution, float_layers: list[str] = ()) -> list[str]:
    """Markdown rows: what each layer costs in this format and runtime."""
    if att.error:
        return [f"attribution of {att.format} failed: {att.error}"]
    lines = [f"**{att.format}** in {att.runtime}, {att.threads} thread(s): full-int8 p50 {att.full_p50_us:.1f} us "
             f"(round-to-round spread {att.noise_us:.1f} us), output RMS vs source {att.full_rms:.4f} (every output), "
             + (f"top-1 agreement {att.full_agreement:.2%} " if att.full_agreement is not None else "")
             + f"on {att.images} training images", "",
             "| layer | op | p50 with this layer float (us) | time int8 costs here (us) | logit RMS, layer float | "
             "int8 error it carries (RMS) |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    for c in att.layers:
        mark = " (float in the pick)" if c.layer in float_layers else ""
        lines.append(f"| {c.layer}{mark} | {c.op} | {c.p50_us:.1f} | {c.saved_us:+.1f} | {c.rms:.4f} | {c.rms_removed:+.4f} |")
    return lines


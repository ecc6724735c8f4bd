"""The pick: every candidate judged against the budgets, with the reason it was rejected, and the best one within
them. Pure functions of measured rows: the same code picks at home and from a device's results (`deploy --select`)."""
from __future__ import annotations

from edgepack.toolkit.deploy.budgets import Budgets, violations
from edgepack.toolkit.deploy.rows import Row
from edgepack.toolkit.errors import ModelError


def host_timing_note(best: Row, budgets: Budgets) -> str | None:
    """Said with a pick made on latency in a microcontroller runtime (one whose runner measures a tensor arena, and
    times reference kernels on the host CPU): the latency is the host's, not the board's."""
    from edgepack.runtimes import arena_runtimes
    if best.runtime in arena_runtimes() and budgets.prefer == "latency":
        return (f"the latency that decided it is {best.runtime}'s reference kernels on this host CPU, not a board's: "
                "for a board, --prefer size, or time the files on it")
    return None


def judge(rows: list[Row], budgets: Budgets, reference: float | None) -> None:
    """Fill each row's rejection reasons (empty: within every budget)."""
    for r in rows:
        r.reasons = []
        if r.error:
            r.reasons.append(f"failed: {r.error}")
            continue
        if not r.verified:
            r.reasons.append("failed verification")
        too_large = budgets.max_size is not None and r.size is not None and r.size > budgets.max_size
        if r.p50_ms is None and not too_large:          # a file over the size budget is not benchmarked at all
            r.reasons.append("not timed")
        r.reasons += violations(r, budgets, reference)


def pick(rows: list[Row], budgets: Budgets, reference: float | None) -> Row:
    """The best row within every budget: the fastest p50 (ties: the smaller file), or with prefer=size the smallest
    (ties: the faster). Raises ModelError with one line naming the nearest misses when none qualifies."""
    judge(rows, budgets, reference)
    if budgets.max_accuracy_drop is not None and reference is None:
        raise ModelError("--max-accuracy-drop needs the fp32 reference accuracy, and no fp32 file was measured in "
                         "ONNX Runtime or LiteRT (include one of them in --runtime, or give --min-accuracy)")
    ok = [r for r in rows if not r.reasons]
    if not ok:
        near = sorted((r for r in rows if not r.error), key=lambda r: len(r.reasons))[:3]
        why = "; ".join(f"{r.label}: {', '.join(r.reasons)}" for r in near) or "every candidate failed"
        metric = next((r.metric for r in rows), "accuracy")
        raise ModelError(f"no candidate meets the budgets ({budgets.describe(metric)}): {why}")
    key = (lambda r: (r.p50_ms, r.size or 0)) if budgets.prefer == "latency" else (lambda r: (r.size or 0, r.p50_ms))
    best = min(ok, key=key)
    best.picked = True
    return best

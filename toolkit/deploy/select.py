"""Choosing the file to ship: every candidate judged against the budgets with the reason it was rejected, the pick,
the table and the Pareto plot. Pure functions of measured rows: the same code picks at home and from a device's
results (`deploy --select`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from edgepack.toolkit.deploy.budgets import Budgets, violations
from edgepack.toolkit.errors import ModelError
from edgepack.toolkit.outputs import save_figure


@dataclass
class Row:
    label: str                       # e.g. "tflite-int8, mixed: conv0 float"
    file: str                        # path of the candidate file
    format: str                      # exporter name
    precision: str                   # fp32 | fp16 | dynamic | int8 | mixed
    runtime: str | None
    p50_ms: float | None = None
    size: int | None = None
    gzip: int | None = None
    accuracy: float | None = None    # percent, full test set in the runtime (or as `accuracy_from` says)
    accuracy_from: str = ""
    verified: bool = False
    error: str | None = None         # export, verification, benchmark or golden-vector failure
    float_layers: list = field(default_factory=list)
    sha256: str | None = None
    arena: int | None = None         # tensor arena bytes the runtime measured (TFLite Micro), else None
    reasons: list = field(default_factory=list)
    picked: bool = False
    metric: str | None = "accuracy"  # what `accuracy` holds (x 100): top-1 accuracy, the task's metric (ROC AUC), None
    notes: list = field(default_factory=list)   # what its verification could not prove (a source at chance level, ...)

    def figure_text(self) -> str:
        """The row's task figure as reports print it."""
        if self.accuracy is None:
            return "no quality figure (verified by its outputs)" if self.metric is None else f"{self.metric} not measured"
        if self.metric in (None, "accuracy"):
            return f"accuracy {self.accuracy:.2f}%"
        return f"{self.metric} {self.accuracy / 100:.4f}"

    def to_dict(self) -> dict:
        return asdict(self)


def host_timing_note(best: Row, budgets: Budgets) -> str | None:
    """Said with a pick made on latency in a microcontroller runtime (one whose runner measures a tensor arena, and
    times reference kernels on the host CPU): the latency is the host's, not the board's."""
    from edgepack.benchmarks.runners import arena_runtimes
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


def table(rows: list[Row]) -> list[str]:
    """Markdown: every candidate, fastest first, with its verdict (and the tensor arena, where one was measured)."""
    arenas = any(r.arena is not None for r in rows)
    metrics = {r.metric for r in rows}
    metric = next((m for m in metrics if m not in (None, "accuracy")), "accuracy" if "accuracy" in metrics else "quality")
    out = ["| candidate | runtime | p50 ms | size B | gzip B | " + ("tensor arena B | " if arenas else "") + f"{metric} | verdict |",
           "| --- | --- | ---: | ---: | ---: | " + ("---: | " if arenas else "") + "---: | --- |"]
    for r in sorted(rows, key=lambda r: (r.p50_ms is None, r.p50_ms or 0)):
        acc = "-" if r.accuracy is None else (f"{r.accuracy:.2f}%" if r.metric in (None, "accuracy") else
                                              f"{r.accuracy / 100:.4f}")
        verdict = "**picked**" if r.picked else ("ok" if not r.reasons else "; ".join(r.reasons))
        if r.notes:
            verdict += " (verification notes below)"
        arena = (f"{'-' if r.arena is None else f'{r.arena:,}'} | " if arenas else "")
        out.append(f"| {r.label} | {r.runtime or '-'} | {'-' if r.p50_ms is None else f'{r.p50_ms:.4f}'} | "
                   f"{'-' if r.size is None else f'{r.size:,}'} | {'-' if r.gzip is None else f'{r.gzip:,}'} | {arena}{acc} | {verdict} |")
    return out


def notes_lines(rows: list[Row]) -> list[str]:
    """Markdown: each file's verification notes, once per file."""
    seen, out = set(), []
    for r in rows:
        if r.notes and r.file not in seen:
            seen.add(r.file)
            out += [f"- {r.label}: {n}" for n in r.notes]
    return (["", "Verification notes:", ""] + out) if out else []


def _log_share(x: float, xs: list[float]) -> float:
    """Where x lies between the smallest and largest of xs on a log axis (0 to 1; 0.5 when they are all one)."""
    import math
    lo, hi = math.log(min(xs)), math.log(max(xs))
    return 0.5 if hi <= lo else (math.log(x) - lo) / (hi - lo)


def pareto_plot(rows: list[Row], path, title: str) -> str | None:
    """p50 against file size, accuracy as colour; rejected candidates hollow, the pick starred."""
    pts = [r for r in rows if r.p50_ms is not None and r.size is not None and not r.error]
    if not pts:
        return None
    sizes = [r.size for r in pts]
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5.5))
    accs = [r.accuracy for r in pts if r.accuracy is not None]
    lo, hi = (min(accs), max(accs)) if accs else (0, 1)
    if accs and hi - lo < 1.0:                   # a spread under 1 point is not worth a full colour range
        mid = (hi + lo) / 2
        lo, hi = mid - 0.5, mid + 0.5
    cmap = plt.get_cmap("viridis")
    for r in pts:
        c = cmap((r.accuracy - lo) / (hi - lo) if r.accuracy is not None and hi > lo else 0.5)
        if r.picked:
            ax.scatter(r.size, r.p50_ms * 1e3, s=260, marker="*", color=c, edgecolors="red", linewidths=1.5, zorder=3)
        else:
            ax.scatter(r.size, r.p50_ms * 1e3, s=60, facecolors=c if not r.reasons else "none", edgecolors=c, zorder=2)
        right = _log_share(r.size, sizes) > 0.6          # labels of the right-hand points run leftwards, inside the axes
        gap = 9 if r.picked else 4                        # clear of the star
        ax.annotate(f"{r.label} ({r.runtime})", (r.size, r.p50_ms * 1e3), fontsize=7, xytext=(-gap if right else gap, 3),
                    textcoords="offset points", ha="right" if right else "left")
    ax.set_xscale("log")
    ax.margins(x=0.08, y=0.08)
    ax.set_xlabel("file size (bytes, log)")
    ax.set_ylabel("p50 latency (us)")
    ax.set_title(title, fontsize=9)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(lo, hi))
    metric = next((r.metric for r in pts if r.metric), None)
    if accs:                                     # no figure measured: no colour bar pretending one
        fig.colorbar(sm, ax=ax, label="accuracy (%)" if metric in (None, "accuracy") else f"{metric} (x 100)")
    ax.text(0.01, 0.01, "filled: within budgets; hollow: rejected; star: pick", transform=ax.transAxes, fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, 120)
    plt.close(fig)
    return str(path)

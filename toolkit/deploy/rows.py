"""The record of one candidate file that the budgets judge (a deploy row): built here and only here, from an export
that failed, an export too large to benchmark, or a benchmark result (this machine's `BenchResult`, or a device's
result read back from its JSON)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


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


def figure_of(bench: dict) -> float | None:
    """A benchmark result's task figure in points (percent): top-1 accuracy, or the task's metric (ROC AUC x 100)."""
    if bench.get("accuracy") is not None:
        return 100 * bench["accuracy"]
    v = (bench.get("quality") or {}).get("value")
    return None if v is None else 100 * v


def failed_row(label: str, file: str, fmt: str, error: str) -> Row:
    """A candidate whose export or verification failed."""
    return Row(label, file, fmt, "-", None, error=error)


def unmeasured_row(label: str, file: str, fmt: str, precision: str, size: int, gzip: int | None, sha256: str) -> Row:
    """A verified candidate not benchmarked: over the size budget, so it cannot be picked whatever it measures."""
    return Row(label, file, fmt, precision, None, size=size, gzip=gzip, verified=True, sha256=sha256)


def measured_row(label: str, file: str, fmt: str, precision: str, bench: dict, *, accuracy: float | None,
                 accuracy_from: str, verified: bool = True, error: str | None = None, size: int | None = None,
                 float_layers=(), notes=(), sha256: str | None = None, metric: str | None = "accuracy") -> Row:
    """A candidate as one benchmark result measured it in one runtime (`bench`: the result as a dict, as
    `edgepack bench --json` writes it); `size`: the file's size where the result does not say it."""
    from edgepack.runtimes.base import arena_of
    return Row(label, file, fmt, precision, bench.get("runtime"), p50_ms=(bench.get("latency_ms") or {}).get("p50"),
               size=bench.get("size_bytes") if size is None else size, gzip=bench.get("gzip_bytes"),
               accuracy=accuracy, accuracy_from=accuracy_from if accuracy is not None else "", verified=verified,
               error=error, float_layers=list(float_layers), notes=list(notes), sha256=sha256,
               arena=arena_of(bench.get("runtime_info")), metric=metric)

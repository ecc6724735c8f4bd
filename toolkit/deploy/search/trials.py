"""The search's work: one trial's file exported and scored on training images (`export_trial`), a batch of files
timed interleaved (`time_files`), and a trial's score against the budgets (`score`). Module-level functions with
plain arguments, so an executor can run them as Ray tasks; each worker process rebuilds the source's export context
once (`_CONTEXTS`)."""
from __future__ import annotations

import dataclasses
import math
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepack.toolkit.deploy.budgets import excess
from edgepack.toolkit.deploy.search.samplers import Config
from edgepack.toolkit.errors import EdgepackError


@dataclass
class Trial:
    number: int
    config: Config
    file: str = ""
    size: int | None = None
    accuracy: float | None = None        # % on the search's training images, in the trial's runtime
    agreement: float | None = None       # top-1 agreement with the source on them
    p50_us: float | None = None          # drift-corrected with the batch's anchor
    error: str | None = None
    score: float = math.inf
    feasible: bool = False
    node: str = ""

    @property
    def p50_ms(self) -> float | None:         # the figure the latency budget limits
        return None if self.p50_us is None else self.p50_us / 1000

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["config"] = {"format": self.config.fmt, "runtime": self.config.runtime,
                       "float_layers": list(self.config.float_layers)}
        return d


def search_runtimes(fmt: str, wanted: list[str] | None) -> list[str]:
    """The installed runtimes that run a format's files (default first), limited to `wanted` unless it is None or
    ["all"]; none when no runtime of the format is installed or wanted (the format is then not searched)."""
    from edgepack.runtimes import installed_runtimes
    from edgepack.exporters.registry import get_exporter
    able = installed_runtimes("x" + get_exporter(fmt).suffix, wanted)
    return able if not wanted or wanted == ["all"] else [rt for rt in able if rt in wanted]


@dataclass(frozen=True)
class Source:
    """How a worker rebuilds the export context: the source and its data, as the driver loaded them."""
    model: str
    data: str | None
    data_dir: str | None
    preprocessing: tuple = ()
    work: str = ""
    images: int = 2000
    seed: int = 0
    calibration: int | None = None       # deploy's --calibration-samples (None: the task's default)


_CONTEXTS: dict[Source, tuple] = {}        # per process: Source -> (ctx, x, labels, source logits)


def _training_images(ds, n: int, seed: int):
    from edgepack.toolkit.data.dataset import stratified_indices
    idx = stratified_indices(ds.y_train, n, seed + 11)    # not the calibration draw, not the test set
    return ds.normalize(ds.x_train[idx], "NHWC").astype(np.float32), ds.y_train[idx]


def register(src: Source, ctx) -> None:
    """The driver's own context, so in-process trials reuse its fp32 ONNX and onnx2tf conversion."""
    x, y = _training_images(ctx.dataset, src.images, src.seed)
    ref = ctx.backend.predict(ctx.model, x if ctx.backend.LAYOUT == "NHWC" else x.transpose(0, 3, 1, 2))
    _CONTEXTS[src] = (ctx, x, y, ref)


def _context(src: Source):
    if src not in _CONTEXTS:                              # a Ray worker: load the source once per process
        from edgepack.exporters.api import export_context
        from edgepack.toolkit.api import dataset_for, load_checkpoint
        loaded = load_checkpoint(Path(src.model))
        ds = dataset_for(loaded, src.data, src.data_dir, dict(src.preprocessing) or None)
        work = Path(src.work) / f"worker-{socket.gethostname()}-{os.getpid()}"
        work.mkdir(parents=True, exist_ok=True)
        ctx = export_context(loaded.model, ds, work, source_record=loaded.record, source_path=Path(src.model))
        ctx._work = work
        register(src, ctx)
    return _CONTEXTS[src]


def export_trial(src: Source, fmt: str, float_layers: tuple, path: str, runtime: str = "") -> dict:
    """One trial's file, and how it does on the search's training images in the trial's runtime (accuracy,
    agreement with the source)."""
    from edgepack.runtimes import open_runner
    from edgepack.exporters.base import ExportOptions
    from edgepack.exporters.registry import get_exporter
    ctx, x, y, ref = _context(src)
    exp = get_exporter(fmt)
    base = ctx.options
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    ctx.options = ExportOptions(keep_float=",".join(float_layers), calibration_samples=src.calibration)
    try:
        exp.export(ctx, tmp)
        os.replace(tmp, path)
        runner = open_runner(path, threads=None, runtime=runtime or None)
        try:
            out = runner.predict(x)
        finally:
            runner.close()
    except EdgepackError as e:
        tmp.unlink(missing_ok=True)
        return {"error": str(e)}
    finally:
        ctx.options = base
    return {"size": path.stat().st_size, "accuracy": float(100 * (out.argmax(1) == y).mean()),
            "agreement": float((out.argmax(1) == ref.argmax(1)).mean()), "node": socket.gethostname()}


def time_files(paths: list[str], x1: np.ndarray, threads: int, runtimes: list[str] | None = None, rounds: int = 3,
               runs: int = 100) -> dict:
    """p50 (us) of each file (in its runtime, "" the default) on one image, timed in interleaved rounds; runs as a
    bench task (a node to itself)."""
    from edgepack.runtimes import open_runner
    from edgepack.runtimes.timing import time_interleaved
    start = time.time()
    runners = [open_runner(p, threads=threads, runtime=rt or None) for p, rt in zip(paths, runtimes or [""] * len(paths))]
    try:
        med = time_interleaved([r.run for r in runners], [r.prepare(x1) for r in runners], rounds, runs)
    finally:
        for r in runners:
            r.close()
    return {"p50_us": [float(v) for v in np.median(med, axis=0)], "node": socket.gethostname(), "pid": os.getpid(),
            "start": start, "end": time.time(), "files": len(paths)}


def _score(t: Trial, budgets, source_accuracy: float) -> tuple[float, bool]:
    """(score, feasible): the objective (p50 or size) inside every budget; outside, the objective scaled up by how
    far outside it is (budgets.excess: so the sampler still learns which way is better). `budgets`: the search's
    (Budgets.for_search: the accuracy budget is a drop against the source's accuracy on the same training images)."""
    if t.error or t.p50_us is None or t.accuracy is None:
        return math.inf, False
    outside = excess(t, budgets, source_accuracy)
    objective = t.p50_us if budgets.prefer == "latency" else float(t.size)
    return (objective, True) if outside == 0 else (objective * (2 + outside), False)

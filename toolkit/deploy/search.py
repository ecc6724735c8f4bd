"""Mixed precision by search, for per-layer precision spaces too large to enumerate (2^layers per int8 format).

    space {format: source layers} x {format: runtimes} -> sampler.ask() -> trials (format, runtime, float layers)
      -> export each trial's file                    executor.map: in this process, or Ray tasks with their CPUs
      -> score it on training images against labels and the source (never the test set: the pick is judged there)
      -> time the batch interleaved, each file in its trial's runtime
                                                     executor.map(bench=True): a node to itself, the full-int8 file
                                                     of each (format, runtime) in every batch as the anchor against drift
      -> sampler.tell(score) -> ... until the trial budget, the goal (a trial inside every budget, the latency one
         included), or `patience` trials without a better feasible one
    The best distinct trials then become ordinary deploy candidates: exported again through the exporters (verified)
    and benchmarked on the full test set beside every other candidate, so a searched file is judged like the rest.

Samplers: `exhaustive` (every combination, fewest float layers first), `tpe` (Optuna's TPE, as the peers that search
compression settings use; the `search` extra), `auto` (exhaustive when the space fits the trial budget, else tpe).
The trials' numbers are proxies (training images, a few hundred timed runs); the figures a pick is chosen on are the
full-test-set benchmark's.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import os
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgepack.toolkit.deploy.budgets import excess
from edgepack.toolkit.errors import EdgepackError, OptionError

SAMPLERS = ("exhaustive", "tpe", "auto")
BETTER = 0.98               # a trial counts as better than another when it scores 2% lower (timing noise is ~1%)
STARTUP = 8                 # TPE's random trials before it models; patience counts only after twice that many


@dataclass(frozen=True)
class Config:
    fmt: str
    float_layers: tuple[str, ...] = ()
    runtime: str = ""                    # "" : the format's default runtime

    def describe(self) -> str:
        where = f" in {self.runtime}" if self.runtime else ""
        return f"{self.fmt}{where} " + (f"({', '.join(self.float_layers)} float)" if self.float_layers else "(full int8)")


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


@dataclass
class SearchResult:
    sampler: str
    space: dict[str, list[str]]
    runtimes: dict[str, list[str]]
    space_size: int
    budget_trials: int
    images: int
    source_accuracy: float
    allowed_drop: float
    trials: list[Trial] = field(default_factory=list)
    asked: int = 0
    stop: str = ""
    timings: list[dict] = field(default_factory=list)      # each timing batch: node, start, end, files

    def best(self, n: int = 3) -> list[Trial]:
        """The n best feasible trials that keep some layer float and score better than the full-int8 file of their
        format in their runtime (a candidate already); one per (format, layers): the candidates run in every runtime."""
        full = {(t.config.fmt, t.config.runtime): t.score for t in self.trials if not t.config.float_layers and t.feasible}
        ok, files = [], set()
        for t in sorted(self.trials, key=lambda t: (t.score, t.number)):
            key = (t.config.fmt, t.config.float_layers)
            if (t.feasible and t.config.float_layers and key not in files
                    and t.score < BETTER * full.get((t.config.fmt, t.config.runtime), math.inf)):
                ok.append(t)
                files.add(key)
        return ok[:n]

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["trials"] = [t.to_dict() for t in self.trials]
        return d


def space_size(space: dict[str, list[str]], runtimes: dict[str, list[str]] | None = None) -> int:
    """Combinations to try: every subset of each format's layers except all of them (that is the fp32 file), in each
    runtime of the format."""
    return sum((2 ** len(layers) - 1) * len((runtimes or {}).get(f) or [""]) for f, layers in space.items())


# ------------------------------------------------------------------------------------------------ samplers
class Sampler:
    name = ""

    def ask(self) -> tuple[Config, object] | None:
        """The next configuration and a handle for tell(); None when the space is exhausted."""
        raise NotImplementedError

    def tell(self, handle, score: float) -> None:
        pass


class ExhaustiveSampler(Sampler):
    name = "exhaustive"

    def __init__(self, space: dict[str, list[str]], seed: int = 0, runtimes: dict[str, list[str]] | None = None):
        def gen():
            for k in range(max((len(v) for v in space.values()), default=0)):   # fewest float layers first
                for fmt, layers in space.items():
                    if k < len(layers):
                        for combo in itertools.combinations(layers, k):
                            for rt in (runtimes or {}).get(fmt) or [""]:
                                yield Config(fmt, combo, rt)
        self._it = gen()

    def ask(self):
        c = next(self._it, None)
        return None if c is None else (c, None)


class TPESampler(Sampler):
    """Optuna's TPE through its ask-and-tell interface: a format, its runtime, then int8/float per layer."""
    name = "tpe"

    def __init__(self, space: dict[str, list[str]], seed: int = 0, runtimes: dict[str, list[str]] | None = None,
                 startup: int = STARTUP):
        try:
            import optuna
        except ImportError:
            raise OptionError("--mixed-search tpe needs Optuna: pip install 'edgepack[search]' (or use "
                              "--mixed-search exhaustive)") from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():      # multivariate/group are marked experimental: said once here, not per run
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True, group=True)
        self.study = optuna.create_study(direction="minimize", sampler=sampler)
        self.space, self._optuna = space, optuna
        self.runtimes = {f: (runtimes or {}).get(f) or [""] for f in space}
        for fmt in space:                                 # full int8 of each (format, runtime) first: the anchors
            for rt in self.runtimes[fmt]:
                self.study.enqueue_trial({"format": fmt, f"runtime:{fmt}": rt,
                                          **{f"{fmt}:{layer}": "int8" for layer in space[fmt]}})

    def ask(self):
        t = self.study.ask()
        fmt = t.suggest_categorical("format", list(self.space))
        rt = t.suggest_categorical(f"runtime:{fmt}", self.runtimes[fmt])
        layers = tuple(layer for layer in self.space[fmt] if t.suggest_categorical(f"{fmt}:{layer}", ["int8", "float"]) == "float")
        return Config(fmt, layers, rt), t

    def tell(self, handle, score: float) -> None:
        if math.isfinite(score):
            self.study.tell(handle, score)
        else:
            self.study.tell(handle, state=self._optuna.trial.TrialState.FAIL)


def make_sampler(name: str, space: dict[str, list[str]], trials: int, seed: int = 0,
                 runtimes: dict[str, list[str]] | None = None) -> Sampler:
    if name not in SAMPLERS:
        raise OptionError(f"unknown --mixed-search {name!r}; expected attribution or one of {', '.join(SAMPLERS)}")
    if name == "auto":
        name = "exhaustive" if space_size(space, runtimes) <= trials else "tpe"
    return (ExhaustiveSampler if name == "exhaustive" else TPESampler)(space, seed, runtimes)


def search_runtimes(fmt: str, wanted: list[str] | None) -> list[str]:
    """The installed runtimes that run a format's files (default first), limited to `wanted` unless it is None or
    ["all"]; none when no runtime of the format is installed or wanted (the format is then not searched)."""
    from edgepack.benchmarks.runners import installed_runtimes
    from edgepack.exporters.registry import get_exporter
    able = installed_runtimes("x" + get_exporter(fmt).suffix, wanted)
    return able if not wanted or wanted == ["all"] else [rt for rt in able if rt in wanted]


# ------------------------------------------------------------------------------------------------ the work
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
    from edgepack.benchmarks.runners import open_runner
    from edgepack.exporters.base import ExportOptions
    from edgepack.exporters.registry import get_exporter
    ctx, x, y, ref = _context(src)
    exp = get_exporter(fmt)
    base = ctx.options
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    ctx.options = ExportOptions(keep_float=",".join(float_layers))
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
    from edgepack.benchmarks.runners import open_runner
    from edgepack.exporters.mixed import _time_interleaved
    start = time.time()
    runners = [open_runner(p, threads=threads, runtime=rt or None) for p, rt in zip(paths, runtimes or [""] * len(paths))]
    try:
        med = _time_interleaved([r.run for r in runners], [r.prepare(x1) for r in runners], rounds, runs)
    finally:
        for r in runners:
            r.close()
    return {"p50_us": [float(v) for v in np.median(med, axis=0)], "node": socket.gethostname(), "pid": os.getpid(),
            "start": start, "end": time.time(), "files": len(paths)}


# ------------------------------------------------------------------------------------------------ the loop
def _score(t: Trial, budgets, source_accuracy: float) -> tuple[float, bool]:
    """(score, feasible): the objective (p50 or size) inside every budget; outside, the objective scaled up by how
    far outside it is (budgets.excess: so the sampler still learns which way is better). `budgets`: the search's
    (Budgets.for_search: the accuracy budget is a drop against the source's accuracy on the same training images)."""
    if t.error or t.p50_us is None or t.accuracy is None:
        return math.inf, False
    outside = excess(t, budgets, source_accuracy)
    objective = t.p50_us if budgets.prefer == "latency" else float(t.size)
    return (objective, True) if outside == 0 else (objective * (2 + outside), False)


def search(ctx, src: Source, formats, budgets, sampler: str = "auto", trials: int = 32, executor=None,
           threads: int = 1, work: Path | None = None, progress=print, batch: int | None = None,
           patience: int | None = None, runtimes: list[str] | None = None) -> SearchResult:
    """Search the layers to keep float in `formats` (int8 formats with `keep_float`) for ctx's source, in each
    installed runtime of those formats (limited to `runtimes` unless None or ["all"])."""
    from edgepack.exporters.layers import onnx_layers
    from edgepack.exporters.registry import get_exporter
    layers = [layer.name for layer in onnx_layers(ctx.fp32_onnx())]
    where = {f: search_runtimes(f, runtimes) for f in formats if get_exporter(f).accepts(ctx.backend)}
    space = {f: layers for f, rts in where.items() if rts}
    if not space or not layers:
        raise EdgepackError("no int8 format with per-layer precision can be made from this source and run in the "
                            "runtimes asked for: nothing to search")
    register(src, ctx)
    _, x, y, ref = _CONTEXTS[src]
    return run_search(space, src, x[:1], float(100 * (ref.argmax(1) == y).mean()), len(x), budgets, sampler,
                      trials, executor, threads, Path(work or ctx.work_dir / "search"), progress, batch, patience,
                      {f: where[f] for f in space})


def run_search(space: dict[str, list[str]], src: Source, x1: np.ndarray, source_accuracy: float, images: int, budgets,
               sampler: str, trials: int, executor, threads: int, work: Path, progress=print,
               batch: int | None = None, patience: int | None = None,
               runtimes: dict[str, list[str]] | None = None) -> SearchResult:
    """The loop: ask a batch, export it (executor.map), time it (one bench task), tell, stop or go on."""
    from edgepack.exporters.registry import get_exporter
    from edgepack.toolkit.recipes.executors import SequentialExecutor
    if trials < 1:
        raise OptionError(f"--trials must be >= 1, got {trials}")
    executor = executor or SequentialExecutor()
    runtimes = {f: (runtimes or {}).get(f) or [""] for f in space}
    smp = make_sampler(sampler, space, trials, src.seed, runtimes)
    budgets = budgets.for_search()            # the budgets as trials are judged (budgets.py: one formula for all)
    allowed = budgets.max_accuracy_drop
    res = SearchResult(smp.name, space, runtimes, space_size(space, runtimes), trials, images, source_accuracy, allowed)
    work.mkdir(parents=True, exist_ok=True)
    batch = batch or max(4, executor.parallelism())
    patience = patience or max(2 * batch, trials // 2)
    nlayers = max(len(v) for v in space.values())
    pairs = ", ".join(f"{f} in {'/'.join(r or 'default' for r in runtimes[f])}" for f in space)
    progress(f"mixed-precision search ({smp.name}): {res.space_size:,} combinations of {nlayers} layers ({pairs}), "
             f"up to {trials} trials in batches of {batch} ({executor.name} executor); "
             f"accuracy on {images} training images, allowed drop {allowed:g} pp")
    seen: dict[Config, Trial] = {}
    anchors: dict[tuple, tuple[str, float]] = {}       # (format, runtime) -> (full-int8 trial file, its first p50)
    best, since, repeats = math.inf, 0, 0
    while res.asked < trials and not res.stop:
        asked, twins = [], []
        while len(asked) < batch and res.asked < trials:
            a = smp.ask()
            if a is None:
                res.stop = "every combination tried"
                break
            cfg, handle = a
            res.asked += 1
            if cfg in seen or any(c == cfg for c, _ in asked) or len(cfg.float_layers) == len(space[cfg.fmt]):
                twins.append((cfg, handle))            # known (or the fp32 file): told below, not exported again
                repeats += 1
                if repeats >= 3 * trials:
                    res.stop = "the sampler keeps proposing known combinations"
                    break
                continue
            repeats = 0
            asked.append((cfg, handle))
        if asked:
            n0 = len(res.trials)
            jobs = [(src, c.fmt, c.float_layers, str(work / f"trial-{n0 + i:03d}{get_exporter(c.fmt).suffix}"), c.runtime)
                    for i, (c, _) in enumerate(asked)]
            outs = executor.map(export_trial, jobs)
            new = []
            for i, ((cfg, _), job, o) in enumerate(zip(asked, jobs, outs)):
                new.append(Trial(n0 + i, cfg, file=job[3], size=o.get("size"), accuracy=o.get("accuracy"),
                                 agreement=o.get("agreement"), error=o.get("error"), node=o.get("node", "")))
            ok = [t for t in new if t.error is None]
            for t in ok:                               # the first full-int8 file of a (format, runtime) anchors it
                if not t.config.float_layers and _where(t) not in anchors:
                    anchors[_where(t)] = (t.file, math.nan)
            timed = [(t.file, t.config.runtime) for t in ok]
            timed += [(anchors[k][0], k[1]) for k in dict.fromkeys(_where(t) for t in ok)
                      if k in anchors and (anchors[k][0], k[1]) not in timed]
            if ok:
                tm = executor.map(time_files, [([f for f, _ in timed], x1, threads, [rt for _, rt in timed])],
                                  bench=True)[0]
                p50 = dict(zip(timed, tm["p50_us"]))
                res.timings.append({k: tm[k] for k in ("node", "pid", "start", "end", "files")})
                for k, (path, first) in list(anchors.items()):
                    if (path, k[1]) in p50 and math.isnan(first):
                        anchors[k] = (path, p50[(path, k[1])])
                for t in ok:
                    a = anchors.get(_where(t))
                    now = p50.get((a[0], t.config.runtime)) if a else None
                    t.p50_us = p50[(t.file, t.config.runtime)] * (a[1] / now if now else 1.0)
            for (cfg, handle), t in zip(asked, new):
                t.score, t.feasible = _score(t, budgets, res.source_accuracy)
                smp.tell(handle, t.score)
                seen[cfg] = t
                res.trials.append(t)
                since += 1
                if t.feasible and t.score < BETTER * best:
                    best, since = t.score, 0
                shown = (f"p50 {t.p50_us:.1f} us, {t.size:,} B, {t.accuracy:.2f}% on training images"
                         if t.error is None else f"FAILED: {t.error}")
                progress(f"  trial {t.number}: {cfg.describe()}: {shown}{'' if t.feasible else ' (outside the budgets)'}")
        for cfg, handle in twins:
            known = seen.get(cfg)
            smp.tell(handle, known.score if known else math.inf)
        goal = [t for t in res.trials if t.feasible and budgets.max_latency_ms is not None]
        if not res.stop and goal:
            res.stop = f"goal met: trial {goal[0].number} is inside every budget, p50 {goal[0].p50_us:.1f} us"
        elif not res.stop and since >= patience and len(res.trials) >= 2 * STARTUP and math.isfinite(best):
            res.stop = f"no better trial in the last {since} (patience {patience})"
    res.stop = res.stop or f"trial budget ({trials}) used"
    progress(f"search stopped: {res.stop}; {len(res.trials)} files made and timed of {res.asked} trials asked")
    return res


def _where(t: Trial) -> tuple[str, str]:
    return t.config.fmt, t.config.runtime


def search_table(res: SearchResult, picked: list[int] = (), top: int = 15) -> list[str]:
    """Markdown: what the search did and its best trials."""
    pairs = ", ".join(f"{f} in {'/'.join(r or 'its default runtime' for r in res.runtimes.get(f, ['']))}"
                      for f in res.space)
    lines = [f"Sampler **{res.sampler}** over {res.space_size:,} combinations ({pairs}; "
             f"{len(next(iter(res.space.values()), []))} layers each); {res.asked} trials asked, {len(res.trials)} files "
             f"made; stop: {res.stop}. Accuracy on {res.images} training images (source: {res.source_accuracy:.2f}%, "
             f"allowed drop {res.allowed_drop:g} pp); p50 on one image, interleaved rounds, corrected for drift with "
             f"the full-int8 file of each format and runtime timed in every batch. These are the search's proxies; "
             f"the candidates table has the full-test-set figures.", "",
             "| trial | format | runtime | layers kept float | p50 (us) | size (B) | accuracy, training images | inside budgets | score |",
             "| ---: | --- | --- | --- | ---: | ---: | ---: | --- | ---: |"]
    ranked = sorted(res.trials, key=lambda t: (t.score, t.number))[:top]
    for t in ranked:
        mark = " **(candidate)**" if t.number in picked else ""
        if t.error:
            lines.append(f"| {t.number} | {t.config.fmt} | {t.config.runtime or 'default'} | "
                         f"{', '.join(t.config.float_layers) or '-'} | failed: {t.error} | | | | |")
            continue
        lines.append(f"| {t.number}{mark} | {t.config.fmt} | {t.config.runtime or 'default'} | "
                     f"{', '.join(t.config.float_layers) or '- (full int8)'} | "
                     f"{t.p50_us:.1f} | {t.size:,} | {t.accuracy:.2f}% | {'yes' if t.feasible else 'no'} | {t.score:,.1f} |")
    if res.timings:
        lines += ["", "Timing batches (a bench task each: one node to itself, never two at once): " + "; ".join(
            f"{b['node']} {time.strftime('%H:%M:%S', time.localtime(b['start']))}-"
            f"{time.strftime('%H:%M:%S', time.localtime(b['end']))} ({b['files']} files)" for b in res.timings)]
    return lines

"""The search loop (`search`, `run_search`): ask a batch of trials, export and score them, time them, tell the
sampler, stop at the trial budget, the goal or patience; and the table of its trials for deploy.md."""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgepack.toolkit.deploy.search.samplers import STARTUP, Config, make_sampler, space_size
from edgepack.toolkit.deploy.search.trials import _CONTEXTS, Source, Trial, _score, export_trial, register, search_runtimes, time_files
from edgepack.toolkit.errors import EdgepackError, OptionError

BETTER = 0.98               # a trial counts as better than another when it scores 2% lower (timing noise is ~1%)


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
    from edgepack.toolkit.executors import SequentialExecutor
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

"""The harness: each (model, thread count) runs in its own child process, sequentially; results are
plain records (`BenchResult`), from which every report is rendered."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgepack.runtimes.machine import machine_record
from edgepack.runtimes.metrics import file_metrics
from edgepack.toolkit.errors import EdgepackError, ModelError, OptionError
from edgepack.toolkit.record import ArtifactRecord, gzip_size

RESULT_TAG = "@@EDGEPACK_RESULT@@"


@dataclass
class BenchSettings:
    threads: list[int] = field(default_factory=lambda: [1])
    warmup: int = 5
    runs: int = 50                 # like TFLite's benchmark_model: at least 50 runs ...
    min_seconds: float = 1.0       # ... and at least 1 s of timed runs
    batch: int = 1
    accuracy: bool = True
    cpu_power_w: float = 5.0       # package power assumed for the CPU-time energy estimate
    runtime_options: dict = field(default_factory=dict)
    timeout_s: float = 1800
    preprocessing: dict | None = None   # {"mean", "std", "scale"} for every model (default: each file's record, else the data set's)
    runtimes: list[str] | None = None   # None: each format's default runtime; ["all"]: every runtime that runs the file
    task: dict | None = None            # what every model is for ({"name", options}; default: each file's record, else
                                        # a classifier where its outputs are one [N, classes] vector)

    def __post_init__(self):
        if not self.threads or any(t < 1 for t in self.threads):
            raise OptionError("thread counts must be >= 1")
        if self.runs < 1 or self.warmup < 0 or self.batch < 1 or self.min_seconds < 0:
            raise OptionError("runs and batch must be >= 1, warm-up and min seconds >= 0")
        from edgepack.runtimes import all_runtimes
        bad = [r for r in (self.runtimes or []) if r not in all_runtimes() + ["all"]]
        if bad:
            raise OptionError(f"unknown runtime(s) {', '.join(bad)}; known: {', '.join(all_runtimes())}, or all")
        unknown = set(self.runtime_options) - {"graph_optimization"}
        if unknown:
            raise OptionError(f"unknown runtime option(s) {sorted(unknown)}; known: graph_optimization")
        from edgepack.runtimes.onnxruntime import OPT_LEVELS
        level = self.runtime_options.get("graph_optimization", "all")
        if level not in OPT_LEVELS:
            raise OptionError(f"unknown graph_optimization {level!r}; expected one of {', '.join(OPT_LEVELS)}")


@dataclass
class BenchResult:
    model: str
    format: str
    runtime: str | None
    threads: int
    ok: bool = True
    error: str | None = None
    latency_ms: dict | None = None          # min, p50, p90, p99, mean, std, runs
    throughput_ips: float | None = None
    batch: int = 1
    load_ms: float | None = None
    first_inference_ms: float | None = None
    size_bytes: int | None = None
    gzip_bytes: int | None = None
    params: int | None = None
    nonzero_params: int | None = None
    macs: int | None = None
    peak_rss_mb: float | None = None
    accuracy: float | None = None
    test_images: int | None = None
    energy_mj: dict | None = None           # {"value", "method"}
    machine: dict | None = None
    input: dict | None = None
    ops: dict | None = None
    qdq_nodes: int | None = None
    confusion: list | None = None
    classes: list | None = None
    record: dict | None = None              # the artifact's record (provenance, verification), if any
    runtime_info: dict | None = None
    latencies_ms: list | None = None        # raw samples
    diagnostics: list[str] = field(default_factory=list)
    accuracy_note: str | None = None        # why accuracy was not measured (random input), if so
    data: dict | None = None                # the data actually used: name, source, test-set sha256, stand-in or not
    data_warning: str | None = None         # the file's record names other data than it was benchmarked on
    predictions: list | None = None         # top-1 class per test image (raw results only): runtimes compared per file
    golden: dict | None = None              # a deploy bundle's golden-vector check of this file on this machine
    external_data: list | None = None       # files beside an .onnx holding its weights (counted in its sizes)
    task: dict | None = None                # the task its figures were measured as ({"name", options})
    quality: dict | None = None             # the task's figures on the full test set: metric, value, se, ...

    def to_dict(self, raw: bool = False) -> dict:
        d = asdict(self)
        if not raw:
            d.pop("latencies_ms")
            d.pop("predictions")
        return d


def latency_stats(samples: list[float]) -> dict:
    a = np.asarray(samples, dtype=np.float64)
    return {"min": float(a.min()), "p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean()), "std": float(a.std(ddof=1) if len(a) > 1 else 0.0),
            "runs": int(len(a))}


def _child(request: dict, timeout: float) -> dict:
    from edgepack.runtimes import plugin_runners
    request = {**request, "plugins": plugin_runners()}      # runtimes registered by plug-ins reach the child too
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        proc = subprocess.run([sys.executable, "-m", "edgepack.benchmarks.child", json.dumps(request)], capture_output=True,
                              text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout:.0f}s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    if proc.returncode < 0:                       # killed by a signal: a runtime crashed on this file
        import signal
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        return {"ok": False, "error": f"{request['model']}: the runtime crashed with {name} on this file "
                                      "(truncated or corrupt?); the other models' results are kept", "signal": name}
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"ok": False, "error": f"child process exited with {proc.returncode} ({tail[:200]})"}


def _runtimes_for(path: Path, wanted: list[str] | None) -> list[str]:
    """The runtimes that run this file: its format's default, every one ('all'), or those named that run it."""
    from edgepack.runtimes import default_runtime, every_runtime_for, runtimes_for
    able = runtimes_for(path)
    if not wanted:
        return [default_runtime(path)]
    if wanted == ["all"]:
        return every_runtime_for(path)
    chosen = [rt for rt in wanted if rt in able]
    if not chosen:
        raise ModelError(f"{path}: none of the runtimes {', '.join(wanted)} runs {path.suffix} files (those that do: {', '.join(able)})")
    return chosen


def recorded_data(record: dict | None) -> str | None:
    """The data set a file's edgepack record names (the explicit stand-in name when it was trained on one)."""
    from edgepack.toolkit.data.sources import recorded_stand_in, stand_in_name
    ds = (record or {}).get("dataset") or {}
    name = ds.get("name")
    return stand_in_name(name) if name and recorded_stand_in(ds) else name


def preprocessing_for(record: dict | None, given: dict | None) -> dict | None:
    """How pixels become the model's input: what the user gave, else what the file's record says it was made with."""
    if given:
        return {**given, "from": "command line"}
    pre = ((record or {}).get("dataset") or {}).get("preprocessing")
    if pre and pre.get("mean") is not None and pre.get("std") is not None:
        return {"mean": pre["mean"], "std": pre["std"], "scale": pre.get("scale", 1 / 255.0), "from": "the file's edgepack record"}
    return None


def data_mismatch(record: dict | None, used: dict | None) -> str | None:
    """A warning when a file is benchmarked on other data than its record says it was made and verified with."""
    rec = (record or {}).get("dataset") or {}
    if not rec or not used:
        return None
    from edgepack.toolkit.data.sources import recorded_stand_in
    rec_fallback = recorded_stand_in(rec)
    if rec.get("test_sha256"):
        same = rec["test_sha256"] == used["test_sha256"]
    else:                                   # records written before the content hash: name and stand-in-ness
        same = rec.get("name") == used["name"] and rec_fallback == used["fallback"]
    if same:
        return None
    what = f"{rec.get('name')} ({'offline stand-in' if rec_fallback else rec.get('source')})"
    return f"made and verified on {what}, benchmarked on {used['name']} ({used['source']}): its accuracy here is not its accuracy there"


def benchmark(models: list[str | Path], data: str | None, data_dir: str | None = None, settings: BenchSettings | None = None,
              progress=print) -> list[BenchResult]:
    """Benchmark each model at each thread count; failures become records with `ok=False` (others go on).
    `data=None`: each file's recorded data set, or random input (no accuracy) for files without a record."""
    settings = settings or BenchSettings()
    from edgepack.runtimes import formats_by_suffix, runner_class, runtime_label
    from edgepack.toolkit.data.sources import recorded_folder
    suffixes = formats_by_suffix()                       # every suffix a registered runtime runs
    machine = machine_record()
    results: list[BenchResult] = []
    announced: dict = {}
    for model in models:
        path = Path(model)
        if path.suffix.lower() == ".json" and path.with_suffix("").suffix.lower() in suffixes:
            progress(f"skipping {path.name}: the edgepack manifest of {path.with_suffix('').name}, not a model")
            continue
        fmt = suffixes.get(path.suffix.lower(), path.suffix.lstrip(".") or "?")
        static = None
        try:
            if path.is_dir():
                raise ModelError(f"{path}: is a folder, not a model file")
            if not path.is_file():
                raise ModelError(f"{path}: file not found")
            if path.suffix.lower() not in suffixes:
                raise ModelError(f"{path}: not a model file edgepack can run ({', '.join(sorted(suffixes))})")
            out = _child({"static": True, "model": str(path)}, settings.timeout_s)   # a crash here is one row
            if not out.get("ok"):
                raise ModelError(out.get("error") or f"{path}: cannot be read")
            static = out["static"]
        except EdgepackError as e:
            results.append(BenchResult(str(path), fmt, None, settings.threads[0], ok=False, error=str(e), machine=machine))
            continue
        model_data = data or recorded_data(static.get("record")) or "synthetic"
        model_dir = data_dir if data_dir is not None or data else recorded_folder((static.get("record") or {}).get("dataset"))
        try:
            runtimes = _runtimes_for(path, settings.runtimes)
        except EdgepackError as e:
            results.append(BenchResult(str(path), fmt, None, settings.threads[0], ok=False, error=str(e), machine=machine, **static))
            continue
        for runtime in runtimes:
            accuracy = None
            cap = runner_class(path, runtime).max_threads
            counts = [t for t in settings.threads if cap is None or t <= cap] or [cap]
            if counts != settings.threads:
                progress(f"{path.name}: {runtime_label(runtime)} runs on at most {cap} thread(s): "
                         f"timed at {', '.join(map(str, counts))} only")
            for threads in counts:
                progress(f"benchmarking {path.name} ({fmt} on {runtime}, {threads} thread{'s' if threads > 1 else ''})")
                req = {"model": str(path), "data": model_data, "data_dir": model_dir,
                       "preprocessing": preprocessing_for(static.get("record"), settings.preprocessing), "threads": threads, "batch": settings.batch,
                       "warmup": settings.warmup, "runs": settings.runs, "min_seconds": settings.min_seconds,
                       "accuracy": settings.accuracy and accuracy is None, "runtime_options": settings.runtime_options,
                       "runtime": runtime, "task": settings.task or (static.get("record") or {}).get("task")}
                out = _child(req, settings.timeout_s)
                if not out.get("ok"):
                    results.append(BenchResult(str(path), fmt, runtime, threads, ok=False, error=out.get("error"), machine=machine, **static))
                    break
                if "accuracy" in out or "quality" in out or "task" in out:
                    accuracy = out
                lat = latency_stats(out["latencies_ms"])
                info = out["info"]
                energy = out.get("energy_mj") or {
                    "value": out["cpu_seconds_per_run"] * settings.cpu_power_w * 1e3,
                    "method": f"estimated (CPU time x {settings.cpu_power_w:g} W package power)"}
                results.append(BenchResult(
                    str(path), fmt, info["runtime"], threads, latency_ms=lat,
                    throughput_ips=out["batch"] * 1e3 / lat["p50"], batch=out["batch"], load_ms=out["load_ms"],
                    first_inference_ms=out["first_ms"], peak_rss_mb=out["peak_rss_mb"],
                    accuracy=accuracy.get("accuracy") if accuracy else None,
                    test_images=accuracy.get("test_images") if accuracy else None,
                    confusion=accuracy.get("confusion") if accuracy else None, classes=accuracy.get("classes") if accuracy else None,
                    energy_mj=energy, machine=machine, input=out["input"], runtime_info=info,
                    latencies_ms=out["latencies_ms"], accuracy_note=out.get("accuracy_note"), data=out.get("data"),
                    predictions=accuracy.get("predictions") if accuracy else None,
                    task=accuracy.get("task") if accuracy else None, quality=accuracy.get("quality") if accuracy else None,
                    data_warning=data_mismatch(static.get("record"), out.get("data")), **static))
                used = out.get("data") or {}
                if used.get("line") and used["line"] != announced.get("line"):
                    progress(used["line"])
                    announced.update(used)
                if results[-1].data_warning and threads == settings.threads[0]:
                    progress(f"warning: {path.name}: {results[-1].data_warning}")
                if out.get("accuracy_note") and threads == settings.threads[0]:
                    progress(f"{path.name}: {out['accuracy_note']}")
    from edgepack.benchmarks.diagnostics import diagnose
    diagnose(results)
    return results


def static_metrics(path: Path) -> dict:
    """File-level figures, measured from the file (and its edgepack record, if one lies beside it)."""
    m = file_metrics(path)
    rec = ArtifactRecord.load(path)
    files = [path] + [path.parent / f for f in m.get("external_data") or []]     # an .onnx with its weights beside it
    return {"size_bytes": sum(f.stat().st_size for f in files), "gzip_bytes": sum(gzip_size(f) for f in files),
            "params": m.get("params"), "external_data": m.get("external_data") or None,     # None: not read (a plug-in
            "nonzero_params": m.get("nonzero_params"), "macs": m.get("macs"), "ops": m.get("ops"),   # format without
            "qdq_nodes": m.get("qdq_nodes"),                                                       # a reader)
            "record": asdict(rec) if rec else None}

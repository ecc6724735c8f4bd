"""Runs inside a fresh process: load one model, time it, measure accuracy. One JSON line out on stdout.

Invoked by the harness as `python -m edgepack.benchmarks.child '<json request>'`; never two at once.
"""
from __future__ import annotations

import json
import resource
import sys
import time
import traceback
from pathlib import Path

import numpy as np
from edgepack.toolkit.errors import first_line


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_mb() -> float:
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _energy_uj(path):
    try:
        return int(open(path).read())
    except (OSError, TypeError, ValueError):
        return None


SYNTHETIC = "synthetic"


def _quality(req: dict, runner, ds, x_all, y_all) -> dict:
    """The file's task figures on the full test set: its recorded or given task, else a classifier where its outputs
    say so safely; a file whose task cannot be told is an error row saying so (give --task)."""
    from edgepack.toolkit.tasks import get_task, infer_task
    shapes = dict(zip(runner.output_names(), (o.shape for o in runner.outputs)))
    task = get_task(req["task"]) if req.get("task") else infer_task(shapes, ds, req["model"])
    outputs = runner.predict_outputs(x_all, batch_size=req.get("accuracy_batch", 256))
    q = task.quality(outputs, x_all, y_all, ds)
    out = {"task": task.to_dict(), "test_images": int(len(y_all)), "classes": ds.classes, "data_source": ds.source}
    if q is None:
        return {**out, "accuracy_note": f"task {task.name}: no quality figure on the test set (its outputs are verified "
                                        "against the source's at export)"}
    if task.metric == "accuracy":
        out.update(accuracy=q["value"], confusion=q.pop("confusion"), predictions=q.pop("predictions"))
    return {**out, "quality": q}


def main(req: dict) -> dict:
    if req.get("plugins"):
        from edgepack.runtimes import register_plugins
        register_plugins(req["plugins"])
    if req.get("static"):                              # file-level figures: opening a bad file may crash a runtime
        from edgepack.benchmarks.harness import static_metrics
        return {"static": static_metrics(Path(req["model"]))}
    from edgepack.runtimes.machine import rapl_path
    from edgepack.runtimes import open_runner
    from edgepack.toolkit.data import load_dataset
    from edgepack.toolkit.errors import ModelError

    ds = None if req["data"] == SYNTHETIC else load_dataset(req["data"], req.get("data_dir"), allow_fallback=False, quiet=True)
    if ds is not None and req.get("task"):            # the data set as the file's task reads it (a one-class view)
        from edgepack.toolkit.tasks import get_task
        ds = get_task(req["task"]).view(ds)
    rapl = rapl_path()
    try:                                               # reset the high-water mark: data loading is not the model's
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    base_rss = _rss_mb()
    runner = open_runner(req["model"], threads=req["threads"], runtime=req.get("runtime"), **req.get("runtime_options", {}))
    note = ("synthetic input requested: accuracy not measured" if ds is None and req.get("accuracy", True) else None)
    if ds is not None:
        try:
            runner.layout(ds.input_shape)
        except ModelError:                             # no fitting data set: time it on random input, say so
            note = (f"input {tuple(runner.input.shape)} does not fit {ds.name} images {ds.input_shape}: "
                    "timed on random input, accuracy not measured")
            ds = None
    batch = req["batch"]
    fixed = runner.fixed_batch()
    if fixed is not None and fixed != batch and runner.runtime != "litert":
        batch = fixed
    if ds is None:
        feed = runner.random_feed(batch)
    else:
        from edgepack.toolkit.data.dataset import normalize
        pre = {"mean": list(ds.mean), "std": list(ds.std), "scale": ds.scale, "from": f"data set {ds.name}",
               **(req.get("preprocessing") or {})}
        x_all, y_all = normalize(ds.x_test, pre["mean"], pre["std"], "NHWC", pre["scale"]), ds.y_test
        feed = runner.prepare(x_all[:batch])
    t0 = time.perf_counter()
    runner.run(feed)
    first_ms = (time.perf_counter() - t0) * 1e3
    for _ in range(req["warmup"]):
        runner.run(feed)
    lat = []
    c0, e0, w0 = time.process_time(), _energy_uj(rapl), time.perf_counter()
    while len(lat) < req["runs"] or (time.perf_counter() - w0) < req["min_seconds"]:
        t = time.perf_counter_ns()
        runner.run(feed)
        lat.append((time.perf_counter_ns() - t) / 1e6)
        if len(lat) >= req.get("max_runs", 100000):
            break
    cpu_s, e1 = time.process_time() - c0, _energy_uj(rapl)
    result = {"latencies_ms": lat, "load_ms": runner.load_ms, "first_ms": first_ms, "batch": int(feed.shape[0]),
              "cpu_seconds_per_run": cpu_s / len(lat), "info": runner.info().__dict__,
              "input": {"shape": list(runner.input.shape), "dtype": str(runner.input.dtype),
                        "layout": runner.layout(ds.input_shape) if ds is not None else "as the model declares",
                        "quantized": runner.input.quantized, "source": "random" if ds is None else ds.source,
                        "preprocessing": None if ds is None else pre},
              "output_quantized": runner.outputs[0].quantized, "accuracy_note": note}
    if e0 is not None and e1 is not None and e1 >= e0:
        result["energy_mj"] = {"value": (e1 - e0) / 1e3 / len(lat), "method": "measured (RAPL package counter)"}
    result["peak_rss_mb"] = max(_peak_mb() - base_rss, 0.0)   # the timed part only, before the accuracy pass
    if ds is not None:
        result["data"] = {"name": ds.name, "source": ds.source, "fallback": ds.fallback, "test_images": int(len(ds.y_test)),
                          "classes": ds.num_classes, "test_sha256": ds.test_sha256(), "line": ds.describe()}
    if req.get("accuracy", True) and ds is not None:
        result.update(_quality(req, runner, ds, x_all, y_all))
    runner.close()
    return result


if __name__ == "__main__":
    request = json.loads(sys.argv[1])
    try:
        out = {"ok": True, **main(request)}
    except Exception as e:  # reported as one line by the parent
        from edgepack.toolkit.errors import EdgepackError
        msg = str(e) if isinstance(e, EdgepackError) else first_line(e)
        out = {"ok": False, "error": msg}
        if not isinstance(e, EdgepackError):
            out["traceback"] = traceback.format_exc()[-2000:]
    sys.stdout.write("\n@@EDGEPACK_RESULT@@" + json.dumps(out) + "\n")

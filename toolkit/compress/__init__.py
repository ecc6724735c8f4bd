"""Compression: distillation, pruning (unstructured and structured), QAT, low-rank and cheaper convs,
composable in either framework. `compress(checkpoint, steps, ...)` runs a list of steps and records what
each changed (params, non-zeros, MACs, accuracy before/after) in the artifact record."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgepack.toolkit.compress.techniques import TECHNIQUES, get_technique, register_technique
from edgepack.toolkit.errors import OptionError

__all__ = ["compress", "compress_model", "CompressState", "TECHNIQUES", "get_technique", "register_technique", "measure"]


@dataclass
class CompressState:
    model: object
    backend: object                   # a toolkit.backends.Framework
    spec: object | None
    dataset: object
    train_config: object
    verbose: bool = True
    notes: dict = field(default_factory=dict)


def measure(state) -> dict:
    """Figures measured on the current model: parameters, non-zeros, MACs, test accuracy."""
    counts = state.backend.count_params(state.model)
    nonzero = state.backend.count_nonzero_trainable(state.model)
    _, acc = state.backend.evaluate(state.model, state.dataset)
    return {"params": counts["trainable"], "nonzero_params": nonzero, "macs": _macs(state), "accuracy": acc}


def _macs(state) -> int | None:
    """From the description when there is one; otherwise counted as `bench` counts files: on the model's ONNX."""
    if state.spec is not None:
        return state.spec.counts()["macs"]
    import tempfile
    from edgepack.runtimes.metrics import onnx_metrics
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "m.onnx"
            state.backend.to_onnx(state.model, path, state.dataset.input_shape)
            return onnx_metrics(path.read_bytes())["macs"]
    except Exception:                         # a model ONNX cannot express: the figure stays unknown, not guessed
        return None


def compress_model(model, steps: list[dict], dataset, *, train_config=None, verbose: bool = True):
    """Run steps on an in-memory model; returns (final state, step records)."""
    from edgepack.toolkit.backends import backend_for_model
    from edgepack.toolkit.train import TrainConfig
    techniques = [get_technique(s["technique"], **{k: v for k, v in s.items() if k != "technique"}) for s in steps]
    state = CompressState(model, backend_for_model(model), getattr(model, "edgepack_spec", None), dataset,
                          train_config or TrainConfig(), verbose)
    records = []
    for tech in techniques:
        before = measure(state)
        t0 = time.time()
        state.notes = {}
        tech.apply(state)
        after = measure(state)
        rec = {"step": tech.name, "config": tech.to_dict(), "before": before, "after": after,
               "seconds": round(time.time() - t0, 2), **({"notes": _jsonable(state.notes)} if state.notes else {})}
        records.append(rec)
        if verbose:
            mac = f", MACs {before['macs']:,} -> {after['macs']:,}" if before["macs"] and after["macs"] else ""
            print(f"[{tech.name}] params {before['params']:,} -> {after['params']:,}, non-zero {before['nonzero_params']:,} -> "
                  f"{after['nonzero_params']:,}{mac}, accuracy {before['accuracy']:.4f} -> {after['accuracy']:.4f} "
                  f"({rec['seconds']:.1f}s)", flush=True)
    return state, records


def _jsonable(d):
    return json.loads(json.dumps(d, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def compress(checkpoint: str | Path, steps: list[dict], out: str | Path, data=None, data_dir: str | None = None,
             *, train_config=None, verbose: bool = True) -> Path:
    """Load a checkpoint, run the steps, write the compressed checkpoint + record (+ metrics.json) into `out`."""
    from edgepack.toolkit.api import dataset_for, dataset_info, load_checkpoint
    from edgepack.toolkit.record import ArtifactRecord, sha256_file
    if not steps:
        raise OptionError("no compression steps given")
    loaded = load_checkpoint(checkpoint)
    from edgepack.toolkit.tasks import get_task
    task = get_task(loaded.record.task if loaded.record else None)
    if not task.top1:
        raise OptionError(f"{checkpoint}: compression steps fine-tune and measure a classifier (cross-entropy, top-1 "
                          f"accuracy); they do not apply to task {task.name} yet: export the checkpoint as it is")
    ds = dataset_for(loaded, data, data_dir)
    from edgepack.toolkit.api import check_fits, resolve_task
    check_fits(loaded, ds)
    resolve_task(loaded.model, loaded.backend, ds, None, loaded.record, Path(checkpoint).name)   # outputs fit the data
    state, records = compress_model(loaded.model, steps, ds, train_config=train_config, verbose=verbose)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = state.backend.save(state.model, out / f"model{state.backend.preferred_suffix(state.model)}")
    rec = ArtifactRecord("checkpoint", ckpt.name, framework=state.backend.NAME, format=state.backend.NAME,
                         arch=state.spec.to_dict() if state.spec is not None else None, dataset=dataset_info(ds),
                         parent={"file": str(checkpoint), "sha256": sha256_file(checkpoint)},
                         task=loaded.record.task if loaded.record else None,
                         steps=(list(loaded.record.steps) if loaded.record else []) + records,
                         metrics={"test_accuracy": records[-1]["after"]["accuracy"], "params": records[-1]["after"]["params"],
                                  "nonzero_params": records[-1]["after"]["nonzero_params"], "macs": records[-1]["after"]["macs"]})
    rec.fill_sizes(ckpt)
    rec.save(ckpt)
    (out / "metrics.json").write_text(json.dumps({**rec.metrics, "steps": records}, indent=2, default=str))
    return ckpt

"""Public Python API: the calls behind the CLI, usable with built-in architectures or users' own models.

    from edgepack.toolkit.api import train, load_checkpoint
    result = train("torch", "mnist-tutorial", "mnist", out="runs/mnist")
    loaded = load_checkpoint(result.checkpoint)

Users' own models (any torch.nn.Module, torchvision models included, or any Keras model) can go
straight to `edgepack.exporters.export_model(model, ...)` and `benchmarks` without a checkpoint.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path


from edgepack.toolkit.arch import ArchSpec, get_arch
from edgepack.toolkit.backends import backend_for_file, get_backend
from edgepack.toolkit.data import Dataset, load_dataset
from edgepack.toolkit.data.dataset import ImageSet
from edgepack.toolkit.data.sources import recorded_folder, recorded_stand_in, stand_in_name
from edgepack.toolkit.errors import ModelError
from edgepack.toolkit.record import ArtifactRecord
from edgepack.toolkit.train import TrainConfig


def dataset_info(ds: Dataset) -> dict:
    return {"name": ds.name, "source": ds.source, "input_shape": list(ds.input_shape), "classes": ds.classes,
            "preprocessing": ds.preprocessing(), "notes": ds.notes, "fallback": ds.fallback,
            "test_sha256": ds.test_sha256()}


OUTPUT_KIND = {"classification": "classes", "reconstruction": "reconstruction", "boxes": "grid"}
KIND_TEXT = {"classes": "outputs class scores", "reconstruction": "reconstructs its input",
             "grid": "is a detector (grid head)"}
TRAINS_TEXT = {"classes": "a classifier", "reconstruction": "an autoencoder (e.g. ae-fc, ae-conv)",
               "grid": "a detector (e.g. tiny-det)"}


@dataclass
class TrainResult:
    checkpoint: Path
    metrics: dict
    model: object
    backend: object                   # its toolkit.backends.Framework
    dataset: Dataset


def train(framework: str, arch: str | ArchSpec, data: str | Dataset, data_dir: str | None = None, *,
          out: str | Path, config: TrainConfig | None = None, verbose: bool = True, loss_fn=None,
          task=None) -> TrainResult:
    """Train a built-in (or given) architecture; write checkpoint, record, metrics.json and history.
    `loss_fn` replaces cross-entropy (e.g. a distillation loss, for a student trained from scratch with a teacher);
    `task` (a name or {"name", options}; default classification) decides the data set's view, the training objective
    and the test figures (anomaly: a one-class set-up, reconstruction, ROC AUC)."""
    from edgepack.toolkit.tasks import get_task
    backend = get_backend(framework)
    if isinstance(arch, str):
        get_arch(arch)                                  # an unknown name fails before any data is read
    t = get_task(task)
    if t.objective is None:
        raise ModelError(f"task {t.name}: edgepack trains no models of this task (it has no training objective); "
                         "bring the model as an fp32 .onnx/.tflite file to export, bench and deploy it")
    raw = data if isinstance(data, ImageSet) else load_dataset(data, data_dir)
    if task is None:                                    # an audio set's classifier spots keywords
        from edgepack.toolkit.tasks import default_task
        t = default_task(raw)
    ds = t.view(raw)
    spec = arch if isinstance(arch, ArchSpec) else get_arch(arch, input_shape=ds.input_shape, num_classes=ds.num_classes)
    if tuple(spec.input_shape) != ds.input_shape:
        raise ModelError(f"architecture {spec.name} expects input {tuple(spec.input_shape)}, data {ds.name} has {ds.input_shape}")
    kind, wanted = spec.output_kind(), OUTPUT_KIND[t.objective]
    if kind != wanted:
        raise ModelError(f"architecture {spec.name} {KIND_TEXT[kind]}; task {t.name} trains {TRAINS_TEXT[wanted]}")
    targets = t.training_targets(ds, spec)
    cfg = config or TrainConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = backend.build(spec, seed=cfg.seed)
    if verbose:
        print(f"training {spec.name} ({framework}) on {ds.name} [{ds.source}]: {len(ds.y_train)} train / "
              f"{len(ds.y_test)} test images, " + (f"a time budget of {cfg.time_budget:g} min (at most {cfg.epochs} "
              f"epochs)" if cfg.time_budget else f"{cfg.epochs} epochs")
              + ("" if t.name == "classification" else f", task {t.name} ({ds.notes[-1] if ds.notes else t.objective})"),
              flush=True)
    t0 = time.time()
    fit_ds = ds if targets is None else replace(ds, y_train=targets)
    hist = backend.fit(model, fit_ds, cfg, verbose=verbose, loss_fn=loss_fn, objective=t.objective)
    train_seconds = time.time() - t0
    if t.objective == "classification":
        test_loss, test_acc = backend.evaluate(model, ds)
        quality = None
    else:                                               # the task's own figures on the test set
        x = ds.normalize(ds.x_test, "NHWC")
        outs = backend.predict_outputs(model, x if backend.LAYOUT == "NHWC" else ds.normalize(ds.x_test, backend.LAYOUT))
        quality = t.quality(outs, x, ds.y_test, ds)
        test_loss, test_acc = None, None
    params = backend.count_params(model)
    ckpt = backend.save(model, out / f"model{backend.SUFFIXES[0]}")
    metrics = {"test_accuracy": test_acc, "test_loss": test_loss, "test_images": int(len(ds.y_test)),
               # "params" means trainable parameters everywhere (compress, bench); BatchNorm statistics add to the total
               "params": params["trainable"], "params_total": params["total"], "epochs": len(hist.epochs),
               "stopped_on_time": hist.stopped_on_time, "best_epoch": hist.best_epoch,
               "precision": hist.precision,
               "train_seconds": round(train_seconds, 2), "framework": framework,
               "arch": spec.name, "data": ds.name, "data_source": ds.source, "config": cfg.to_dict()}
    if quality is not None:
        metrics["test_quality"] = {k: v for k, v in quality.items() if k != "roc"}
    rec = ArtifactRecord("checkpoint", ckpt.name, framework=framework, format=framework, arch=spec.to_dict(),
                         dataset=dataset_info(ds), metrics={k: metrics[k] for k in ("test_accuracy", "params", "epochs")},
                         steps=[{"step": "train", "config": cfg.to_dict(), "test_accuracy": test_acc,
                                 "params": params["trainable"], "macs": spec.counts()["macs"],
                                 "seconds": round(train_seconds, 2)}],
                         task=None if t.name == "classification" else t.to_dict())
    if quality is not None:
        rec.metrics["test_quality"] = metrics["test_quality"]
        rec.steps[-1]["test_quality"] = metrics["test_quality"]
    rec.fill_sizes(ckpt)
    rec.save(ckpt)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    data_title = f"the offline stand-in for {ds.name} (8x8 digits)" if ds.fallback else ds.name
    hist.save(out / "history.json", out / "history.png", f"{spec.name} ({framework}) on {data_title}")
    if verbose:
        figure = (f"test accuracy {test_acc:.4f}" if quality is None else t.quality_line(quality))
        print(f"{figure} on {len(ds.y_test)} images; {params['trainable']:,} params ({params['total']:,} with BatchNorm statistics); "
              f"{train_seconds:.1f}s training -> {ckpt}", flush=True)
    return TrainResult(ckpt, metrics, model, backend, ds)


@dataclass
class Loaded:
    model: object
    backend: object                   # its toolkit.backends.Framework
    record: ArtifactRecord | None
    spec: ArchSpec | None
    path: Path


def load_checkpoint(path: str | Path, arch: str | None = None) -> Loaded:
    """Load a .pt/.keras checkpoint with its record (or an explicit built-in `arch` for a bare state_dict), or an
    fp32 .onnx/.tflite file (with the edgepack record beside it, if there is one)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: not found")
    backend = backend_for_file(path)
    rec = ArtifactRecord.load(path)
    spec = None
    if rec is not None and rec.arch:
        spec = ArchSpec.from_dict(rec.arch)
    elif arch:
        spec = get_arch(arch)
    model = backend.load(path, spec)
    if spec is not None:
        model.edgepack_spec = spec
    return Loaded(model, backend, rec, spec, path)


def check_fits(loaded: Loaded, ds: Dataset) -> None:
    """One line when the loaded model cannot take the data set's images."""
    if loaded.spec is not None and tuple(loaded.spec.input_shape) != ds.input_shape:
        raise ModelError(f"{loaded.path} expects input {tuple(loaded.spec.input_shape)}, data set {ds.name} has "
                         f"{ds.input_shape}")
    loaded.backend.check_input(loaded.model, ds.input_shape)


def dataset_for(loaded: Loaded, data=None, data_dir: str | None = None, preprocessing: dict | None = None) -> Dataset:
    """The data set for work on a loaded model: an explicit Dataset, or a name (default: the one recorded
    at training) read from `data_dir` (default: the folder recorded at training, when it still exists). Its input
    preprocessing: `preprocessing` ({"mean", "std", "scale"}, for a model file a user brings), else the one recorded
    with the model, else the data set's."""
    if isinstance(data, ImageSet):
        return data.with_preprocessing(preprocessing)
    ds = _dataset_by_name(loaded, data, data_dir)
    rec = loaded.record.dataset if loaded.record else {}
    recorded = rec.get("preprocessing") if rec.get("name") in (ds.name, None) else None
    return ds.with_preprocessing(preprocessing or (recorded if recorded and recorded.get("mean") else None))


def resolve_task(model, backend, ds: Dataset, task=None, record: ArtifactRecord | None = None,
                 where: str = "the model"):
    """(task, the data set as that task reads it) for work on a model: the task given (a name or {"name", options}),
    else the one its record names, else inferred from its outputs where that is safe (one [N, classes] vector: a
    classifier), else one line asking for --task. The model's outputs are checked against the task on two images."""
    from edgepack.toolkit.tasks import get_task, infer_task, output_shapes
    given = task if task is not None else (record.task if record is not None else None)

    shapes = output_shapes(backend.predict_outputs(model, ds.normalize(ds.x_test[:2], backend.LAYOUT)))
    t = infer_task(shapes, ds, where) if given is None else get_task(given)
    view = t.view(ds)                                   # a view keeps the images: the output shapes hold for it too
    t.check_outputs(shapes, view, where)
    return t, view


def data_location(loaded: Loaded, data=None, data_dir: str | None = None) -> tuple[str, str | None]:
    """(name, folder) of the data set for a loaded model: the given ones, else those recorded at training (the
    folder only while it still exists); a folder of None means EDGEPACK_DATA or the download cache. Later steps
    that load the data set again in another process (the bench harness, Ray workers) use the same pair."""
    rec = loaded.record.dataset if loaded.record else {}
    name = data or rec.get("name")
    if not name:
        raise ModelError(f"{loaded.path}: no data set recorded; pass --data")
    if data is None and data_dir is None and recorded_stand_in(rec):
        name = stand_in_name(name)                                       # trained on the stand-in: use it again
    if data_dir is None and name == rec.get("name"):
        data_dir = recorded_folder(rec)
    return name, data_dir


def _dataset_by_name(loaded: Loaded, data, data_dir) -> Dataset:
    return load_dataset(*data_location(loaded, data, data_dir), allow_fallback=False)

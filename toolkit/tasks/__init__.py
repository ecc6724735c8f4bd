"""Task registry: what a model is for (`edgepack.toolkit.tasks.base.Task`), one module per task, each exposing `TASK`.
`TASK_MODULES` is the one list of them (a new task = a new module + one line). A task is written in records and
manifests as a dict, {"name": ..., options...}; records without one are classifiers (what edgepack made before)."""
from __future__ import annotations

import importlib

from edgepack.toolkit.errors import ModelError, OptionError
from edgepack.toolkit.tasks.base import Task, match_outputs, matched, output_shapes, renamed

TASK_MODULES = ("edgepack.toolkit.tasks.classification", "edgepack.toolkit.tasks.raw", "edgepack.toolkit.tasks.anomaly", "edgepack.toolkit.tasks.detection",
                "edgepack.toolkit.tasks.keyword_spotting")
DEFAULT = "classification"

_REGISTRY: dict[str, type] = {}


def _load() -> dict[str, type]:
    if not _REGISTRY:
        for mod in TASK_MODULES:
            cls = importlib.import_module(mod).TASK
            _REGISTRY[cls.name] = cls
    return _REGISTRY


def task_names() -> list[str]:
    return list(_load())


def get_task(spec: "str | dict | Task | None" = None, **options) -> Task:
    """A task object from a name, a record's dict ({"name", options...}), or None (classification)."""
    if isinstance(spec, Task):
        return spec
    if spec is None:
        spec = DEFAULT
    if isinstance(spec, dict):
        spec = dict(spec)
        name = spec.pop("name", DEFAULT)
        options = {**spec, **options}
    else:
        name = spec
    cls = _load().get(name)
    if cls is None:
        raise OptionError(f"unknown task {name!r}; known: {', '.join(task_names())}")
    return cls(**{k: v for k, v in options.items() if v is not None})


def default_task(ds) -> Task:
    """The task a model of this data set performs when nothing names one: the task registered as the default for the
    set's modality (keyword spotting for audio), else classification."""
    modality = getattr(ds, "modality", None)
    cls = next((c for c in _load().values() if modality and c.default_for == modality), None)
    return cls() if cls is not None else get_task(DEFAULT)


def recorded_task(record: "dict | None") -> "dict | None":
    """The task an artifact record (a dict) names, None when it names none."""
    return (record or {}).get("task") or None


def infer_task(shapes: dict, ds, where: str) -> Task:
    """The task of a file that names none (no record, no --task): a classifier only when that is safe to assume (one
    [N, classes] output for a data set of that many classes); otherwise one line asking for --task."""
    if len(shapes) == 1:
        shape = tuple(next(iter(shapes.values())))
        if len(shape) == 2 and (ds is None or shape[1] in (-1, ds.num_classes)):
            return default_task(ds)                       # a classifier, of the data set's modality
        if len(shape) == 2:
            raise ModelError(f"{where}: the model has {shape[1]} outputs but {ds.name} has {ds.num_classes} classes; "
                             f"benchmark it on the data set it was made for, or give --task {'|'.join(task_names())}")
    outs = ", ".join(f"{n} {tuple(s)}" for n, s in shapes.items())
    raise ModelError(f"{where}: cannot tell its task from its outputs ({outs}): not one [N, classes] vector"
                     f"{'' if ds is None else f' for the {ds.num_classes} classes of {ds.name}'}; give --task "
                     f"{'|'.join(task_names())}")


def add_task_args(p) -> None:
    """--task and the options of the tasks that take some, on an argparse parser."""
    p.add_argument("--task", default=None, choices=None,
                   help=f"what the model is for, when its edgepack record does not say ({', '.join(task_names())}); "
                        "default: the record's, else classification where the outputs are one [N, classes] vector")
    p.add_argument("--normal-classes", default=None,
                   help="--task anomaly: the data set's normal classes, comma-separated names or indices (default: the "
                        "first class); every other class is an anomaly")


def task_from_args(args) -> "dict | None":
    """The task the flags name ({"name", options}), None when --task is not given."""
    name = getattr(args, "task", None)
    normal = getattr(args, "normal_classes", None)
    if name is None:
        if normal is not None:
            raise OptionError("--normal-classes goes with --task anomaly")
        return None
    get_task(name)                                       # an unknown name: one line now
    spec = {"name": name}
    if normal is not None:
        if name != "anomaly":
            raise OptionError(f"--normal-classes goes with --task anomaly, not {name}")
        spec["normal_classes"] = normal
    return spec


def task_help() -> str:
    return "; ".join(f"{n}: {c.description}" for n, c in _load().items())


__all__ = ["Task", "get_task", "default_task", "task_names", "recorded_task", "match_outputs", "matched", "output_shapes", "renamed", "TASK_MODULES", "task_help"]

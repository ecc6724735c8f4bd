"""Recipe description: a TOML file of [recipe], [data] and an ordered list of [[step]] tables (and [[grid]] tables,
which expand named axes into steps: toolkit/recipes/grid.py).

Every step is checked before any work starts: its kind must be known, its fields known and of the
right type, and the steps it reads from must come earlier. Errors name the file, the step (index,
id and line) and the key, and say what was expected."""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from edgepack.exporters.base import ExportOptions
from edgepack.toolkit.errors import OptionError
from edgepack.toolkit.recipes.grid import Expanded, expand_grid, resolve_grid_inputs
from edgepack.toolkit.tasks import get_task
from edgepack.toolkit.options import NUM, from_recipe, recipe_schema
from edgepack.toolkit.train import TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# kind -> {field: (type or tuple of types, required)}
COMMON = {"id": (str, True), "kind": (str, True)}
KINDS: dict[str, dict] = {
    # training and export options come from their one declaration (TrainConfig, ExportOptions: toolkit/options.py)
    "train": {"framework": (str, True), "arch": (str, True), **recipe_schema(TrainConfig, skip=("threads",)),
              "teacher": (str, False), "alpha": (NUM, False), "temperature": (NUM, False)},
    "compress": {"input": (str, True), "steps": (list, True), "batch_size": (int, False), "seed": (int, False)},  # noqa: E501
    "transfer": {"input": (str, True), "to": (str, True)},
    "export": {"input": (str, True), "formats": (list, True), **recipe_schema(ExportOptions)},
    "bench": {"inputs": (list, True), "threads": (list, False), "runs": (int, False), "min_seconds": (NUM, False),
              "warmup": (int, False), "include_checkpoints": (bool, False), "runtimes": (list, False)},
    "prune-curve": {"input": (str, True), "rates": (list, True), "iterations": (int, True), "epochs": (int, False),
                    "lr": (NUM, False), "structured": (bool, False), "batch_size": (int, False)},
}
READS = {"train": ("teacher",), "compress": ("input",), "transfer": ("input",), "export": ("input",),
         "prune-curve": ("input",)}


@dataclass
class Step:
    id: str
    kind: str
    options: dict
    line: int | None = None

    def reads(self) -> list[str]:
        ids = [self.options[k] for k in READS.get(self.kind, ()) if self.options.get(k)]
        return ids + list(self.options.get("inputs", []))


@dataclass
class Recipe:
    path: Path
    name: str
    description: str
    data: dict
    steps: list[Step] = field(default_factory=list)
    text: str = ""
    task: dict | None = None         # [task]: what every model of the recipe is for (default: classification)


def _type_name(t) -> str:
    return " or ".join(x.__name__ for x in t) if isinstance(t, tuple) else t.__name__


def _table_lines(text: str, name: str) -> list[int]:
    pat = re.compile(r"\s*\[\[\s*" + re.escape(name).replace(r"\.", r"\s*\.\s*") + r"\s*\]\]")
    return [i + 1 for i, line in enumerate(text.splitlines()) if pat.match(line)]


def _step_lines(text: str) -> list[int]:
    return _table_lines(text, "step")


def _in_text_order(doc: dict, text: str, path: Path) -> list[Expanded]:
    """[[step]] tables and the steps [[grid]] tables expand to, in the order they are written."""
    steps, grids = doc.get("step", []), doc.get("grid", [])
    if not isinstance(steps, list) or not isinstance(grids, list):
        raise OptionError(f"{path}: step and grid must be arrays of tables ([[step]], [[grid]])")
    s_lines, g_lines, gs_lines = _step_lines(text), _table_lines(text, "grid"), _table_lines(text, "grid.step")
    order = [(s_lines[i] if i < len(s_lines) else 0, 0, i) for i in range(len(steps))]
    order += [(g_lines[i] if i < len(g_lines) else 10**9, 1, i) for i in range(len(grids))]
    out, cells_of = [], {}
    for line, is_grid, i in sorted(order):
        line = line if 0 < line < 10**9 else None
        if is_grid:
            nxt = g_lines[i + 1] if i + 1 < len(g_lines) else float("inf")
            mine = [x for x in gs_lines if (line or 0) < x < nxt]
            expanded, cells = expand_grid(grids[i], path, i, line, mine)
            out += expanded
            cells_of.update(cells)
        else:
            where = f"{path}:{line}: step" if line else f"{path}: step"
            table = steps[i] if isinstance(steps[i], dict) else {}
            out.append(Expanded(resolve_grid_inputs(table, cells_of, where), line))
    return out


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise OptionError(f"{path}: recipe not found")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise OptionError(f"{path}: not a text file; a recipe is a TOML file (see examples/)") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise OptionError(f"{path}: not valid TOML ({e})") from None
    unknown_top = set(doc) - {"recipe", "data", "task", "step", "grid"}
    if unknown_top:
        raise OptionError(f"{path}: unknown table(s) {sorted(unknown_top)}; expected [recipe], [data], [task], [[step]] "
                          "and [[grid]]")
    task = doc.get("task")
    if task is not None:
        if not isinstance(task, dict) or not isinstance(task.get("name"), str):
            raise OptionError(f"{path}: [task] needs name = \"classification\" | \"anomaly\" | ... (and the task's "
                              "options, e.g. normal_classes = [0])")
        try:
            task = get_task(task).to_dict()
        except OptionError as e:
            raise OptionError(f"{path}: [task]: {e}") from None
    meta = doc.get("recipe", {})
    data = doc.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise OptionError(f"{path}: [data] needs name = \"mnist\" | \"cifar10\" | ... (and optionally dir = \"...\")")
    extra = set(data) - {"name", "dir"}
    if extra:
        raise OptionError(f"{path}: [data] has unknown key(s) {sorted(extra)}; expected name, dir")
    raw = _in_text_order(doc, text, path)
    if not raw:
        raise OptionError(f"{path}: no [[step]] tables")
    steps, seen = [], set()
    for i, ex in enumerate(raw):
        st, line = ex.table, ex.line
        where = f"{path}:{line}: step {i + 1}" if line else f"{path}: step {i + 1}"
        if ex.origin:
            where += f" ({ex.origin})"
        kind = st.get("kind")
        if kind not in KINDS:
            raise OptionError(f"{where}: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
        schema = {**COMMON, **KINDS[kind]}
        if "id" in st:
            where += f" ({st['id']})"
        for key, value in st.items():
            if key not in schema:
                raise OptionError(f"{where}: unknown key {key!r} for a {kind} step; expected one of {', '.join(sorted(schema))}")
            t, _ = schema[key]
            if not isinstance(value, t) or (t in (int, NUM) and isinstance(value, bool)):
                raise OptionError(f"{where}: key {key!r} should be {_type_name(t)}, got {type(value).__name__} {value!r}")
        for key, (t, required) in schema.items():
            if required and key not in st:
                raise OptionError(f"{where}: missing key {key!r} ({_type_name(t)}) for a {kind} step")
        if st["id"] in seen:
            raise OptionError(f"{where}: duplicate step id {st['id']!r}")
        step = Step(st["id"], kind, {k: v for k, v in st.items() if k not in ("id", "kind")}, line)
        for ref in step.reads():
            if ref not in seen:
                raise OptionError(f"{where}: reads from {ref!r}, which is not an earlier step id")
        _check_semantics(step, where)
        seen.add(step.id)
        steps.append(step)
    if task is not None and not get_task(task).top1:
        taught = [st.id for st in steps if st.kind == "train" and st.options.get("teacher")]
        if taught:
            raise OptionError(f"{path}: step {taught[0]}: distillation matches a teacher's class scores; it does not "
                              f"apply to task {task['name']}")
    return Recipe(path, meta.get("name", path.stem), meta.get("description", ""), data, steps, text, task)


def _check_semantics(step: Step, where: str) -> None:
    """Deeper checks that need the libraries' own validators (techniques, formats, options)."""
    o = step.options
    try:
        if step.kind == "train":
            from edgepack.toolkit.arch import get_arch
            from edgepack.toolkit.backends import FRAMEWORKS
            if o["framework"] not in FRAMEWORKS:
                raise OptionError(f"framework must be one of {FRAMEWORKS}")
            get_arch(o["arch"])
            from_recipe(TrainConfig, o)                   # choices and ranges, checked by the options themselves
        elif step.kind == "compress":
            from edgepack.toolkit.compress.techniques import get_technique
            for s in o["steps"]:
                if not isinstance(s, dict) or "technique" not in s:
                    raise OptionError("each compress step needs technique = \"...\"")
                opts = {k: v for k, v in s.items() if k != "technique"}
                if s["technique"] == "distill":
                    opts.setdefault("teacher", "<resolved at run time>")
                get_technique(s["technique"], **opts)
        elif step.kind == "export":
            from edgepack.exporters.registry import list_exporters
            bad = [f for f in o["formats"] if f not in list_exporters()]
            if bad:
                raise OptionError(f"unknown format(s) {bad}; available: {', '.join(list_exporters())}")
            from_recipe(ExportOptions, o)
        elif step.kind == "transfer":
            from edgepack.toolkit.backends import FRAMEWORKS
            if o["to"] not in FRAMEWORKS:
                raise OptionError(f"to must be one of {FRAMEWORKS}")
        elif step.kind == "prune-curve" and not all(isinstance(r, NUM) and 0 < r < 1 for r in o["rates"]):
            raise OptionError("rates must be fractions in (0, 1)")
    except OptionError as e:
        raise OptionError(f"{where}: {e}") from None

"""Grids in recipes: a `[[grid]]` table expands named axes into ordinary steps, before any step is validated.

    [[grid]]
    axes = { sparsity = [0.5, 0.8], qat = { off = [], on = [{ technique = "qat", epochs = 1 }] },
             format = ["tflite-int8", "onnx-int8"] }

    [[grid.step]]
    id = "pruned"
    kind = "compress"
    input = "base"                     # a step before the grid: shared by every cell
    steps = [{ technique = "prune", sparsity = "{sparsity}", epochs = 1 }, "{qat}"]

    [[grid.step]]
    id = "export"
    kind = "export"
    input = "pruned"                   # a step of this grid: the cell with the same axis values
    formats = ["{format}"]

A string that is exactly "{axis}" becomes the axis value (any TOML type; a list value inside a list is spliced in,
so an empty list drops the item); "{axis}" inside a longer string becomes the value's label. An axis is a list of
values (labels made from them) or a table of label = value. Each grid step expands only over the axes it uses,
itself or through the grid steps it reads, so "pruned" above runs 4 times and "export" 8 times, not 8 and 8.
Cell ids: the step id and the labels, `export-sparsity0.5-qat-on-tflite-int8`. A later step's `inputs` may name a
grid step: every cell of it, in order.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from edgepack.toolkit.errors import OptionError

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
READ_KEYS = ("input", "teacher")          # single-step references (schema.READS); "inputs" is the list form


@dataclass
class Axis:
    name: str
    labels: list[str]
    values: list


@dataclass
class Expanded:
    """One step table after expansion, with where it came from (for error messages)."""
    table: dict
    line: int | None
    origin: str = ""                     # "grid step pruned" ("" for a plain step); the cell id follows in messages


def _label(name: str, value) -> str:
    if isinstance(value, bool):
        return f"{name}-{'on' if value else 'off'}"
    if isinstance(value, (int, float)):
        return f"{name}{value:g}"
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9_.+-]+", value):
        return value
    raise OptionError(f"axis {name!r}: value {value!r} needs a label; write the axis as a table of label = value")


def parse_axes(raw, where: str) -> list[Axis]:
    if not isinstance(raw, dict) or not raw:
        raise OptionError(f"{where}: needs axes = {{ name = [values], ... }} with at least one axis")
    axes = []
    for name, spec in raw.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise OptionError(f"{where}: axis name {name!r} must be a word (letters, digits, _)")
        if isinstance(spec, dict):
            labels, values = list(spec), list(spec.values())
            bad = [lab for lab in labels if not re.fullmatch(r"[A-Za-z0-9_.+-]+", lab)]
            if bad:
                raise OptionError(f"{where}: axis {name!r}: labels {bad} must be file-name safe (letters, digits, . _ + -)")
        elif isinstance(spec, list):
            values = list(spec)
            try:
                labels = [_label(name, v) for v in values]
            except OptionError as e:
                raise OptionError(f"{where}: {e}") from None
        else:
            raise OptionError(f"{where}: axis {name!r} should be a list of values or a table of label = value, got "
                              f"{type(spec).__name__}")
        if not values:
            raise OptionError(f"{where}: axis {name!r} is empty")
        if len(set(labels)) != len(labels):
            raise OptionError(f"{where}: axis {name!r} has repeated values {labels}")
        axes.append(Axis(name, labels, values))
    return axes


def placeholders(obj) -> set[str]:
    if isinstance(obj, str):
        return set(PLACEHOLDER.findall(obj))
    if isinstance(obj, list):
        return set().union(*map(placeholders, obj)) if obj else set()
    if isinstance(obj, dict):
        return set().union(*map(placeholders, obj.values())) if obj else set()
    return set()


def substitute(obj, cell: dict[str, tuple[str, object]]):
    """Axis values into a step table: "{a}" -> the value (spliced into a list when it is a list), "x{a}" -> label."""
    if isinstance(obj, str):
        m = PLACEHOLDER.fullmatch(obj)
        if m:
            return cell[m.group(1)][1]
        return PLACEHOLDER.sub(lambda m: cell[m.group(1)][0], obj)
    if isinstance(obj, list):
        out = []
        for el in obj:
            v = substitute(el, cell)
            if isinstance(el, str) and PLACEHOLDER.fullmatch(el) and isinstance(v, list):
                out.extend(v)
            else:
                out.append(v)
        return out
    if isinstance(obj, dict):
        return {k: substitute(v, cell) for k, v in obj.items()}
    return obj


def expand_grid(grid: dict, path, index: int, line: int | None, step_lines: list[int]) -> tuple[list[Expanded], dict[str, list[str]]]:
    """The steps of one [[grid]] table (the index-th, at `line`; its [[grid.step]] tables at `step_lines`), and
    {grid step id: its cell ids} for references from later steps."""
    where = f"{path}:{line}: grid {index + 1}" if line else f"{path}: grid {index + 1}"
    unknown = set(grid) - {"axes", "step"}
    if unknown:
        raise OptionError(f"{where}: unknown key(s) {sorted(unknown)}; a [[grid]] has axes = {{...}} and [[grid.step]] tables")
    axes = parse_axes(grid.get("axes"), where)
    by_name = {a.name: a for a in axes}
    templates = grid.get("step") or []
    if not isinstance(templates, list) or not templates:
        raise OptionError(f"{where}: no [[grid.step]] tables")
    used: dict[str, list[str]] = {}           # template id -> the axes it expands over (own + inherited), in axis order
    out: list[Expanded] = []
    cells_of: dict[str, list[str]] = {}
    for k, tpl in enumerate(templates):
        line = step_lines[k] if k < len(step_lines) else None
        at = f"{path}:{line}: grid step {k + 1}" if line else f"{where}, grid step {k + 1}"
        if not isinstance(tpl, dict) or not isinstance(tpl.get("id"), str):
            raise OptionError(f"{at}: needs id = \"...\"")
        tid = tpl["id"]
        at += f" ({tid})"
        if placeholders(tpl["id"]) or placeholders(tpl.get("kind", "")):
            raise OptionError(f"{at}: id and kind cannot use axes (cell ids are made from the step id and the labels)")
        names = placeholders(tpl)
        missing = sorted(names - set(by_name))
        if missing:
            raise OptionError(f"{at}: {', '.join('{' + n + '}' for n in missing)} names no axis of this grid; axes: "
                              f"{', '.join(by_name)}")
        refs = [tpl.get(key) for key in READ_KEYS if isinstance(tpl.get(key), str)]
        refs += [r for r in tpl.get("inputs", []) if isinstance(r, str)] if isinstance(tpl.get("inputs"), list) else []
        inherited = set().union(*(set(used[r]) for r in refs if r in used)) if refs else set()
        mine = [a.name for a in axes if a.name in names | inherited]
        used[tid] = mine
        cells_of[tid] = []
        for combo in itertools.product(*(range(len(by_name[n].values)) for n in mine)):
            cell = {n: (by_name[n].labels[i], by_name[n].values[i]) for n, i in zip(mine, combo)}
            table = substitute(tpl, cell)
            cid = "-".join([tid] + [cell[n][0] for n in mine])
            table["id"] = cid
            for key in READ_KEYS:                         # a grid step read from: the cell with the same values
                if isinstance(table.get(key), str) and table[key] in used:
                    table[key] = "-".join([table[key]] + [cell[n][0] for n in used[table[key]]])
            if isinstance(table.get("inputs"), list):
                table["inputs"] = [("-".join([r] + [cell[n][0] for n in used[r]]) if r in used else r)
                                   for r in table["inputs"]]
            out.append(Expanded(table, line, f"grid step {tid}"))
            cells_of[tid].append(cid)
    unused = [a.name for a in axes if not any(a.name in u for u in used.values())]
    if unused:
        raise OptionError(f"{where}: axis {', '.join(map(repr, unused))} is used by no grid step (write {{name}} in a value)")
    return out, cells_of


def resolve_grid_inputs(table: dict, cells_of: dict[str, list[str]], where: str) -> dict:
    """A plain step after a grid: `inputs` naming a grid step means all its cells; a single-step key cannot."""
    for key in READ_KEYS:
        ref = table.get(key)
        if isinstance(ref, str) and ref in cells_of and len(cells_of[ref]) > 1:
            raise OptionError(f"{where}: {key} = {ref!r} is a grid step with {len(cells_of[ref])} cells; name one cell "
                              f"({cells_of[ref][0]}, ...) or read them all with inputs = [{ref!r}]")
        if isinstance(ref, str) and ref in cells_of:
            table = {**table, key: cells_of[ref][0]}
    if isinstance(table.get("inputs"), list):
        table = {**table, "inputs": [c for r in table["inputs"] for c in (cells_of.get(r, [r]) if isinstance(r, str) else [r])]}
    return table

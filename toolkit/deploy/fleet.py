"""Fleet reports: `edgepack report merge A.json B.json ... --out DIR` puts the benchmark results of several devices
side by side: one column group per device (named by its CPU, ISA and runtime versions), the pick per device under
the same budgets (the deploy rules: toolkit/deploy/select.py), one Pareto plot per device.

Files are matched across devices by content (the sha256 in each result's record), so the same bundle benchmarked on
two machines lines up even from different folders; a file without a record is matched by its name.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from edgepack.toolkit.outputs import atomic_text
from edgepack.toolkit.deploy.budgets import Budgets
from edgepack.toolkit.deploy.report import pareto_plot
from edgepack.toolkit.deploy.rows import Row, figure_of, measured_row
from edgepack.toolkit.deploy.select import pick
from edgepack.toolkit.errors import ModelError


@dataclass
class Device:
    label: str
    source: str
    machine: dict
    rows: list[Row] = field(default_factory=list)
    keys: list[tuple] = field(default_factory=list)      # (file key, runtime, threads) per row
    pick: Row | None = None
    pick_error: str | None = None
    reference: float | None = None


def _describe(m: dict) -> str:
    isa = ", ".join(m.get("isa") or []) or m.get("arch") or "?"
    rt = m.get("runtimes") or {}
    versions = ", ".join(f"{k} {rt[k]}" for k in ("onnxruntime", "ai-edge-litert", "openvino") if k in rt)
    if m.get("emulated"):                 # its ISA flags are the host's: name what runs, and that it is emulated
        return (f"{m.get('arch', '?')} EMULATED on {m.get('cpu', '?')} ({m['emulated']}: timings are the emulator's; "
                f"{versions or 'runtime versions not recorded'})")
    return f"{m.get('cpu', '?')} ({isa}; {m.get('cores', '?')} cores; {versions or 'runtime versions not recorded'})"


def _precision(rec: dict, name: str) -> str:
    steps = rec.get("steps") or []
    step = steps[-1] if steps else {}
    if (step.get("details") or {}).get("float_layers"):
        return "mixed"
    if step.get("precision"):
        return step["precision"]
    for p in ("int8", "fp16", "dynamic"):
        if p in name:
            return p
    return "fp32"


def load_device(path: str | Path) -> Device:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: not found")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{path}: not a JSON file ({e.__class__.__name__})") from None
    results = doc.get("results") if isinstance(doc, dict) else None
    if not isinstance(results, list) or not results or "edgepack_bench_version" not in doc:
        raise ModelError(f"{path}: not an `edgepack bench --json` result (no results list)")
    machine = next((r.get("machine") for r in results if r.get("machine")), None) or {}
    dev = Device(_describe(machine), str(path), machine)
    for r in results:
        rec = r.get("record") or {}
        sha = (rec.get("sizes") or {}).get("sha256") or (r.get("golden") or {}).get("sha256")
        name = Path(r.get("model", "?")).name
        golden = r.get("golden") or {}
        err = r.get("error") if not r.get("ok", True) else (
            f"golden vectors: {golden.get('error')}" if golden and not golden.get("passed", True) else None)
        ver = rec.get("verification") or {}
        quality = r.get("quality") or {}
        dev.rows.append(measured_row(_label(r.get("model", "?")), r.get("model", "?"),
                                     r.get("format") or Path(name).suffix[1:], _precision(rec, name), r,
                                     accuracy=figure_of(r),        # top-1, or the task's figure (ROC AUC)
                                     accuracy_from=f"{r.get('test_images') or '?'} test images on this device",
                                     verified=bool(ver.get("passed", True)), error=err, sha256=sha,
                                     metric=quality.get("metric") if r.get("task") else "accuracy"))
        dev.keys.append((sha or name, r.get("runtime"), r.get("threads")))
    return dev


def _label(model: str) -> str:
    p = Path(model)
    return f"{p.parent.name}/{p.name}" if p.parent.name else p.name


def _reference(rows: list[Row]) -> float | None:
    """The fp32 accuracy the drop budget is measured from: the fp32 .onnx in ONNX Runtime, else the best fp32 row."""
    fp32 = [r for r in rows if r.precision == "fp32" and r.accuracy is not None and not r.error]
    onnx = [r for r in fp32 if r.runtime == "onnxruntime" and r.file.endswith(".onnx")]
    return max((r.accuracy for r in (onnx or fp32)), default=None)


def merge(paths: list[str], out: str | Path, budgets: Budgets | None = None, progress=print) -> dict:
    if len(paths) < 2:
        raise ModelError("report merge needs the results of at least two devices (A.json B.json ...)")
    budgets = budgets or Budgets()
    devices = [load_device(p) for p in paths]
    seen: dict[str, int] = {}
    for d in devices:                                      # two devices of one kind: number them
        seen[d.label] = seen.get(d.label, 0) + 1
        if seen[d.label] > 1:
            d.label += f" #{seen[d.label]}"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for k, d in enumerate(devices, 1):
        d.reference = _reference(d.rows)
        if budgets.max_accuracy_drop is not None and d.reference is None:
            d.pick_error = "no fp32 file measured on this device: --max-accuracy-drop has no reference"
        else:
            try:
                d.pick = pick(d.rows, budgets, d.reference)
            except ModelError as e:
                d.pick_error = str(e)
        pareto_plot(d.rows, out / f"pareto-device{k}.png", f"device {k}: {d.label}: p50 vs size")
    # devices timed at thread counts they share are compared at each of them; devices with no thread count in common
    # (a Pi at 4, a laptop at 1) are compared file by file, each at its own lowest count, said in the cell
    shared = set.intersection(*({k[2] for k in d.keys} for d in devices))
    if shared:
        keys = list(dict.fromkeys(k for d in devices for k in d.keys))
    else:
        keys = list(dict.fromkeys((k[0], k[1], None) for d in devices for k in d.keys))
    lines = ["# edgepack fleet report", "", f"Budgets: {budgets.describe()}; preference: {budgets.prefer}.", "",
             "## Devices", ""]
    for k, d in enumerate(devices, 1):
        pick_txt = (f"**{d.pick.label}** in {d.pick.runtime}: p50 {d.pick.p50_ms:.4f} ms, "
                    f"{'-' if d.pick.size is None else f'{d.pick.size:,}'} B, accuracy "
                    f"{'not measured' if d.pick.accuracy is None else f'{d.pick.accuracy:.2f}%'}"
                    if d.pick else f"none ({d.pick_error})")
        lines += [f"{k}. {d.label} (`{d.source}`); pick: {pick_txt}; plot: [pareto-device{k}.png](pareto-device{k}.png)"]
    head = "| file | runtime | threads | size B | " + " | ".join(f"dev {k} p50 ms | dev {k} accuracy"
                                                                for k in range(1, len(devices) + 1)) + " |"
    lines += ["", "## Side by side", "", head, "|" + " --- |" * 4 + " ---: | ---: |" * len(devices)]
    for key in keys:
        cells, first = [], None
        for d in devices:
            if key[2] is not None:
                row, own = next((r for r, k in zip(d.rows, d.keys) if k == key), None), ""
            else:
                mine = sorted(((k[2] or 0, r) for r, k in zip(d.rows, d.keys) if k[:2] == key[:2]), key=lambda t: t[0])
                row, own = (mine[0][1], f" ({mine[0][0]} thr)") if mine else (None, "")
            first = first or row
            if row is None:
                cells += ["-", "-"]
            elif row.error:
                cells += ["failed", re.sub(r"\s+", " ", row.error)[:60]]
            else:
                mark = " **(pick)**" if row.picked else ""
                cells += [f"{row.p50_ms:.4f}{own}{mark}" if row.p50_ms is not None else "-",
                          f"{row.accuracy:.2f}%" if row.accuracy is not None else "-"]
        lines.append(f"| {first.label} | {key[1] or '-'} | {key[2] or 'each its own'} | "
                     f"{'-' if first.size is None else f'{first.size:,}'} | " + " | ".join(cells) + " |")
    report = out / "fleet.md"
    atomic_text(report, "\n".join(lines) + "\n")
    data = {"budgets": budgets.to_dict(),
            "devices": [{"label": d.label, "source": d.source, "machine": d.machine, "reference_accuracy": d.reference,
                         "picked": d.pick.to_dict() if d.pick else None, "pick_error": d.pick_error,
                         "rows": [r.to_dict() for r in d.rows]} for d in devices]}
    atomic_text(out / "fleet.json", json.dumps(data, indent=2, default=str))
    for k, d in enumerate(devices, 1):
        progress(f"device {k}: {d.label}: pick {d.pick.label + ' in ' + d.pick.runtime if d.pick else 'none: ' + str(d.pick_error)}")
    progress(f"fleet report: {report}")
    return {"devices": devices, "report": report}

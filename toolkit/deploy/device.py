"""`deploy --select DEVICE.json BUNDLE`: the pick for another device, from its benchmark of a bundle (each file's
golden vectors checked there first; an int8 .onnx judged by its accuracy on the device's CPU kernel class)."""
from __future__ import annotations

import json
from pathlib import Path

from edgepack.toolkit.deploy.budgets import Budgets
from edgepack.toolkit.deploy.candidates import REFERENCES
from edgepack.toolkit.deploy.report import choose
from edgepack.toolkit.deploy.rows import measured_row
from edgepack.toolkit.errors import ModelError


def select_for_device(bundle_dir, device_json, out, budgets: Budgets | None = None, progress=print) -> dict:
    """Pick from a bundle with a device's `edgepack bench BUNDLE --json` results."""
    from edgepack.benchmarks.golden import read_bundle
    budgets = budgets or Budgets()
    bundle = read_bundle(bundle_dir)
    try:
        dev = json.loads(Path(device_json).read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"{device_json}: not a readable bench JSON ({e})") from None
    results = dev.get("results")
    if not isinstance(results, list) or not results:
        raise ModelError(f"{device_json}: no benchmark results in it (write it with `edgepack bench BUNDLE --json`)")
    machine = next((r.get("machine") for r in results if r.get("machine")), {}) or {}
    cls = machine.get("ort_int8_kernel_class")
    by_sha: dict[str, list[dict]] = {}
    for r in results:
        sha = (r.get("golden") or {}).get("sha256")
        if sha:
            by_sha.setdefault(sha, []).append(r)
    if not by_sha:
        raise ModelError(f"{device_json}: its results carry no golden-vector checks; benchmark the bundle folder itself "
                         f"(edgepack bench {bundle_dir} --json ...)")
    rows = []
    from edgepack.toolkit.record import sha256_file
    for e in bundle["candidates"]:
        path = Path(bundle_dir) / e["file"]
        changed = None if path.is_file() and sha256_file(path) == e["sha256"] else (
            f"{e['file']}: {'changed since the bundle was written (sha256 differs)' if path.is_file() else 'missing'}; "
            "the device's figures are of the file as written")
        for r in by_sha.get(e["sha256"], []):
            acc, src = (e["accuracy"] or {}).get(r.get("runtime")), "full test set, measured where the bundle was made"
            sent = bundle.get("test_set") or {}
            if r.get("accuracy") is not None and sent and (r.get("data") or {}).get("test_sha256") == sent.get("test_sha256"):
                acc, src = 100 * r["accuracy"], "full test set, measured on the device"     # its own CPU's figure
            elif e.get("kernel_classes") and cls != bundle.get("home_kernel_class"):
                acc = None if e["kernel_classes"].get(cls) is None else 100 * e["kernel_classes"][cls]
                src = f"verification subset, kernel class {cls} (the device's), computed where the bundle was made"
            golden = r.get("golden") or {}
            err = changed or (r.get("error") if not r.get("ok", True) else (None if golden.get("passed") else
                                                                            "on the device: " + str(golden.get("error"))))
            rows.append(measured_row(e["label"], str(Path(bundle_dir) / e["file"]), e["format"], e["precision"], r,
                                     accuracy=acc, accuracy_from=src, error=err, size=e["size"],
                                     float_layers=e["float_layers"], sha256=e["sha256"],
                                     metric=bundle.get("metric", "accuracy")))
    if not rows:
        raise ModelError(f"{device_json}: none of its results are files of the bundle {bundle_dir}")
    reference, reference_from = next((((e["accuracy"] or {})[rt], what) for folder, rt, what in REFERENCES
                                      for e in bundle["candidates"] if folder in Path(e["file"]).parts
                                      and (e["accuracy"] or {}).get(rt) is not None), (None, None))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    st = dev.get("settings") or {}
    timing = (f"p50 of at least {st['runs']} runs and {st.get('min_seconds', 0):g} s on the device" if "runs" in st
              else None)
    info = {"source": bundle.get("source"), "data": bundle.get("data"), "threads": (results[0].get("threads") or 1),
            "task": bundle.get("task"), "metric": bundle.get("metric", "accuracy"),
            "timing": timing,
            "machine": machine, "reference_accuracy": reference, "reference_from": reference_from and
            f"{reference_from}, where the bundle was made", "bundle": str(bundle_dir), "device_results": str(device_json)}
    return choose(out, rows, budgets, reference, info, (), progress, heading="edgepack deploy --select (device results)")

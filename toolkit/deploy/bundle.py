"""A bundle for another device (`deploy --candidates-only`): every verified candidate, its manifest, golden vectors
(real test inputs with the source's outputs), the accuracy measured here and, for an image classifier, the test set
itself (`test-set/`, gzipped IDX with its sha256), so the device times the files and measures their accuracy on its
own CPU without a data folder (`edgepack bench BUNDLE --json`); `deploy --select` picks for it
(edgepack.toolkit.deploy.device)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgepack.toolkit.deploy.rows import Row
from edgepack.toolkit.outputs import atomic_text

GOLDEN_IMAGES = 32


def write_bundle(out: Path, rows, results, variants, ds, loaded, info, progress) -> dict:
    from edgepack.benchmarks.golden import BUNDLE_FILE, GOLDEN_FILE, compare_golden, golden_outputs, save_golden, tolerance
    from edgepack.runtimes import open_runner
    from edgepack.exporters.registry import get_exporter
    from edgepack.toolkit.record import sha256_file
    x, y = ds.test_subset(GOLDEN_IMAGES, seed=1)
    xn = ds.normalize(x, "NHWC").astype(np.float32)
    src = loaded.backend.predict_outputs(loaded.model, ds.normalize(x, loaded.backend.LAYOUT))
    from edgepack.toolkit.tasks import get_task
    classifier = get_task(info.get("task")).top1
    entries = []
    by_file: dict[str, list[Row]] = {}
    for r in rows:
        by_file.setdefault(r.file, []).append(r)
    for (folder, fmt, _), res in zip(variants, results):
        if not res.ok:
            continue
        runner = open_runner(res.path, threads=None)
        try:
            home = compare_golden(golden_outputs(runner, xn), src, classifier, res.path.name)
        finally:
            runner.close()
        ver = res.record.verification or {}
        group = by_file.get(str(res.path), [])
        entries.append({"label": group[0].label if group else folder, "file": str(res.path.relative_to(out)),
                        "format": fmt, "precision": group[0].precision if group else "?",
                        "float_layers": group[0].float_layers if group else [], "sha256": sha256_file(res.path),
                        "size": res.path.stat().st_size,
                        "accuracy": {r.runtime: r.accuracy for r in group if r.accuracy is not None},
                        "kernel_classes": {k: v.get("accuracy") for k, v in (ver.get("kernel_classes") or {}).items()
                                           if not k.startswith("_")} if get_exporter(fmt).kernel_sensitive else None,
                        "golden": home, "tolerance": tolerance(home, get_exporter(fmt).atol)})
    save_golden(out / GOLDEN_FILE, xn, y, src, **ds.golden_raw(GOLDEN_IMAGES, seed=1))
    test_set = _test_set(out, ds, classifier)
    bundle = {"edgepack_bundle_version": 1, **info, "home_kernel_class": info["machine"].get("ort_int8_kernel_class"),
              "golden_images": int(len(x)), "test_set": test_set, "candidates": entries}
    atomic_text(out / BUNDLE_FILE, json.dumps(bundle, indent=2, default=str))
    progress(f"bundle: {len(entries)} files, golden vectors of {len(x)} test images, accuracy measured here"
             f"{' and the test set for the device' if test_set else ''} -> {out}")
    return {"bundle": out / BUNDLE_FILE, "entries": entries}


TEST_SET_DIR = "test-set"


def _test_set(out: Path, ds, classifier: bool) -> dict | None:
    """The test set for the device (image classifiers): {"folder", "name", "test_sha256", "items"}, else None (the
    device's accuracy then comes from here: a detection or speech set is not sent)."""
    from edgepack.toolkit.data.dataset import Dataset
    from edgepack.toolkit.data.sources import write_test_set
    from edgepack.toolkit.errors import DataError
    if not classifier or not isinstance(ds, Dataset):
        return None
    try:
        meta = write_test_set(ds, out / TEST_SET_DIR)
    except DataError:
        return None
    return {"folder": TEST_SET_DIR, "name": meta["name"], "test_sha256": meta["test_sha256"], "items": len(ds.y_test)}

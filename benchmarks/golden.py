"""Golden vectors: a few real inputs with the source model's outputs, shipped in a deploy bundle so that a device
checks each file reproduces them (within the tolerance measured where the file was made) before its timings
count. Runtime-only: needs a runner, no data set, no training framework."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgepack.toolkit.errors import ModelError
from edgepack.toolkit.record import sha256_file

BUNDLE_FILE = "bundle.json"
GOLDEN_FILE = "golden.npz"


def is_bundle(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / BUNDLE_FILE).is_file()


def read_bundle(path: str | Path) -> dict:
    folder = Path(path)
    try:
        bundle = json.loads((folder / BUNDLE_FILE).read_text())
        golden = np.load(folder / GOLDEN_FILE)
    except (OSError, ValueError) as e:
        raise ModelError(f"{folder}: not a readable edgepack deploy bundle ({e})") from None
    bundle["_folder"], bundle["_golden"] = folder, golden
    return bundle


def measurement_key(bundle: dict, entry: dict) -> str:
    """What a candidate's measurement depends on in a bundle, as a hash: the file's bytes and the golden vectors' values
    (not golden.npz's bytes, which hold the time it was written). Rows kept under this key are reused by a later
    bench of the same file, in a re-made bundle too."""
    import hashlib
    h = hashlib.sha256((Path(bundle["_folder"]) / entry["file"]).read_bytes())
    h.update(str((bundle.get("test_set") or {}).get("test_sha256", "")).encode())     # accuracy on the set it carries
    golden = bundle["_golden"]
    for k in sorted(golden.files):
        h.update(k.encode())
        h.update(np.ascontiguousarray(golden[k]).tobytes())
    return h.hexdigest()[:24]


OUTPUT_PREFIX = "out__"              # golden.npz keys of the source's outputs by name (bundles before tasks: "source")


def golden_outputs(runner, x: np.ndarray) -> dict:
    return runner.predict_outputs(x.astype(np.float32))


def source_of(golden) -> dict:
    """The source's outputs stored in a bundle's golden.npz, by name."""
    named = {k[len(OUTPUT_PREFIX):]: golden[k] for k in golden.files if k.startswith(OUTPUT_PREFIX)}
    return named or {"logits": golden["source"]}


def save_golden(path, x: np.ndarray, labels: np.ndarray, source: dict, **raw) -> None:
    """Model inputs x, labels, the source's outputs; `raw`: an audio set's clips and front end (`golden_raw`)."""
    np.savez_compressed(path, x=x, labels=labels, **raw,
                        **{OUTPUT_PREFIX + k: v.astype(np.float32) for k, v in source.items()})


FRONT_END_ATOL = 1e-3            # normalised features recomputed on a device vs at home (measured: ~1e-5)


def device_inputs(golden) -> tuple[np.ndarray, dict | None]:
    """The golden model inputs as this device makes them: an audio bundle's clips through the front end here (so
    the check covers the device's feature computation too), compared with the features made at home; else x."""
    x = golden["x"]
    if "clips" not in golden.files:
        return x, None
    from edgepack.toolkit.data.audio import MfccFrontEnd
    from edgepack.toolkit.data.dataset import normalize
    pre = json.loads(str(golden["front_end"]))
    feats = MfccFrontEnd.from_dict(pre["front_end"])(golden["clips"])[..., None]
    here = normalize(feats, pre["mean"], pre["std"], "NHWC", pre["scale"])
    return here, {"front_end": pre["front_end"].get("name"), "max_abs_diff": float(np.abs(here - x).max()),
                  "atol": FRONT_END_ATOL}


def compare_golden(got: dict, ref: dict, classifier: bool = True, where: str = "the file") -> dict:
    """Max abs difference over every output (matched to the source's by name) and, for a classifier, top-1 agreement."""
    from edgepack.toolkit.tasks import matched
    got = matched(ref, got, where)[0]
    diff = max(float(np.abs(got[k] - ref[k]).max()) for k in ref)
    if not classifier:
        return {"max_abs_diff": diff, "agreement": None}
    g, r = next(iter(got.values())), next(iter(ref.values()))
    return {"max_abs_diff": diff, "agreement": float((g.argmax(1) == r.argmax(1)).mean())}


def tolerance(home: dict, atol: float | None) -> dict:
    """What a device must reproduce: the differences measured at home, with room for the rounding differences of
    other kernels (twice the home difference; an exact format at least its own atol), and at most one more
    top-1 flip than at home."""
    return {"max_abs_diff": max(2 * home["max_abs_diff"] + 1e-4, atol or 0.0), "min_agreement": home.get("agreement")}


def check(bundle: dict, entry: dict, runtime: str | None = None) -> dict:
    """Run one bundle file on this machine on the golden inputs; passed when within the entry's tolerance."""
    from edgepack.runtimes import open_runner
    path = bundle["_folder"] / entry["file"]
    g = bundle["_golden"]
    x, fe = device_inputs(g)
    ref = source_of(g)
    if fe is not None and not fe["max_abs_diff"] <= fe["atol"]:
        return {"passed": False, "front_end": fe, "sha256": entry["sha256"],
                "error": f"the {fe['front_end']} front end computes other features on this device: max abs difference "
                         f"{fe['max_abs_diff']:.3g} from the bundle's (allowed {fe['atol']:g})"}
    if not path.is_file():
        return {"passed": False, "error": f"{entry['file']}: missing from the bundle"}
    if sha256_file(path) != entry["sha256"]:
        return {"passed": False, "error": f"{entry['file']}: changed since the bundle was written (sha256 differs)"}
    runner = open_runner(path, threads=None, runtime=runtime)
    try:
        got = golden_outputs(runner, x)
    finally:
        runner.close()
    tol = entry["tolerance"]
    try:
        m = compare_golden(got, ref, tol.get("min_agreement") is not None, entry["file"])
    except ModelError as e:
        return {"passed": False, "error": str(e), "sha256": entry["sha256"]}
    n = len(x)
    passed = m["max_abs_diff"] <= tol["max_abs_diff"] and (
        tol.get("min_agreement") is None or m["agreement"] >= tol["min_agreement"] - 1.0 / n - 1e-9)
    out = {"passed": bool(passed), "images": n, **m, "tolerance": tol, "sha256": entry["sha256"],
           **({"front_end": fe} if fe else {})}
    if not passed:
        out["error"] = (f"golden vectors not reproduced: max abs difference {m['max_abs_diff']:.4g} (allowed "
                        f"{tol['max_abs_diff']:.4g})" + ("" if m["agreement"] is None else
                        f", top-1 agreement {m['agreement']:.2%} (made with {tol['min_agreement']:.2%})"))
    return out

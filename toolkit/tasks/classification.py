"""Classification: one output of class scores [N, classes]; top-1 accuracy, the confusion matrix.

Verification (what edgepack did before tasks existed, unchanged):
- exact formats (fp32, fp16, lossless archives): max abs logit difference and top-1 agreement;
- quantized formats: (1) the accuracy change with its statistical margin: the file fails when its accuracy drop
  exceeds `verify_max_drop` (percentage points) by more than two standard errors of the paired difference; (2) top-1
  agreement on the inputs whose source top-1 margin exceeds the quantization noise (6x the RMS logit difference).
"""
from __future__ import annotations

import numpy as np

from edgepack.toolkit.errors import ModelError
from edgepack.toolkit.tasks.base import MIN_INT8_SNR_DB, Task, fidelity

CONFIDENT_MARGIN_X_RMS = 6.0          # source margin > 6 x RMS logit difference: "confident" input
MIN_CONFIDENT_AGREEMENT = 0.99


def compare(got: np.ndarray, ref: np.ndarray, y: np.ndarray) -> dict:
    """Every figure the criteria use, for one set of logits against the source's."""
    if got.shape != ref.shape:
        return {"shape_ok": False, "shape": f"output shape {got.shape} != source {ref.shape}"}
    diff = np.abs(got - ref)
    g, r = got.argmax(1), ref.argmax(1)
    src_ok, exp_ok = r == y, g == y
    n = len(y)
    b, c = int((src_ok & ~exp_ok).sum()), int((~src_ok & exp_ok).sum())      # discordant pairs
    delta = (c - b) / n
    se = float(np.sqrt(max(b + c - (c - b) ** 2 / n, 0.0)) / n)
    rms = float(np.sqrt(np.mean((got - ref) ** 2)))
    top2 = np.sort(ref, axis=1)[:, -2:] if ref.shape[1] > 1 else np.zeros((n, 2))
    confident = (top2[:, 1] - top2[:, 0]) > CONFIDENT_MARGIN_X_RMS * rms
    signal = float(np.mean(ref.astype(np.float64) ** 2))
    snr = float("inf") if rms == 0 else (10 * np.log10(signal / rms ** 2) if signal > 0 else float("-inf"))
    notes = []
    k = ref.shape[1]
    top_share = float(np.bincount(r, minlength=k).max() / n) if n else 0.0
    acc = float(src_ok.mean())
    if n and (acc <= 1 / k + 2 * np.sqrt((1 / k) * (1 - 1 / k) / n) or top_share >= 0.9):
        notes.append(f"the source is at chance level (accuracy {acc:.2%} on these inputs, chance {1 / k:.2%}; it gives "
                     f"one class for {top_share:.0%} of them): agreeing with it proves little about this file")
    return {"shape_ok": True, "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "agreement": float((g == r).mean()), "source_accuracy": acc,
            "accuracy": float(exp_ok.mean()), "delta_pp": 100 * delta, "se_pp": 100 * se, "rms": rms,
            "snr_db": snr, "confident": int(confident.sum()),
            "confident_agreement": float((g[confident] == r[confident]).mean()) if confident.any() else None,
            "notes": notes}


def judge(m: dict, criteria: tuple, max_drop_pp: float, where: str = "") -> list[str]:
    """The failed checks for one comparison (empty: passed); `criteria` is the exporter's (atol, min_agreement)."""
    at = f" ({where})" if where else ""
    if not m["shape_ok"]:
        return [m["shape"] + at]
    failures = []
    atol, min_agreement = criteria
    if atol is not None:                            # an exact format: numerically equal, same decisions
        if not m["max_abs_diff"] <= atol:
            failures.append(f"max abs logit difference {m['max_abs_diff']:.3g} > {atol:g}{at}")
        if m["agreement"] < min_agreement:
            failures.append(f"top-1 agreement {m['agreement']:.2%} < {min_agreement:.0%}{at}")
        return failures
    drop = -m["delta_pp"]
    if drop > max_drop_pp + 2 * m["se_pp"]:
        failures.append(f"accuracy {100 * m['accuracy']:.2f}% is {drop:.2f} pp below the source's "
                        f"{100 * m['source_accuracy']:.2f}% (allowed {max_drop_pp:g} pp + 2 x {m['se_pp']:.2f} pp){at}")
    ca = m["confident_agreement"]
    if ca is not None and ca < MIN_CONFIDENT_AGREEMENT:
        failures.append(f"top-1 agreement {ca:.2%} < {MIN_CONFIDENT_AGREEMENT:.0%} on the {m['confident']} inputs "
                        f"the source decides by a clear margin{at}")
    if ca is None:                  # no input decided by a clear margin: that rule has no evidence; judge the logits
        snr = m.get("snr_db", float("inf"))
        if not snr >= MIN_INT8_SNR_DB:
            failures.append(f"logit SNR {snr:.1f} dB < {MIN_INT8_SNR_DB:g} dB (no input is decided by a clear margin, "
                            f"so the agreement rule had no evidence){at}")
    return failures


def evidence_note(m: dict, quantized: bool) -> str | None:
    """What to say when the clear-margin rule had no inputs to judge (it then falls back to the logit SNR)."""
    if quantized and m.get("shape_ok") and m.get("confident_agreement") is None:
        return (f"no input is decided by a clear margin (0 of them), so top-1 agreement there proves nothing: judged by "
                f"logit SNR {m.get('snr_db', float('nan')):.1f} dB >= {MIN_INT8_SNR_DB:g} dB instead (overall agreement "
                f"{m.get('agreement', 0):.2%})")
    return None


def _only(outputs: dict) -> np.ndarray:
    return next(iter(outputs.values()))


class Classification(Task):
    name = "classification"
    description = "one output of class scores [N, classes]: top-1 accuracy, confusion matrix"
    metric = "accuracy"
    top1 = True
    objective = "classification"

    def check_outputs(self, shapes: dict[str, tuple], ds, where: str) -> None:
        if len(shapes) != 1:
            raise ModelError(f"{where}: {len(shapes)} outputs ({', '.join(shapes)}); a classifier has one [N, classes] "
                             "output: give --task raw (outputs verified one by one) or the task it performs")
        shape = tuple(next(iter(shapes.values())))
        if len(shape) != 2:
            raise ModelError(f"{where}: output shape {shape} is not one [N, classes] vector; give --task raw (outputs "
                             "verified one by one) or the task it performs (--task anomaly for an autoencoder)")
        if shape[1] not in (-1, ds.num_classes):
            raise ModelError(f"{where}: the model has {shape[1]} outputs but {ds.name} has {ds.num_classes} classes; "
                             "use it on the data set it was made for, or give --task raw")

    def quality(self, outputs, x, y, ds) -> dict:
        logits = _only(outputs)
        if logits.ndim != 2 or logits.shape[1] != ds.num_classes:
            raise ModelError(f"the model has {logits.shape[-1]} outputs but {ds.name} has {ds.num_classes} "
                             "classes; benchmark it on the data set it was made for")
        pred = logits.argmax(1)
        n = ds.num_classes
        cm = np.zeros((n, n), np.int64)
        np.add.at(cm, (y, pred), 1)
        acc = float((pred == y).mean())
        return {"metric": self.metric, "value": acc, "se": float(np.sqrt(acc * (1 - acc) / max(len(y), 1))),
                "confusion": cm.tolist(), "predictions": pred.astype(int).tolist()}

    def compare(self, got, ref, x, y, ds) -> dict:
        m = compare(_only(got), _only(ref), y)
        return {**m, "outputs": fidelity(got, ref)} if m["shape_ok"] else m

    def notes(self, m: dict, criteria: tuple) -> list[str]:
        out = list(m.get("notes") or [])
        note = evidence_note(m, criteria[0] is None)
        return out + ([note] if note else [])

    def judge(self, m, criteria, max_drop_pp, where=""):
        return judge(m, criteria, max_drop_pp, where)

    def verification_line(self, ver) -> str:
        line = (f"accuracy {ver.export_accuracy:.2%} vs source {ver.source_accuracy:.2%} ({ver.accuracy_delta_pp:+.2f} +- "
                f"{ver.accuracy_delta_se_pp:.2f} pp) on {ver.images} images of {ver.classes_covered} classes, agreement "
                f"{ver.top1_agreement:.2%}")
        if ver.confident_agreement is not None and ver.atol is None:
            line += f" ({ver.confident_agreement:.2%} on {ver.confident_images} clear-margin inputs)"
        for note in getattr(ver, "notes", None) or []:
            line += f"; note: {note}"
        return line


TASK = Classification

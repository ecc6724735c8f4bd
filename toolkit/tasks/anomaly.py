"""Anomaly detection (MLPerf Tiny's AD benchmark): a model that scores how unusual an input is, judged by ROC AUC.

The score is the model's reconstruction error (mean squared difference between its output and its input: an
autoencoder) or, for a model with one value per input, that value. Any classification data set becomes a one-class
set-up: `normal_classes` are normal (training uses them only), every other class of the test set is an anomaly.

Quality: ROC AUC with its DeLong standard error, and the partial AUC up to a false-positive rate of `max_fpr`
(McClish-standardised, as scikit-learn's `roc_auc_score(max_fpr=...)` and DCASE's pAUC), computed in NumPy so that a
device without scikit-learn scores the same way (cross-checked against scikit-learn by the tests).
Verification of a quantized file: its AUC change against the source on the same inputs, within `verify_max_drop`
points of AUC (x100) plus two standard errors of the paired difference (DeLong); every output's fidelity is recorded.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from edgepack.toolkit.errors import ModelError, OptionError
from edgepack.toolkit.outputs import save_figure
from edgepack.toolkit.tasks.base import Task, fidelity, fidelity_line, shape_mismatch

DEFAULT_MAX_FPR = 0.1                 # DCASE / MLPerf Tiny AD report pAUC at p = 0.1


# ---------------------------------------------------------------- ROC figures in NumPy
def roc_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) at every distinct threshold, from (0, 0) to (1, 1); y: 1 = anomaly (positive)."""
    y = np.asarray(y).astype(bool)
    order = np.argsort(-np.asarray(score, np.float64), kind="mergesort")
    s, t = np.asarray(score, np.float64)[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]          # the last index of each distinct score
    tps, fps = np.cumsum(t)[last], np.cumsum(~t)[last]
    tpr = np.r_[0.0, tps / max(t.sum(), 1)]
    fpr = np.r_[0.0, fps / max((~t).sum(), 1)]
    return fpr, tpr


def partial_auc(y: np.ndarray, score: np.ndarray, max_fpr: float) -> float:
    """The area under the ROC curve up to `max_fpr`, McClish-standardised to [0.5, 1] (scikit-learn's definition)."""
    fpr, tpr = roc_curve(y, score)
    stop = np.searchsorted(fpr, max_fpr, "right")
    x, yy = np.r_[fpr[:stop], max_fpr], np.r_[tpr[:stop], np.interp(max_fpr, fpr[stop - 1:stop + 1], tpr[stop - 1:stop + 1])]
    area = float(np.trapezoid(yy, x)) if hasattr(np, "trapezoid") else float(np.trapz(yy, x))
    lo, hi = 0.5 * max_fpr ** 2, max_fpr
    return 0.5 * (1 + (area - lo) / (hi - lo))


def _midrank(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    _, first, counts = np.unique(x[order], return_index=True, return_counts=True)
    r = np.empty(len(x))
    r[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return r


def delong(y: np.ndarray, scores: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """AUCs of several scores of the same inputs and their covariance (DeLong et al. 1988, Sun & Xu's midranks)."""
    y = np.asarray(y).astype(bool)
    pos, neg = [np.asarray(s, np.float64)[y] for s in scores], [np.asarray(s, np.float64)[~y] for s in scores]
    m, n = len(pos[0]), len(neg[0])
    if m < 2 or n < 2:
        raise ModelError(f"ROC AUC needs at least two normal and two anomalous inputs (got {n} and {m})")
    aucs, v01, v10 = [], [], []
    for p, q in zip(pos, neg):
        tx, ty, tz = _midrank(p), _midrank(q), _midrank(np.r_[p, q])
        aucs.append((tz[:m].sum() / m - (m + 1) / 2) / n)
        v01.append((tz[:m] - tx) / n)
        v10.append(1 - (tz[m:] - ty) / m)
    cov = np.atleast_2d(np.cov(np.array(v01))) / m + np.atleast_2d(np.cov(np.array(v10))) / n
    return np.array(aucs), cov


# ---------------------------------------------------------------- the task
class Anomaly(Task):
    name = "anomaly"
    description = ("an anomaly score per input (reconstruction error of an autoencoder, or the model's own score "
                   "output): ROC AUC and partial AUC; one-class set-up of any classification data set")
    metric = "ROC AUC"
    options = ("normal_classes", "max_fpr")
    objective = "reconstruction"            # the built-in autoencoders; a model with its own score output comes as a file

    def __init__(self, normal_classes=None, max_fpr: float = DEFAULT_MAX_FPR, **rest):
        super().__init__(**rest)
        if normal_classes is not None:
            if isinstance(normal_classes, str):
                normal_classes = [c.strip() for c in normal_classes.split(",") if c.strip()]
            if not isinstance(normal_classes, (list, tuple)) or not normal_classes:
                raise OptionError("normal classes: give one or more class names or indices, e.g. 0 or 0,1")
            normal_classes = list(normal_classes)
        if not 0 < float(max_fpr) <= 1:
            raise OptionError(f"max_fpr must be in (0, 1], got {max_fpr}")
        self.settings = {"normal_classes": normal_classes, "max_fpr": float(max_fpr)}

    # ------------------------------------------------------------ data: the one-class view
    def normal_indices(self, classes: list[str]) -> list[int]:
        given = self.settings["normal_classes"]
        if given is None:
            return [0]
        out = []
        for c in given:
            if str(c) in classes:
                out.append(classes.index(str(c)))
            elif str(c).lstrip("-").isdigit() and 0 <= int(c) < len(classes):
                out.append(int(c))
            else:
                raise OptionError(f"normal class {c!r} is not one of the data set's classes ({', '.join(classes)}) "
                                  f"nor an index below {len(classes)}")
        if len(set(out)) == len(classes):
            raise OptionError("every class is normal: leave at least one class out as the anomalies")
        return sorted(set(out))

    def view(self, ds):
        if ds.classes == ["normal", "anomaly"]:                  # already a one-class set
            return ds
        normal = self.normal_indices(ds.classes)
        names = [ds.classes[i] for i in normal]
        self.settings["normal_classes"] = names
        keep = np.isin(ds.y_train, normal)
        return replace(ds, x_train=ds.x_train[keep], y_train=np.zeros(int(keep.sum()), np.int64),
                       y_test=(~np.isin(ds.y_test, normal)).astype(np.int64), classes=["normal", "anomaly"],
                       notes=ds.notes + [f"one-class set-up: normal = {', '.join(names)} (training on those only); "
                                         f"anomaly = the other {len(ds.classes) - len(normal)} classes"])

    # ------------------------------------------------------------ outputs -> one score per input
    def check_outputs(self, shapes, ds, where):
        self._pick(shapes, ds.input_shape, where)

    def _pick(self, shapes: dict, hwc, where) -> tuple[str, str]:
        size = int(np.prod(hwc))
        for name, shape in shapes.items():
            per = [d for d in tuple(shape)[1:]]
            if all(d > 0 for d in per) and int(np.prod(per)) == size:
                return name, "reconstruction"
        for name, shape in shapes.items():
            if int(np.prod([d for d in tuple(shape)[1:]] or [1])) == 1:
                return name, "score"
        raise ModelError(f"{where}: no output is a reconstruction of the {tuple(hwc)} input nor one score per input "
                         f"(outputs: {', '.join(f'{n} {tuple(s)}' for n, s in shapes.items())}); an anomaly model "
                         "needs one of them")

    def scores(self, outputs: dict, x: np.ndarray) -> np.ndarray:
        """One anomaly score per input: the mean squared reconstruction error, or the model's own score."""
        name, kind = self._pick({k: v.shape for k, v in outputs.items()}, x.shape[1:], "the model")
        out = outputs[name].reshape(len(x), -1).astype(np.float64)
        if kind == "score":
            return out[:, 0]
        h, w, c = x.shape[1:]
        shape = outputs[name].shape[1:]
        ref = x.transpose(0, 3, 1, 2) if (c > 1 and tuple(shape) == (c, h, w)) else x
        return np.mean((out - ref.reshape(len(x), -1)) ** 2, axis=1)

    def quality(self, outputs, x, y, ds) -> dict:
        s = self.scores(outputs, x)
        (auc,), cov = delong(y, [s])
        fpr, tpr = roc_curve(y, s)
        keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), 200)).round().astype(int))
        return {"metric": self.metric, "value": float(auc), "se": float(np.sqrt(max(cov[0, 0], 0.0))),
                "pauc": partial_auc(y, s, self.settings["max_fpr"]), "max_fpr": self.settings["max_fpr"],
                "normal_classes": self.settings["normal_classes"], "normal": int((y == 0).sum()),
                "anomalies": int((y == 1).sum()), "roc": {"fpr": fpr[keep].round(5).tolist(), "tpr": tpr[keep].round(5).tolist()}}

    def format_figure(self, value: float) -> str:
        return f"AUC {value:.4f}"

    def quality_line(self, q):
        return (f"ROC AUC {q['value']:.4f} +- {q['se']:.4f}, pAUC@{q['max_fpr']:g} {q['pauc']:.4f} "
                f"({q['normal']:,} normal, {q['anomalies']:,} anomalous inputs)")

    # ------------------------------------------------------------ verification
    def compare(self, got, ref, x, y, ds) -> dict:
        fid = fidelity(got, ref)
        if shape_mismatch(fid):
            return shape_mismatch(fid)
        sg, sr = self.scores(got, x), self.scores(ref, x)
        aucs, cov = delong(y, [sr, sg])
        se = float(np.sqrt(max(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1], 0.0)))
        score_snr = fidelity({"score": sg}, {"score": sr})["score"]["snr_db"]
        return {"shape_ok": True, "outputs": fid, "source_auc": float(aucs[0]), "auc": float(aucs[1]),
                "source_figure": float(aucs[0]), "figure": float(aucs[1]),
                "delta_pp": 100 * float(aucs[1] - aucs[0]), "se_pp": 100 * se, "score_snr_db": score_snr}

    def judge_figure(self, m, max_drop_pp, at):
        drop = -m["delta_pp"]
        if drop > max_drop_pp + 2 * m["se_pp"]:
            return [f"ROC AUC {m['auc']:.4f} is {drop / 100:.4f} below the source's {m['source_auc']:.4f} (allowed "
                    f"{max_drop_pp / 100:g} + 2 x {m['se_pp'] / 100:.4f}){at}"]
        return []

    def verification_line(self, ver) -> str:
        q = ver.quality or {}
        if "auc" not in q:
            return fidelity_line(ver.outputs or {})
        return (f"ROC AUC {q['auc']:.4f} vs source {q['source_auc']:.4f} ({q['delta_pp'] / 100:+.4f} +- "
                f"{q['se_pp'] / 100:.4f}) on {ver.images} inputs, anomaly-score SNR {q['score_snr_db']:.1f} dB; "
                + fidelity_line(ver.outputs or {}))

    # ------------------------------------------------------------ report
    def plot(self, curves, path) -> str | None:
        """The ROC curves of every file in one figure: the whole curve, and the low false-positive region the pAUC
        covers (where good detectors differ)."""
        curves = [(label, q) for label, q in curves if q and q.get("roc")]
        if not curves:
            return None
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        max_fpr = curves[0][1].get("max_fpr", DEFAULT_MAX_FPR)
        fig, (full, low) = plt.subplots(1, 2, figsize=(11, 5))
        for k, (label, q) in enumerate(curves):
            style = dict(lw=1.3, ls=("-", "--", ":", "-.")[k % 4])
            full.plot(q["roc"]["fpr"], q["roc"]["tpr"], **style, label=f"{label}: AUC {q['value']:.4f}")
            low.plot(q["roc"]["fpr"], q["roc"]["tpr"], **style, label=f"{label}: pAUC {q['pauc']:.4f}")
        full.plot([0, 1], [0, 1], ls=":", color="grey", lw=0.8)
        full.axvline(max_fpr, ls="--", color="grey", lw=0.6)
        low.set_xlim(0, max_fpr)
        lows = [t for _, q in curves for f, t in zip(q["roc"]["fpr"], q["roc"]["tpr"]) if 0 < f <= max_fpr]
        low.set_ylim(max(min(lows, default=0) - 0.05, 0), 1.005)
        for ax, title in ((full, "ROC, full test set, each file in its runtime"),
                          (low, f"false-positive rate <= {max_fpr:g} (the pAUC region)")):
            ax.set_xlabel("false-positive rate (normal inputs flagged)")
            ax.set_ylabel("true-positive rate (anomalies flagged)")
            ax.set_title(title, fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6.5, loc="lower right")
        fig.tight_layout()
        save_figure(fig, path, 120)
        plt.close(fig)
        return str(path)


TASK = Anomaly

"""Keyword spotting: a classifier of one-second clips that reads them through the data set's audio front end.

Scored and verified as a classifier (top-1 accuracy, confusion matrix, the same int8 criteria); what it adds is the
front end: its time per clip, measured in the harness on the test clips at batch 1 and reported beside the model's
(a device pays both), and the report's picture of a few test clips' MFCC features with each file's prediction.
The front end itself lives with the data (`edgepack.toolkit.data.audio.MfccFrontEnd`), NumPy only, so a device's
runtime-only install computes the features training saw.
"""
from __future__ import annotations

import time

import numpy as np

from edgepack.toolkit.errors import ModelError
from edgepack.toolkit.tasks.classification import Classification

FRONT_END_CLIPS = 100          # clips the front end is timed on, one at a time
EXAMPLE_CLIPS = 4              # clips whose features the report draws


def time_front_end(ds, clips: int = FRONT_END_CLIPS) -> dict | None:
    """p50 and mean milliseconds of the data set's front end on single test clips (after one warm-up call)."""
    if getattr(ds, "clips_test", None) is None or not len(ds.clips_test):
        return None
    sample = ds.clips_test[:clips]
    ds.features(sample[:1])
    lat = []
    for c in sample:
        t = time.perf_counter_ns()
        ds.features(c[None])
        lat.append((time.perf_counter_ns() - t) / 1e6)
    return {"name": ds.front_end.get("name"), "p50_ms": float(np.median(lat)), "mean_ms": float(np.mean(lat)),
            "clips": len(lat), "measured": "batch 1, NumPy, in the harness's process"}


class KeywordSpotting(Classification):
    name = "keyword-spotting"
    description = ("a classifier of one-second audio clips through the data set's front end (MFCC): accuracy, "
                   "confusion matrix, front-end time per clip")
    figures_beside_accuracy = True
    default_for = "audio"

    def view(self, ds):
        if getattr(ds, "front_end", None) is None:
            raise ModelError(f"{ds.name}: keyword spotting reads an audio set (--data synthetic-speech, "
                             "speech-commands, or --data-dir with a Speech Commands folder), not images")
        return ds

    def quality(self, outputs, x, y, ds) -> dict:
        q = super().quality(outputs, x, y, ds)
        q["front_end"] = time_front_end(ds)
        _, first = np.unique(y, return_index=True)                # one clip of each of the first classes
        idx = np.sort(first)[:EXAMPLE_CLIPS]
        q["examples"] = {"features": np.asarray(x[idx, ..., 0], np.float32).round(2).tolist(),
                         "labels": [ds.classes[int(i)] for i in y[idx]],
                         "predicted": [ds.classes[int(q["predictions"][i])] for i in idx]}
        return q

    def quality_line(self, q: dict | None) -> str:
        line = super().quality_line(q)
        fe = (q or {}).get("front_end")
        return line + (f"; front end {fe['name']} {fe['p50_ms']:.3f} ms/clip (p50)" if fe else "")

    def plot(self, curves: list[tuple[str, dict]], path) -> str | None:
        """The first test clips' features (normalised model input) with what each file predicted."""
        first = next((q for _, q in curves if q.get("examples")), None)
        if first is None:
            return None
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        ex = first["examples"]
        k = len(ex["features"])
        fig, axes = plt.subplots(1, k, figsize=(2.6 * k, 3.4), squeeze=False)
        for i, ax in enumerate(axes[0]):
            f = np.asarray(ex["features"][i]).T                    # (coefficients, frames)
            f = (f - f.mean(1, keepdims=True)) / (f.std(1, keepdims=True) + 1e-6)   # each coefficient on its own scale
            ax.imshow(f, aspect="auto", origin="lower", cmap="magma")
            preds = "\n".join(f"{label[-24:]}: {q['examples']['predicted'][i]}" for label, q in curves
                              if q.get("examples"))
            ax.set_title(f"clip {i}: {ex['labels'][i]}", fontsize=9)
            ax.set_xlabel("frame (20 ms)", fontsize=8)
            ax.set_ylabel("MFCC" if i == 0 else "", fontsize=8)
            ax.text(0.02, -0.42, preds, transform=ax.transAxes, fontsize=6.5, va="top")
        fig.suptitle("test clips' MFCC features (each coefficient scaled to its own range) and each file's prediction", fontsize=10)
        fig.tight_layout()
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        return str(path)


TASK = KeywordSpotting

"""Iterative pruning curves: prune a fixed fraction per iteration, fine-tune, evaluate, repeat; one line per rate."""
from __future__ import annotations

import json
from pathlib import Path

from edgepack.toolkit.outputs import save_figure


def pruning_curves(checkpoint: Path, dataset, rates: list[float], iterations: int, epochs: int, lr: float,
                   structured: bool, out: Path, verbose: bool = True, batch_size: int = 32) -> dict:
    from edgepack.toolkit.api import load_checkpoint
    from edgepack.toolkit.compress import compress_model, measure, CompressState
    from edgepack.toolkit.train import TrainConfig
    curves = {}
    for rate in rates:
        loaded = load_checkpoint(checkpoint)
        start = measure(CompressState(loaded.model, loaded.backend, loaded.spec, dataset, TrainConfig()))
        points = [{"iteration": 0, **start}]
        model = loaded.model
        for k in range(1, iterations + 1):
            if structured:
                steps = [{"technique": "prune-structured", "ratio": rate, "epochs": epochs, "lr": lr}]
            else:
                steps = [{"technique": "prune", "sparsity": 1 - (1 - rate) ** k, "schedule": "oneshot", "epochs": epochs, "lr": lr}]
            state, (rec,) = compress_model(model, steps, dataset, train_config=TrainConfig(epochs=epochs, batch_size=batch_size),
                                           verbose=False)
            model = state.model
            points.append({"iteration": k, **rec["after"]})
            if verbose:
                print(f"  rate {rate:.0%} iteration {k}: params {rec['after']['params']:,} (non-zero "
                      f"{rec['after']['nonzero_params']:,}), accuracy {rec['after']['accuracy']:.4f}", flush=True)
        curves[f"{rate:g}"] = points
    data = {"structured": structured, "epochs_per_iteration": epochs, "curves": curves}
    (out / "curves.json").write_text(json.dumps(data, indent=2))
    _plot(data, out / "pruning_curves.png")
    return data


def _plot(data: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    key = "params" if data["structured"] else "nonzero_params"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for rate, pts in data["curves"].items():
        ax.plot([p[key] for p in pts], [100 * p["accuracy"] for p in pts], "o-", label=f"{float(rate):.0%} per iteration")
    ax.set_xlabel("parameters" if data["structured"] else "non-zero parameters")
    ax.set_ylabel("test accuracy [%]")
    ax.set_title(("structured" if data["structured"] else "unstructured") + " iterative pruning")
    ax.invert_xaxis()
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path, 120)
    plt.close(fig)

"""`make demo`: the quickstart on the embedded default, offline, no flags."""
from __future__ import annotations

from pathlib import Path


def run_demo(out: str | Path = "demo") -> int:
    from toolkit.api import train
    from toolkit.data import load_dataset
    from toolkit.train import TrainConfig

    out = Path(out)
    ds = load_dataset("mnist")  # resolution order: $EDGEPACK_DATA -> cache -> download -> bundled fallback (announced)
    for fw in ("torch", "keras"):
        train(fw, "mnist-tutorial", ds, out=out / fw, config=TrainConfig(epochs=3 if len(ds.y_train) > 10000 else 15))
    print(f"demo finished: results under {out}/")
    return 0

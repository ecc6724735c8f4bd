"""`make demo`: the quickstart recipe on the embedded default, offline, no flags."""
from __future__ import annotations

from pathlib import Path

QUICKSTART = Path(__file__).resolve().parent / "recipes" / "quickstart.toml"   # package data: works from a wheel


def run_demo(out: str | Path = "demo") -> int:
    from edgepack.toolkit.recipes.runner import run_recipe
    run_recipe(QUICKSTART, out, command=f"edgepack demo --out {out}")
    print(f"demo finished: open {Path(out) / 'report.md'}")
    return 0

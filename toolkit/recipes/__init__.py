"""Recipes: one TOML file per flow, run by `edgepack run` (see runner.py)."""
from edgepack.toolkit.recipes.runner import run_recipe
from edgepack.toolkit.recipes.schema import load_recipe

__all__ = ["run_recipe", "load_recipe"]

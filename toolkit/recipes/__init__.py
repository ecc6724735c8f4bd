"""Recipes: one TOML file per flow, run by `edgepack run` (see runner.py)."""
from toolkit.recipes.runner import run_recipe
from toolkit.recipes.schema import load_recipe

__all__ = ["run_recipe", "load_recipe"]

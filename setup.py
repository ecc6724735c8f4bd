"""Packaging: everything is in pyproject.toml except the one thing it cannot say statically. The repository keeps the
product's layout (toolkit/, runtimes/, exporters/, benchmarks/ at the top); the wheel installs them as
edgepack.toolkit, edgepack.runtimes, edgepack.exporters and edgepack.benchmarks, so no generic top-level package lands in site-packages."""
from setuptools import find_packages, setup

LAYERS = ("toolkit", "runtimes", "exporters", "benchmarks")
packages = ["edgepack"] + [f"edgepack.{p}" for p in find_packages(include=[f"{name}*" for name in LAYERS])]
setup(packages=packages, package_dir={"edgepack": "edgepack", **{f"edgepack.{n}": n for n in LAYERS}})

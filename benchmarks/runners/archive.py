"""edgepack archives (.epk): decompressed into a dense ONNX at load (timed as load), run by ONNX Runtime."""
from __future__ import annotations

from edgepack.benchmarks.runners.onnxruntime import OnnxRuntimeRunner, RunnerInfo


class ArchiveRunner(OnnxRuntimeRunner):
    runtime = "onnxruntime"
    format = "edgepack-archive"
    suffixes = (".epk",)

    def _model_source(self):
        from edgepack.benchmarks.runners.epk import read_archive
        data, self.header = read_archive(self.path)
        return data

    def info(self) -> RunnerInfo:
        i = super().info()
        i.settings["archive"] = self.header.get("kind")
        return i


RUNNERS = (ArchiveRunner,)   # registered by benchmarks/runners/__init__.py

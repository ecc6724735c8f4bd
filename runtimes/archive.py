"""edgepack archives (.epk): decompressed into a dense ONNX at load (timed as load), run by ONNX Runtime."""
from __future__ import annotations

from edgepack.runtimes.onnxruntime import OnnxRuntimeRunner, RunnerInfo


class ArchiveRunner(OnnxRuntimeRunner):
    runtime = "onnxruntime"
    format = "edgepack-archive"
    suffixes = (".epk",)

    def _model_source(self):
        from edgepack.runtimes.epk import read_archive
        data, self.header = read_archive(self.path)
        return data

    def info(self) -> RunnerInfo:
        i = super().info()
        i.settings["archive"] = self.header.get("kind")
        return i


RUNNERS = (ArchiveRunner,)   # registered by runtimes/__init__.py

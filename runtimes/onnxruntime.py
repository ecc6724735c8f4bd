"""ONNX Runtime CPU runner: thread count and graph-optimisation level set explicitly."""
from __future__ import annotations

import numpy as np

from edgepack.runtimes.base import Runner, RunnerInfo, TensorSpec
from edgepack.toolkit.errors import OptionError

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int8)": np.int8,
              "tensor(uint8)": np.uint8, "tensor(int64)": np.int64, "tensor(int32)": np.int32}
OPT_LEVELS = ("disable", "basic", "extended", "all")


class OnnxRuntimeRunner(Runner):
    runtime = "onnxruntime"
    format = "onnx"
    suffixes = (".onnx",)
    needs = ("onnxruntime",)
    label = "ONNX Runtime"

    def _session_options(self):
        import onnxruntime as ort
        level = self.options.get("graph_optimization", "all")
        if level not in OPT_LEVELS:
            raise OptionError(f"unknown ONNX Runtime graph optimisation level {level!r}; expected one of {OPT_LEVELS}")
        so = ort.SessionOptions()
        so.graph_optimization_level = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                                       "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                       "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                       "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[level]
        if self.threads:
            so.intra_op_num_threads = int(self.threads)
            so.inter_op_num_threads = 1
        so.log_severity_level = 3
        return so

    def _model_source(self):
        """Path or serialized bytes handed to InferenceSession (the sparse runner overrides this)."""
        return str(self.path)

    def _load(self) -> None:
        import onnxruntime as ort
        self.session = ort.InferenceSession(self._model_source(), sess_options=self._session_options(),
                                            providers=["CPUExecutionProvider"])
        self.inputs = [TensorSpec(i.name, tuple(d if isinstance(d, int) else -1 for d in i.shape), np.dtype(_ORT_TYPES.get(i.type, np.float32)))
                       for i in self.session.get_inputs()]
        self.outputs = [TensorSpec(o.name, tuple(d if isinstance(d, int) else -1 for d in o.shape), np.dtype(_ORT_TYPES.get(o.type, np.float32)))
                        for o in self.session.get_outputs()]
        self._names = [o.name for o in self.session.get_outputs()]

    def _run(self, feed: np.ndarray):
        return self.session.run(self._names, {self.inputs[0].name: feed})

    def info(self) -> RunnerInfo:
        import onnxruntime as ort
        return RunnerInfo("onnxruntime", ort.__version__, self.threads,
                          {"provider": "CPUExecutionProvider", "graph_optimization": self.options.get("graph_optimization", "all")})


RUNNERS = (OnnxRuntimeRunner,)   # registered by runtimes/__init__.py

"""OpenVINO runtime (CPU plugin) for .onnx files: the third consumer of edgepack's ONNX files.

Two registered runtimes: `openvino` (the plugin's default configuration, which may execute in a lower precision
where the CPU supports it) and `openvino-f32` (INFERENCE_PRECISION_HINT=f32). Install with `pip install
'edgepack[openvino]'`. OpenVINO executes int8 QDQ graphs with its own (oneDNN) kernels, so an int8 .onnx gives
OpenVINO's result, not ONNX Runtime's, on the same CPU: `edgepack bench --runtime all` puts them side by side.
"""
from __future__ import annotations

import numpy as np

from edgepack.runtimes.base import Runner, RunnerInfo, TensorSpec

_OV_TYPES = {"f32": np.float32, "f16": np.float16, "i8": np.int8, "u8": np.uint8, "i64": np.int64, "i32": np.int32}


class OpenVINORunner(Runner):
    runtime = "openvino"
    format = "onnx"
    suffixes = (".onnx",)
    needs = ("openvino",)
    extra = "openvino"
    label = "OpenVINO"
    precision_hint: str | None = None

    def _config(self) -> dict:
        cfg = {}
        if self.threads:
            cfg["INFERENCE_NUM_THREADS"] = int(self.threads)
        if self.precision_hint:
            cfg["INFERENCE_PRECISION_HINT"] = self.precision_hint
        return cfg

    def _load(self) -> None:
        import openvino as ov
        core = ov.Core()
        model = core.read_model(str(self.path))
        self.compiled = core.compile_model(model, "CPU", self._config())
        self.request = self.compiled.create_infer_request()

        def spec(port):
            shape = tuple(-1 if d.is_dynamic else d.get_length() for d in port.get_partial_shape())
            name = port.get_any_name() if port.get_names() else f"port{port.get_index()}"
            return TensorSpec(name, shape, np.dtype(_OV_TYPES.get(port.get_element_type().get_type_name(), np.float32)))
        self.inputs = [spec(p) for p in self.compiled.inputs]
        self.outputs = [spec(p) for p in self.compiled.outputs]

    def _run(self, feed: np.ndarray):
        self.request.infer({0: feed})
        if len(self.outputs) == 1:
            return [self.request.get_output_tensor(0).data.copy()]
        return [self.request.get_output_tensor(i).data.copy() for i in range(len(self.outputs))]

    def info(self) -> RunnerInfo:
        import openvino as ov
        return RunnerInfo(self.runtime, ov.get_version().split("-")[0], self.threads,
                          {"device": "CPU", "precision_hint": self.precision_hint or "plugin default"})


class OpenVINOF32Runner(OpenVINORunner):
    runtime = "openvino-f32"
    label = "OpenVINO (f32 hint)"
    precision_hint = "f32"


RUNNERS = (OpenVINORunner, OpenVINOF32Runner,)   # registered by runtimes/__init__.py

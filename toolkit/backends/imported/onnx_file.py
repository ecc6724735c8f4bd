"""An fp32 .onnx file a user brings: run in ONNX Runtime; it is its own fp32 ONNX export."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepack.toolkit.backends.imported import QUANTIZED_ONNX_OPS, ImportedFramework, ImportedModel, single_input
from edgepack.toolkit.errors import ModelError, first_line


class OnnxFile(ImportedFramework):
    NAME = "onnx"
    LAYOUT = "NHWC"                 # predict() takes NHWC and transposes for an NCHW file
    SUFFIXES = (".onnx",)
    PACKAGE = "onnxruntime"

    def _open(self, path: Path) -> ImportedModel:
        import onnx
        import onnxruntime as ort
        try:
            proto = onnx.load(str(path))
        except Exception as e:  # noqa: BLE001 - protobuf raises several kinds for a damaged file
            raise ModelError(f"{path}: not a readable ONNX model ({first_line(e)})") from None
        quantized = sorted({n.op_type for n in proto.graph.node} & QUANTIZED_ONNX_OPS)
        if quantized:
            raise ModelError(f"{path}: already quantized ({', '.join(quantized)} nodes); deploy and export start from "
                             "an fp32 model")
        try:
            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - ORT raises its own exception types
            raise ModelError(f"{path}: ONNX Runtime cannot load it ({first_line(e)})") from None
        inputs = sess.get_inputs()
        single_input(path, [i.name for i in inputs])
        if inputs[0].type != "tensor(float)":
            raise ModelError(f"{path}: input type {inputs[0].type}; deploy and export start from an fp32 model")
        shape = [d if isinstance(d, int) else -1 for d in inputs[0].shape]
        model = ImportedModel(path, self.NAME, shape, inputs[0].name)
        model.session = sess
        model.output_shapes = {o.name: tuple(d if isinstance(d, int) else -1 for d in o.shape) for o in sess.get_outputs()}
        return model

    def _run_all(self, model: ImportedModel, x: np.ndarray) -> dict:
        return dict(zip(model.output_shapes, model.session.run(None, {model.input_name: x})))

    def _weights(self, model: ImportedModel) -> list[np.ndarray]:
        import onnx
        from onnx import numpy_helper
        proto = onnx.load(str(model.path))
        return [numpy_helper.to_array(t) for t in proto.graph.initializer
                if t.data_type == onnx.TensorProto.FLOAT]

    def to_onnx(self, model: ImportedModel, path: str | Path, input_shape_hwc, opset: int | None = None) -> dict:
        import onnx
        m = onnx.load(str(model.path))                  # weights kept in external files come back into one file
        onnx.save(m, str(path))
        return {"exporter": "the imported file itself", "source_file": model.path.name,
                "opset": next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), -1),
                "input_layout": model.layout(input_shape_hwc)}


FRAMEWORK = OnnxFile()

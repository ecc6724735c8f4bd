"""An fp32 .tflite file a user brings: run in LiteRT; its fp32 ONNX is tf2onnx's conversion, verified against it."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepack.toolkit.backends.imported import ImportedFramework, ImportedModel, single_input
from edgepack.toolkit.errors import ModelError, first_line

DEFAULT_OPSET = 17
TFLITE_COMPUTE = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")


class TfliteFile(ImportedFramework):
    NAME = "tflite"
    LAYOUT = "NHWC"
    SUFFIXES = (".tflite",)
    PACKAGE = "ai_edge_litert"

    def _open(self, path: Path) -> ImportedModel:
        from ai_edge_litert.interpreter import Interpreter
        from edgepack.toolkit.tf_import import quiet_stderr
        try:
            with quiet_stderr():                        # the XNNPACK delegate's banner
                interp = Interpreter(model_path=str(path))
                interp.allocate_tensors()
        except Exception as e:  # noqa: BLE001 - LiteRT raises ValueError/RuntimeError for damaged files
            raise ModelError(f"{path}: LiteRT cannot load it ({first_line(e)})") from None
        inputs = interp.get_input_details()
        single_input(path, [i["name"] for i in inputs])
        reduced = sorted({str(np.dtype(t["dtype"])) for t in interp.get_tensor_details()
                          if np.dtype(t["dtype"]) in (np.int8, np.uint8, np.float16, np.int16)})
        if reduced:
            raise ModelError(f"{path}: already quantized or reduced ({', '.join(reduced)} tensors); deploy and export "
                             "start from an fp32 model")
        sig = inputs[0].get("shape_signature")
        shape = [int(d) for d in (sig if sig is not None and len(sig) else inputs[0]["shape"])]
        model = ImportedModel(path, self.NAME, shape, inputs[0]["name"])
        model.session, model.batch = interp, int(inputs[0]["shape"][0])
        names = _signature_output_names(interp)
        model.output_shapes = {names.get(d["index"], d["name"]): tuple(int(v) for v in (
            d.get("shape_signature") if d.get("shape_signature") is not None and len(d["shape_signature"]) else d["shape"]))
            for d in interp.get_output_details()}
        return model

    def _run_all(self, model: ImportedModel, x: np.ndarray) -> dict:
        interp = model.session
        inp = interp.get_input_details()[0]
        if len(x) != model.batch:                       # LiteRT runs the batch the tensors were allocated for
            interp.resize_tensor_input(inp["index"], [len(x), *inp["shape"][1:]])
            interp.allocate_tensors()
            model.batch = len(x)
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        return {name: interp.get_tensor(d["index"]).copy()
                for name, d in zip(model.output_shapes, interp.get_output_details())}

    def _weights(self, model: ImportedModel) -> list[np.ndarray]:
        interp = model.session
        produced = {i for op in interp._get_ops_details() for i in op["outputs"]}
        produced |= {d["index"] for d in interp.get_input_details()}
        out = []
        for t in interp.get_tensor_details():
            if t["index"] in produced or np.dtype(t["dtype"]) != np.float32:
                continue
            try:
                out.append(np.array(interp.get_tensor(t["index"])))
            except ValueError:                          # a tensor without data
                pass
        return out

    def to_onnx(self, model: ImportedModel, path: str | Path, input_shape_hwc, opset: int | None = None) -> dict:
        from edgepack.toolkit.tf_import import import_tensorflow, quiet_stderr
        import_tensorflow()
        with quiet_stderr():
            import tf2onnx
            try:
                tf2onnx.convert.from_tflite(str(model.path), opset=opset or DEFAULT_OPSET, output_path=str(path))
            except Exception as e:  # noqa: BLE001 - tf2onnx raises many kinds for ops it cannot map
                raise ModelError(f"{model.path}: tf2onnx cannot convert it to ONNX ({first_line(e)})") from None
        renamed = _tidy_names(Path(path), model)
        return {"exporter": f"tf2onnx {tf2onnx.__version__} (from_tflite)", "source_file": model.path.name,
                "opset": opset or DEFAULT_OPSET, "input_layout": model.layout(input_shape_hwc), "renamed": renamed}


def _signature_output_names(interp) -> dict:
    """Tensor index -> signature output name, for a file with one signature (else empty: tensor names are used)."""
    try:
        sigs = interp._get_full_signature_list()
    except Exception:  # noqa: BLE001 - files without signatures
        return {}
    if len(sigs) != 1:
        return {}
    return {idx: name for name, idx in next(iter(sigs.values())).get("outputs", {}).items()}


def _tidy_names(path: Path, model: ImportedModel) -> dict:
    """Names the ONNX consumers and the layer tables can use. tf2onnx keeps TFLite's signature names
    ('serving_default_input:0', which onnx2tf cannot look up after sanitising) and names folded weights
    'const_fold_opt__N'; the input becomes 'input', the output 'logits', and each compute layer's weight takes the
    TFLite weight tensor's name where it has a scoped one ('model/conv0/Conv2D'), else '<op>_<k>'."""
    import onnx
    m = onnx.load(str(path))
    rename = {m.graph.input[0].name: "input"}
    sig = _signature_output_names(model.session)            # several outputs keep the source's names, found by tensor
    by_tensor = {d["name"]: sig.get(d["index"], d["name"]) for d in model.session.get_output_details()}
    for i, o in enumerate(m.graph.output):
        tensor = o.name[:-2] if o.name.endswith(":0") else o.name
        rename[o.name] = "logits" if len(m.graph.output) == 1 else by_tensor.get(tensor, by_tensor.get(o.name, f"output_{i}"))
    interp = model.session
    tensors = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    tfl = [op for op in interp._get_ops_details() if op["op_name"] in TFLITE_COMPUTE]
    inits = {t.name for t in m.graph.initializer}
    uses: dict[str, int] = {}
    for n in m.graph.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    nodes = [n for n in m.graph.node if n.op_type in ("Conv", "Gemm", "MatMul") and len(n.input) > 1 and n.input[1] in inits]
    if len(nodes) == len(tfl):                            # tf2onnx maps each TFLite compute op to one node
        taken = set()
        for k, (n, op) in enumerate(zip(nodes, tfl)):
            w = tensors.get(op["inputs"][1], "")
            name = w if "/" in w else f"{op['op_name'].lower()}_{k + 1}"
            if uses.get(n.input[1]) == 1 and name not in taken and name not in inits:
                rename[n.input[1]] = name
                taken.add(name)
    for n in m.graph.node:
        n.input[:] = [rename.get(i, i) for i in n.input]
        n.output[:] = [rename.get(o, o) for o in n.output]
    for v in (*m.graph.input, *m.graph.output, *m.graph.value_info, *m.graph.initializer):
        v.name = rename.get(v.name, v.name)
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return rename


FRAMEWORK = TfliteFile()

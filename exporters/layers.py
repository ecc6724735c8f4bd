"""The compute layers of a model in its source's names, and where each one is in an ONNX and a TFLite file.

Mixed precision keeps chosen layers in float; users name them as their model does (`conv0`,
`residual3.body.conv0`, a Keras layer name). The fp32 ONNX of every source carries those names on its
weight initializers (PyTorch: `conv0.weight`; tf2onnx: `.../conv0/Conv2D/ReadVariableOp:0`), so the ONNX
file is the one list of layers. A TFLite file names its tensors after the converter's ops, so its
compute ops are matched to that list by order and weight shape (output channels and weight count),
which holds for both TFLite routes (the Keras converter and onnx2tf).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from edgepack.toolkit.errors import ModelError, OptionError

ONNX_COMPUTE = ("Conv", "Gemm", "MatMul")
TFLITE_COMPUTE = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")
_KERAS_SUFFIX = re.compile(r"(/(Conv2D|MatMul|BiasAdd|kernel|ReadVariableOp|Reshape|depthwise|Cast)(:\d+)?)+$")


@dataclass(frozen=True)
class Layer:
    name: str                  # the source model's layer name
    op: str                    # ONNX op type
    node: str                  # ONNX node name
    out_channels: int
    weight_count: int

    @property
    def signature(self) -> tuple[int, int]:
        return self.out_channels, self.weight_count


def _source_name(weight: str, node: str) -> str:
    name = weight or node
    for suffix in (".weight", "_weight"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    name = re.sub(r":\d+$", "", name)
    name = _KERAS_SUFFIX.sub("", name)
    parts = [p for p in name.split("/") if p]
    return "/".join(parts[1:]) if len(parts) > 1 else (parts[0] if parts else node)


def onnx_layers(path: str | Path) -> list[Layer]:
    """Conv/Gemm/MatMul nodes with a constant weight, in graph order, named after their weights."""
    import onnx
    from onnx import numpy_helper
    m = onnx.load(str(path))
    inits = {t.name: t for t in m.graph.initializer}
    out = []
    for n in m.graph.node:
        if n.op_type not in ONNX_COMPUTE or len(n.input) < 2 or n.input[1] not in inits:
            continue
        w = numpy_helper.to_array(inits[n.input[1]])
        trans_b = next((a.i for a in n.attribute if a.name == "transB"), 0)
        if n.op_type == "Conv":
            oc = w.shape[0]
        elif n.op_type == "Gemm":
            oc = w.shape[0] if trans_b else w.shape[-1]
        else:                                         # MatMul: x @ W, W is (in, out)
            oc = w.shape[-1]
        out.append(Layer(_source_name(n.input[1], n.name), n.op_type, n.name, int(oc), int(w.size)))
    names = [layer.name for layer in out]
    if len(set(names)) != len(names):                 # two nodes share a weight name: fall back to node names
        out = [Layer(f"{layer.name}@{layer.node}" if names.count(layer.name) > 1 else layer.name, layer.op, layer.node,
                     layer.out_channels, layer.weight_count) for layer in out]
    return out


def resolve(layers: list[Layer], wanted: list[str]) -> list[Layer]:
    """The layers named by the user (exact names; a unique suffix such as `conv0` of `stem.conv0` is accepted)."""
    chosen = []
    for w in wanted:
        hits = [layer for layer in layers if layer.name == w] or \
               [layer for layer in layers if layer.name.endswith("." + w) or layer.name.endswith("/" + w)]
        if len(hits) != 1:
            known = ", ".join(layer.name for layer in layers)
            why = "matches several layers" if hits else "is not a compute layer of this model"
            raise OptionError(f"keep-float layer {w!r} {why}; its compute layers: {known}")
        chosen.append(hits[0])
    return chosen


def tflite_compute_ops(data: bytes) -> list[dict]:
    """Compute ops of a .tflite file in execution order: op, output tensor name (the converter's node name),
    output channels and weight count of its filter."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    it = Interpreter(model_content=data, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    tensors = {d["index"]: d for d in it.get_tensor_details()}
    ops = []
    for op in it._get_ops_details():
        if op["op_name"] not in TFLITE_COMPUTE or len(op["inputs"]) < 2:
            continue
        shape = tensors[op["inputs"][1]]["shape"]
        oc = shape[-1] if op["op_name"] == "DEPTHWISE_CONV_2D" else shape[0]
        ops.append({"op": op["op_name"], "tensor": tensors[op["outputs"][0]]["name"], "out_channels": int(oc),
                    "weight_count": int(np.prod(shape))})
    return ops


def match_tflite(layers: list[Layer], ops: list[dict]) -> dict[str, list[str]]:
    """Source layer name -> its TFLite nodes (output tensor names): the k-th op of a weight signature is the k-th
    layer of that signature. A converter may split one layer into several ops of the same weights (onnx2tf gives
    torchvision's mobilenet_v3_small classifier Linear two FULLY_CONNECTED ops): when a signature has more ops than
    layers and one layer, every such op is that layer's. Ops that stay ambiguous are left out (they stay int8); a
    layer asked for float that has no op is an error where it is asked for (`nodes_of`)."""
    by_sig: dict[tuple, list[Layer]] = {}
    for layer in layers:
        by_sig.setdefault(layer.signature, []).append(layer)
    count: dict[tuple, int] = {}
    for op in ops:
        sig = (op["out_channels"], op["weight_count"])
        count[sig] = count.get(sig, 0) + 1
    out: dict[str, list[str]] = {}
    seen: dict[tuple, int] = {}
    for op in ops:
        sig = (op["out_channels"], op["weight_count"])
        owners = by_sig.get(sig, [])
        if len(owners) == 1 and count[sig] > 1:             # one layer, several ops: a converter's split
            out.setdefault(owners[0].name, []).append(op["tensor"])
            continue
        k = seen.get(sig, 0)
        seen[sig] = k + 1
        if k < len(owners) and count[sig] == len(owners):
            out.setdefault(owners[k].name, []).append(op["tensor"])
    return out


def nodes_of(where: dict[str, list[str]], wanted: list[Layer]) -> list[str]:
    """The TFLite nodes of the layers to keep float; one line for a layer the TFLite file has no op for."""
    missing = [layer.name for layer in wanted if not where.get(layer.name)]
    if missing:
        raise ModelError(f"layer(s) {', '.join(missing)} of the source match no compute op of the TFLite file one to "
                         "one (the converter fused, split or reordered them); cannot keep them float there")
    return [n for layer in wanted for n in where[layer.name]]


# ---------------------------------------------------------------- the output tail (a detector's decode head)
ONNX_COMPUTE = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def onnx_tail(path: str | Path, with_head: bool = True) -> list[str]:
    """Names of the ONNX nodes after the last compute layers: walking back from every graph output through nodes that
    are not convolutions or matrix products (concatenations, reshapes, sigmoid, the grid arithmetic of a decode
    head), stopping at the first compute node on each path; `with_head`: those last compute nodes too (a detector's
    box and class convolutions)."""
    import onnx
    g = onnx.load(str(path), load_external_data=False).graph
    producer = {out: n for n in g.node for out in n.output}
    tail, stack, seen = [], [o.name for o in g.output], set()
    while stack:
        n = producer.get(stack.pop())
        if n is None or id(n) in seen:
            continue
        seen.add(id(n))
        if n.op_type in ONNX_COMPUTE:
            if with_head:
                tail.append(n.name)
            continue
        tail.append(n.name)
        if n.op_type != "Shape":                   # a Shape reads only its input's size, not its values
            stack.extend(i for i in n.input if i)
    return tail


def tflite_tail(data: bytes, with_head: bool = True) -> list[str]:
    """The same tail in a .tflite file: output tensor names (the converter's node names) of the ops after the last
    CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED on every path to an output (QUANTIZE/DEQUANTIZE left out), and with
    `with_head` those last compute ops too."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    it = Interpreter(model_content=data, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    names = {d["index"]: d["name"] for d in it.get_tensor_details()}
    ops = it._get_ops_details()
    producer = {t: op for op in ops for t in op["outputs"]}
    tail, stack, seen = [], [d["index"] for d in it.get_output_details()], set()
    while stack:
        op = producer.get(stack.pop())
        if op is None or op["index"] in seen:
            continue
        seen.add(op["index"])
        if op["op_name"] in TFLITE_COMPUTE:
            if with_head:
                tail.append(names[op["outputs"][0]])
            continue
        if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE"):
            tail.append(names[op["outputs"][0]])
        stack.extend(i for i in op["inputs"] if i >= 0)
    return tail

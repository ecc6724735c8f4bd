"""Every .onnx edgepack writes is made portable by one lossless pass, whichever framework or quantizer wrote it:

- no exporters' debug metadata (torch's dynamo exporter tags every node with module paths and FX nodes, about 300
  bytes each, and the graph with torch.export's signature: a fifth of an int8 ResNet-8's file);
- no opset imports that no node uses (ORT's quantizer declares seven extra domains);
- the lowest IR version its opsets and types allow, never raised: torch writes IR 10, which ONNX Runtime before 1.18
  refuses ("Unsupported model IR version: 10, max supported IR version: 9"), although an opset-18 graph needs IR 8.
Runtimes read none of what is dropped; names, shapes and weights stay.
"""
from __future__ import annotations

# element types by the IR version that introduced them (onnx.TensorProto.DataType): FLOAT8* 17-20 in IR 9,
# UINT4/INT4 21-22 in IR 10, FLOAT4E2M1 23 in IR 11; anything newer keeps the file's own IR version
_TYPE_IR = {**{t: 9 for t in (17, 18, 19, 20)}, 21: 10, 22: 10, 23: 11}


def _graphs(graph):
    yield graph
    for n in graph.node:
        for a in n.attribute:                            # If/Loop/Scan bodies
            for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                yield from _graphs(g)


def _types(graph):
    for t in graph.initializer:
        yield t.data_type
    for v in list(graph.input) + list(graph.output) + list(graph.value_info):
        if v.type.HasField("tensor_type"):
            yield v.type.tensor_type.elem_type
    for n in graph.node:
        for a in n.attribute:
            if a.HasField("t"):
                yield a.t.data_type
            if a.name in ("to", "output_dtype", "dtype") and a.type == a.INT:
                yield a.i


def make_portable(m) -> dict:
    """Apply the pass to a ModelProto in place; returns what changed (for the manifest)."""
    import onnx
    graphs = list(_graphs(m.graph))
    debug = 0
    for g in graphs:
        debug += bool(len(g.metadata_props))
        del g.metadata_props[:]
        for n in g.node:
            debug += bool(len(n.metadata_props))
            del n.metadata_props[:]
    done = {"debug_metadata_removed": debug}
    if len(m.functions):                                 # local functions bring their own domains and IR needs
        return done
    used = {n.domain for g in graphs for n in g.node} | {""}
    unused = [o.domain for o in m.opset_import if o.domain not in used]
    if unused:
        kept = [o for o in m.opset_import if o.domain in used]
        del m.opset_import[:]
        m.opset_import.extend(kept)
        done["opsets_removed"] = unused
    if len(m.graph.sparse_initializer) or len(m.training_info):
        return done
    need = onnx.helper.find_min_ir_version_for(list(m.opset_import), ignore_unknown=True)
    for t in {t for g in graphs for t in _types(g)}:
        need = max(need, _TYPE_IR.get(t, m.ir_version if t > max(_TYPE_IR) else 0))
    if need < m.ir_version:
        done["ir_version"] = {"from": m.ir_version, "to": need}
        m.ir_version = need
    return done

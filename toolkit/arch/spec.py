"""A typed, framework-free description of a network, decoded once and built by each backend.

Layers are small frozen dataclasses; `ArchSpec.walk()` validates the list and infers every
tensor shape (H, W, C), so both builders and the parameter counter share one decoding.
Padding follows TensorFlow's "same"/"valid" rules exactly (the torch builder pads
asymmetrically where TF does), so a PyTorch model and its Keras twin compute one function.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Iterator, Union

from edgepack.toolkit.errors import ModelError

ACTIVATIONS = (None, "relu", "relu6")


Size = Union[int, tuple]      # a kernel or stride: one int for both axes, or (height, width)


def pair(v) -> tuple[int, int]:
    """(height, width) of a kernel or stride given as one int or a pair."""
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


@dataclass(frozen=True)
class Conv:
    filters: int
    kernel: Size = 3
    stride: Size = 1
    padding: str = "same"
    groups: int = 1
    bias: bool = True
    activation: str | None = None


@dataclass(frozen=True)
class DepthwiseConv:
    kernel: Size = 3
    stride: Size = 1
    padding: str = "same"
    multiplier: int = 1
    bias: bool = True
    activation: str | None = None


@dataclass(frozen=True)
class SeparableConv:
    """Depthwise k x k then pointwise 1x1 (two layers in both frameworks)."""
    filters: int
    kernel: Size = 3
    stride: Size = 1
    padding: str = "same"
    bias: bool = True
    activation: str | None = None


@dataclass(frozen=True)
class BatchNorm:
    eps: float = 1e-3


@dataclass(frozen=True)
class Activation:
    kind: str = "relu"


@dataclass(frozen=True)
class MaxPool:
    size: int = 2
    stride: int | None = None


@dataclass(frozen=True)
class AvgPool:
    size: int = 2
    stride: int | None = None


@dataclass(frozen=True)
class GlobalAvgPool:
    pass


@dataclass(frozen=True)
class Dropout:
    rate: float = 0.5


@dataclass(frozen=True)
class Flatten:
    pass


@dataclass(frozen=True)
class Dense:
    units: int
    bias: bool = True
    activation: str | None = None


@dataclass(frozen=True)
class Residual:
    """out = activation(body(x) + shortcut(x)); an empty shortcut is the identity."""
    body: tuple = ()
    shortcut: tuple = ()
    activation: str | None = "relu"


@dataclass(frozen=True)
class GridOutput:
    """A detection head's output: the (H, W, K) map of the last convolution as (H * W, K), cells in row-major order
    (y, then x), one row of K values per cell; the same layout from both frameworks (PyTorch permutes its NCHW map
    first). K = 5 + classes: box centre offsets and sizes, objectness, class logits (`edgepack.toolkit.tasks.detection`)."""


Layer = Union[Conv, DepthwiseConv, SeparableConv, BatchNorm, Activation, MaxPool, AvgPool, GlobalAvgPool,
              Dropout, Flatten, Dense, Residual, GridOutput]
LAYER_TYPES = {cls.__name__: cls for cls in Layer.__args__}  # type: ignore[attr-defined]


def conv_out(size: int, kernel: int, stride: int, padding: str) -> int:
    if padding == "same":
        return math.ceil(size / stride)
    if padding == "valid":
        return (size - kernel) // stride + 1
    raise ModelError(f"padding must be 'same' or 'valid', got {padding!r}")


def _conv_hw(layer, h: int, w: int) -> tuple[int, int]:
    (kh, kw), (sh, sw) = pair(layer.kernel), pair(layer.stride)
    return conv_out(h, kh, sh, layer.padding), conv_out(w, kw, sw, layer.padding)


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding (before, after) for one spatial axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


@dataclass(frozen=True)
class Node:
    """One decoded layer: its stable name, spec, input and output shape (H, W, C) or (F,)."""
    name: str
    layer: Layer
    in_shape: tuple
    out_shape: tuple


@dataclass(frozen=True)
class ArchSpec:
    name: str
    input_shape: tuple[int, int, int]         # (H, W, C)
    num_classes: int
    layers: tuple
    description: str = ""
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    # ------------------------------------------------------------ decoding
    def walk(self) -> list[Node]:
        """Validate and name every layer, inferring shapes. Residual bodies are nested nodes."""
        nodes: list[Node] = []
        self._walk(self.layers, tuple(self.input_shape), "", nodes)
        last = nodes[-1].out_shape if nodes else self.input_shape
        if self.output_kind() == "grid":
            if last[1] != 5 + self.num_classes:
                raise ModelError(f"architecture {self.name!r}: its grid head has {last[1]} values per cell, expected "
                                 f"5 + {self.num_classes} classes")
        elif last != (self.num_classes,):
            raise ModelError(f"architecture {self.name!r} ends in shape {last}, expected ({self.num_classes},)")
        return nodes

    def output_shape(self) -> tuple:
        """One sample's output shape: (classes,), (values,) of a reconstruction, or (cells, 5 + classes)."""
        return self.walk()[-1].out_shape if self.layers else tuple(self.input_shape)

    def output_kind(self) -> str:
        """What the output is: "grid" (a detection head), "reconstruction" (the input's values), "classes"."""
        if self.layers and isinstance(self.layers[-1], GridOutput):
            return "grid"
        h, w, c = self.input_shape
        return "reconstruction" if self.num_classes == h * w * c else "classes"

    def _walk(self, layers, shape, prefix, nodes) -> tuple:
        for i, layer in enumerate(layers):
            name = f"{prefix}{type(layer).__name__.lower()}{i}"
            out = self._out_shape(layer, shape, name, nodes)
            nodes.append(Node(name, layer, shape, out))
            shape = out
        return shape

    def _out_shape(self, layer, shape, name, nodes) -> tuple:
        spatial = len(shape) == 3
        kind = type(layer).__name__
        if kind not in LAYER_TYPES:
            raise ModelError(f"{name}: unknown layer type {kind}; known: {', '.join(LAYER_TYPES)}")
        if isinstance(layer, (Conv, DepthwiseConv, SeparableConv, MaxPool, AvgPool, GlobalAvgPool)) and not spatial:
            raise ModelError(f"{name}: {kind} needs a spatial (H, W, C) input, got {shape}")
        if getattr(layer, "activation", None) not in ACTIVATIONS or (isinstance(layer, Activation) and layer.kind not in ACTIVATIONS[1:]):
            raise ModelError(f"{name}: unknown activation; expected one of {ACTIVATIONS[1:]}")
        if isinstance(layer, Conv):
            h, w, c = shape
            if c % layer.groups or layer.filters % layer.groups:
                raise ModelError(f"{name}: groups={layer.groups} must divide in ({c}) and out ({layer.filters}) channels")
            return (*_conv_hw(layer, h, w), layer.filters)
        if isinstance(layer, (DepthwiseConv, SeparableConv)):
            h, w, c = shape
            cout = c * layer.multiplier if isinstance(layer, DepthwiseConv) else layer.filters
            return (*_conv_hw(layer, h, w), cout)
        if isinstance(layer, (MaxPool, AvgPool)):
            h, w, c = shape
            s = layer.stride or layer.size
            return ((h - layer.size) // s + 1, (w - layer.size) // s + 1, c)
        if isinstance(layer, GlobalAvgPool):
            return (shape[2],)
        if isinstance(layer, Flatten):
            return (math.prod(shape),)
        if isinstance(layer, Dense):
            if spatial:
                raise ModelError(f"{name}: Dense needs a flat input; add Flatten or GlobalAvgPool first")
            return (layer.units,)
        if isinstance(layer, Residual):
            body = self._walk(layer.body, shape, name + ".body.", nodes)
            short = self._walk(layer.shortcut, shape, name + ".shortcut.", nodes) if layer.shortcut else shape
            if body != short:
                raise ModelError(f"{name}: residual branches disagree: body {body} vs shortcut {short}")
            return body
        if isinstance(layer, GridOutput):
            if not spatial:
                raise ModelError(f"{name}: GridOutput needs a spatial (H, W, K) input, got {shape}")
            return (shape[0] * shape[1], shape[2])
        if isinstance(layer, Dropout) and not 0 <= layer.rate < 1:
            raise ModelError(f"{name}: dropout rate must be in [0, 1)")
        return shape  # BatchNorm, Activation, Dropout

    # ------------------------------------------------------------ counting
    def counts(self) -> dict:
        """What the description costs: parameters ('trainable', 'non_trainable' = BatchNorm moving statistics,
        'total') and 'macs' per image (hence not `count_params`: it counts more than parameters)."""
        trainable = nontrain = macs = 0
        for n in self.walk():
            layer, (cin_shape, out) = n.layer, (n.in_shape, n.out_shape)
            if isinstance(layer, Conv):
                cin = cin_shape[2]
                k = math.prod(pair(layer.kernel)) * (cin // layer.groups) * layer.filters
                trainable += k + (layer.filters if layer.bias else 0)
                macs += k * out[0] * out[1]
            elif isinstance(layer, DepthwiseConv):
                k = math.prod(pair(layer.kernel)) * out[2]
                trainable += k + (out[2] if layer.bias else 0)
                macs += k * out[0] * out[1]
            elif isinstance(layer, SeparableConv):
                cin = cin_shape[2]
                dw, pw = math.prod(pair(layer.kernel)) * cin, cin * layer.filters
                trainable += dw + pw + (layer.filters if layer.bias else 0)
                macs += (dw + pw) * out[0] * out[1]
            elif isinstance(layer, BatchNorm):
                c = cin_shape[-1]
                trainable += 2 * c
                nontrain += 2 * c
            elif isinstance(layer, Dense):
                trainable += cin_shape[0] * layer.units + (layer.units if layer.bias else 0)
                macs += cin_shape[0] * layer.units
        return {"trainable": trainable, "non_trainable": nontrain, "total": trainable + nontrain, "macs": macs}

    # ------------------------------------------------------------ plain-dict round trip
    def to_dict(self) -> dict:
        return {"name": self.name, "input_shape": list(self.input_shape), "num_classes": self.num_classes,
                "description": self.description, "layers": [_layer_to_dict(l) for l in self.layers]}

    @classmethod
    def from_dict(cls, d: dict) -> "ArchSpec":
        try:
            return cls(d["name"], tuple(d["input_shape"]), int(d["num_classes"]),
                       tuple(_layer_from_dict(l) for l in d["layers"]), d.get("description", ""))
        except KeyError as e:
            raise ModelError(f"architecture description is missing field {e}") from None


def _layer_to_dict(layer) -> dict:
    d = {"type": type(layer).__name__}
    for f in fields(layer):
        v = getattr(layer, f.name)
        d[f.name] = [_layer_to_dict(x) for x in v] if isinstance(layer, Residual) and f.name in ("body", "shortcut") else v
    return d


def _layer_from_dict(d: dict):
    d = dict(d)
    kind = d.pop("type", None)
    cls = LAYER_TYPES.get(kind)
    if cls is None:
        raise ModelError(f"unknown layer type {kind!r}; known: {', '.join(LAYER_TYPES)}")
    for key in ("kernel", "stride"):                  # JSON keeps a (height, width) pair as a list
        if isinstance(d.get(key), list):
            d[key] = tuple(d[key])
    if cls is Residual:
        d["body"] = tuple(_layer_from_dict(x) for x in d.get("body", ()))
        d["shortcut"] = tuple(_layer_from_dict(x) for x in d.get("shortcut", ()))
    try:
        return cls(**d)
    except TypeError as e:
        raise ModelError(f"layer {kind}: {e}") from None


def iter_weighted(nodes: list[Node]) -> Iterator[Node]:
    for n in nodes:
        if isinstance(n.layer, (Conv, DepthwiseConv, SeparableConv, BatchNorm, Dense)):
            yield n


__all__ = ["ArchSpec", "Node", "Conv", "DepthwiseConv", "SeparableConv", "BatchNorm", "Activation", "MaxPool",
           "AvgPool", "GlobalAvgPool", "Dropout", "Flatten", "Dense", "Residual", "GridOutput", "same_pads", "pair", "asdict"]

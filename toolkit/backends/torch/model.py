"""Build, save, load and run PyTorch models from an `ArchSpec` (state_dict names = spec node names)."""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgepack.toolkit.arch import spec as S
from edgepack.toolkit.errors import ModelError, first_line

NAME = "torch"
LAYOUT = "NCHW"
SUFFIXES = (".pt", ".pth")


def _act(kind):
    return {None: None, "relu": F.relu, "relu6": F.relu6}[kind]


class ConvSame(nn.Conv2d):
    """nn.Conv2d with TensorFlow 'same' padding (explicit F.pad only when it is asymmetric) and an activation."""

    def __init__(self, *args, pads=(0, 0, 0, 0), activation=None, **kw):
        super().__init__(*args, **kw)
        self.pads = tuple(pads)
        self.activation = activation

    def forward(self, x):
        if any(self.pads):
            x = F.pad(x, self.pads)
        x = super().forward(x)
        f = _act(self.activation)
        return f(x) if f else x


class DenseAct(nn.Linear):
    def __init__(self, *args, activation=None, **kw):
        super().__init__(*args, **kw)
        self.activation = activation

    def forward(self, x):
        x = super().forward(x)
        f = _act(self.activation)
        return f(x) if f else x


class Act(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind

    def forward(self, x):
        return _act(self.kind)(x)


class GlobalAvgPool(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))


class GridOutput(nn.Module):
    """(N, K, H, W) -> (N, H * W, K), cells row-major: the layout Keras' Reshape of its NHWC map gives."""
    def forward(self, x):
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2] * x.shape[3], x.shape[1])


class ResidualBlock(nn.Module):
    def __init__(self, body: nn.Module, shortcut: nn.Module, activation):
        super().__init__()
        self.body = body
        self.shortcut = shortcut
        self.activation = activation

    def forward(self, x):
        y = self.body(x) + self.shortcut(x)
        f = _act(self.activation)
        return f(y) if f else y


def _conv(cin, layer_out, kernel, stride, padding, in_hw, groups, bias, activation):
    kw = dict(kernel_size=kernel, stride=stride, groups=groups, bias=bias, activation=activation)
    if padding == "valid":
        return ConvSame(cin, layer_out, padding=0, **kw)
    (kh, kw_), (sh, sw) = S.pair(kernel), S.pair(stride)
    (pt, pb), (pl, pr) = S.same_pads(in_hw[0], kh, sh), S.same_pads(in_hw[1], kw_, sw)
    if pt == pb and pl == pr:
        return ConvSame(cin, layer_out, padding=(pt, pl), **kw)
    return ConvSame(cin, layer_out, padding=0, pads=(pl, pr, pt, pb), **kw)


def _module(node: S.Node, children: dict) -> nn.Module:
    L, shp = node.layer, node.in_shape
    if isinstance(L, S.Conv):
        return _conv(shp[2], L.filters, L.kernel, L.stride, L.padding, shp[:2], L.groups, L.bias, L.activation)
    if isinstance(L, S.DepthwiseConv):
        return _conv(shp[2], shp[2] * L.multiplier, L.kernel, L.stride, L.padding, shp[:2], shp[2], L.bias, L.activation)
    if isinstance(L, S.SeparableConv):
        dw = _conv(shp[2], shp[2], L.kernel, L.stride, L.padding, shp[:2], shp[2], False, None)
        pw = ConvSame(shp[2], L.filters, kernel_size=1, bias=L.bias, activation=L.activation)
        return nn.Sequential(OrderedDict(dw=dw, pw=pw))
    if isinstance(L, S.BatchNorm):
        return (nn.BatchNorm2d if len(shp) == 3 else nn.BatchNorm1d)(shp[-1], eps=L.eps, momentum=0.1)
    if isinstance(L, S.Activation):
        return Act(L.kind)
    if isinstance(L, S.MaxPool):
        return nn.MaxPool2d(L.size, L.stride or L.size)
    if isinstance(L, S.AvgPool):
        return nn.AvgPool2d(L.size, L.stride or L.size)
    if isinstance(L, S.GlobalAvgPool):
        return GlobalAvgPool()
    if isinstance(L, S.Dropout):
        return nn.Dropout(L.rate)
    if isinstance(L, S.Flatten):
        return nn.Flatten()
    if isinstance(L, S.GridOutput):
        return GridOutput()
    if isinstance(L, S.Dense):
        return DenseAct(shp[0], L.units, bias=L.bias, activation=L.activation)
    if isinstance(L, S.Residual):
        body = nn.Sequential(OrderedDict((k.rsplit(".", 1)[-1], v) for k, v in children.items() if k.startswith(node.name + ".body.")))
        sc_items = [(k.rsplit(".", 1)[-1], v) for k, v in children.items() if k.startswith(node.name + ".shortcut.")]
        shortcut = nn.Sequential(OrderedDict(sc_items)) if sc_items else nn.Identity()
        return ResidualBlock(body, shortcut, L.activation)
    raise ModelError(f"{node.name}: no PyTorch builder for {type(L).__name__}")


def build(spec: S.ArchSpec, seed: int | None = 0) -> nn.Module:
    """Build the PyTorch network for `spec` (deterministic init when `seed` is given)."""
    if seed is not None:
        torch.manual_seed(seed)
    built: dict[str, nn.Module] = OrderedDict()
    for node in spec.walk():                      # children come before their Residual parent
        built[node.name] = _module(node, built)
    top = OrderedDict((k, v) for k, v in built.items() if "." not in k)
    model = nn.Sequential(top)
    model.edgepack_spec = spec                    # travels with the model for export/records
    return model


def count_params(model: nn.Module) -> dict:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    buffers = sum(b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked"))
    nonzero = sum(int((p != 0).sum()) for p in model.parameters()) + sum(
        int((b != 0).sum()) for n, b in model.named_buffers() if not n.endswith("num_batches_tracked"))
    return {"trainable": trainable, "non_trainable": buffers, "total": trainable + buffers, "nonzero": nonzero}


def to_input(x: np.ndarray) -> torch.Tensor:
    """NCHW float32 numpy -> channels_last tensor (about 2x faster conv on CPU)."""
    t = torch.from_numpy(np.ascontiguousarray(x))
    return t.contiguous(memory_format=torch.channels_last) if t.ndim == 4 else t


def _named(out) -> dict:
    """A module's output as name -> tensor: one tensor is 'logits' (its ONNX name), a tuple or list 'output_<i>', a
    dict its keys."""
    if isinstance(out, torch.Tensor):
        return {"logits": out}
    if isinstance(out, dict):
        return {str(k): v for k, v in out.items()}
    return {f"output_{i}": v for i, v in enumerate(out)}


def output_names(model: nn.Module, example: torch.Tensor) -> list[str]:
    """The names `predict_outputs` and the ONNX export give a module's outputs, from one forward pass."""
    with torch.no_grad():
        return list(_named(model.eval()(example)))


@torch.no_grad()
def predict_outputs(model: nn.Module, x: np.ndarray, batch_size: int = 500) -> dict:
    """Every output by name for float32 NCHW input (a module returning a tuple or dict has several)."""
    model.eval()
    parts: dict[str, list] = {}
    for i in range(0, len(x), batch_size):
        for name, t in _named(model(to_input(x[i:i + batch_size]))).items():
            parts.setdefault(name, []).append(t.float().numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Logits for float32 NCHW input."""
    model.eval()
    outs = [model(to_input(x[i:i + batch_size])).float().numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(outs) if outs else np.zeros((0,), np.float32)


def preferred_suffix(model) -> str:
    return ".pt"


def save(model: nn.Module, path: str | Path) -> Path:
    """state_dict only (loaded back with weights_only=True); the architecture lives in the record."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(model.state_dict(), tmp)
    except (OSError, RuntimeError) as e:            # a full disk comes back from torch's zip writer as RuntimeError
        tmp.unlink(missing_ok=True)
        from edgepack.toolkit.errors import write_error
        raise write_error(path, e) from None
    tmp.replace(path)
    return path


def _is_torchscript(path: Path) -> bool:
    import zipfile
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _why_unreadable(path: Path, e: Exception) -> str:
    """What torch.load's failure means, in a few words: torch's own message leads with weights_only advice that
    does not apply to a file that is simply not a checkpoint."""
    with open(path, "rb") as f:
        head = f.read(4)
    what = ("a damaged or truncated torch.save archive" if head.startswith(b"PK") else
            "a damaged or truncated pickle" if head[:1] == b"\x80" else "neither a torch.save archive nor a pickle")
    text = str(e).strip()
    if "WeightsUnpickler error:" in text:               # the cause sits after torch's weights_only preamble
        text = text.split("WeightsUnpickler error:", 1)[1].strip()
    return f"{what}: {text.splitlines()[0].split('. ')[0][:100]}" if text else what


def load(path: str | Path, spec: S.ArchSpec | None = None, model: nn.Module | None = None) -> nn.Module:
    """Load a state_dict into `model`, or into a fresh build of `spec`."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint not found")
    if _is_torchscript(path):                 # TorchScript runs its own code, no arbitrary pickle: safe to load
        try:
            return torch.jit.load(str(path), map_location="cpu")
        except Exception as e:
            raise ModelError(f"{path}: not a loadable TorchScript file ({first_line(e)})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        if "Unsupported global" in str(e):                 # a pickled object graph, not a state_dict
            raise ModelError(f"{path}: a full pickled model; loading it would run code from the file. Save it as TorchScript "
                             "(torch.jit.script(model).save(...)), or as a state_dict beside an edgepack record, or export it "
                             "to ONNX, and use that") from None
        raise ModelError(f"{path}: not a readable PyTorch checkpoint ({_why_unreadable(path, e)})") from None
    if isinstance(state, nn.Module):  # pragma: no cover - weights_only forbids it
        return state
    if model is None:
        if spec is None:
            raise ModelError(f"{path}: a state_dict needs its architecture: keep the record {path.name}.json edgepack wrote beside it, "
                             "or build the model in Python and pass it to exporters.export_model / benchmarks.benchmark")
        model = build(spec, seed=None)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ModelError(f"{path}: weights do not fit the architecture ({first_line(e, 160)})") from None
    return model

"""Pilot (PyTorch only, not a product feature): does structural reparameterization buy ResNet-8 accuracy per
training minute on this CPU? Every 3x3 conv + BN is trained as three branches, 3x3 conv + BN, 1x1 conv + BN and (same
channels, stride 1) an identity BN (RepVGG, Ding et al. 2021), and folded back into one 3x3 conv with bias after
training, so the deployed network is the plain ResNet-8. Same one-cycle SGD recipe as examples/cifar10_resnet8.toml,
under a time budget, so both arms get the same minutes.

    python -m tools.sweeps.cifar10_resnet8_reparam {base,rep} MINUTES
Prints one JSON line: epochs run, test accuracy (all 10,000 images, fp32 PyTorch), and for `rep` the folded
network's accuracy and its largest output difference from the branched one.
"""
from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

from edgepack.runtimes.machine import cpu_label
from edgepack.toolkit.arch.zoo import get_arch
from edgepack.toolkit.backends.torch.model import ConvSame, build, to_input
from edgepack.toolkit.backends.torch.train import evaluate, fit
from edgepack.toolkit.data import load_dataset
from edgepack.toolkit.train import TrainConfig

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10-jpeg.tar.gz"


def _fuse(w: torch.Tensor, bn: nn.BatchNorm2d, bias: torch.Tensor | None = None):
    """BN(conv_w(x) + bias) as one conv: (weight, bias)."""
    t = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    b = bias if bias is not None else torch.zeros_like(bn.running_mean)
    return w * t.reshape(-1, 1, 1, 1), bn.bias + (b - bn.running_mean) * t


class RepConv(nn.Module):
    def __init__(self, conv: ConvSame, bn: nn.BatchNorm2d):
        super().__init__()
        cin, cout, self.stride = conv.in_channels, conv.out_channels, conv.stride[0]
        self.conv, self.bn = conv, bn
        self.conv1 = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout, eps=bn.eps)
        self.bn_id = nn.BatchNorm2d(cout, eps=bn.eps) if cin == cout and self.stride == 1 else None

    def forward(self, x):
        # TF 'same' padding at stride 2 pads bottom/right only: the 3x3 window of output i is centred on input 2i+1
        centre = x[:, :, 1::2, 1::2] if self.stride == 2 else x
        y = self.bn(self.conv(x)) + self.bn1(self.conv1(centre))
        return y + self.bn_id(x) if self.bn_id is not None else y

    def fold(self) -> ConvSame:
        w3 = self.conv.weight
        W, B = _fuse(w3, self.bn, self.conv.bias)
        w1 = torch.zeros_like(w3)
        w1[:, :, 1, 1] = self.conv1.weight[:, :, 0, 0]
        W1, B1 = _fuse(w1, self.bn1)
        W, B = W + W1, B + B1
        if self.bn_id is not None:
            wid = torch.zeros_like(w3)
            ch = torch.arange(w3.shape[0])
            wid[ch, ch, 1, 1] = 1.0
            Wi, Bi = _fuse(wid, self.bn_id)
            W, B = W + Wi, B + Bi
        conv = copy.deepcopy(self.conv)
        conv.weight = nn.Parameter(W.detach().contiguous())
        conv.bias = nn.Parameter(B.detach())
        return conv


def _containers(model: nn.Module):
    return [model] + [m.body for m in model.modules() if hasattr(m, "body")]


def branch(model: nn.Module) -> nn.Module:
    for seq in _containers(model):
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = seq._modules[a], seq._modules[b]
            if isinstance(conv, ConvSame) and conv.kernel_size == (3, 3) and isinstance(bn, nn.BatchNorm2d):
                seq._modules[a], seq._modules[b] = RepConv(conv, bn), nn.Identity()
    return model


def fold(model: nn.Module) -> nn.Module:
    model = copy.deepcopy(model).eval()
    for seq in _containers(model):
        for name, mod in list(seq._modules.items()):
            if isinstance(mod, RepConv):
                seq._modules[name] = mod.fold()
    return model


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in ("base", "rep"):
        print("usage: python -m tools.sweeps.cifar10_resnet8_reparam {base,rep} MINUTES", file=sys.stderr)
        return 2
    mode, minutes = argv[0], float(argv[1])
    torch.set_num_threads(2)
    ds = load_dataset("cifar10", DATA, allow_download=False, quiet=True)
    model = build(get_arch("resnet8"))
    if mode == "rep":
        model = branch(model)
    cfg = TrainConfig(epochs=300, time_budget=minutes, batch_size=128, optimizer="sgd", lr=0.1, weight_decay=5e-5,
                      schedule="onecycle", augment=True, val_fraction=0.0)
    t = time.perf_counter()
    hist = fit(model, ds, cfg, verbose=False)
    res = {"mode": mode, "cpu": cpu_label(), "budget_min": minutes, "epochs": len(hist.epochs),
           "train_min": round((time.perf_counter() - t) / 60, 1), "test_acc": evaluate(model.eval(), ds)[1],
           "epoch_s": [round(r["seconds"], 1) for r in hist.epochs]}
    if mode == "rep":
        plain = fold(model)
        x = to_input(ds.normalize(ds.x_test[:256], "NCHW"))
        with torch.no_grad():
            res["fold_max_abs_diff"] = float((model(x) - plain(x)).abs().max())
        res["folded_test_acc"] = evaluate(plain, ds)[1]
        res["folded_parameters"] = sum(p.numel() for p in plain.parameters())
    print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

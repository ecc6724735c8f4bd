"""GPU hyper-parameter sweep for the cifar10_torch recipe: mirrors edgepack's training loop (toolkit's architectures
and lr_at schedules, crop+flip, the seeded 45k/5k split, the KD loss) on GPU tensors so a plan of many runs takes minutes.
Used only to rank settings; see benchmarks/results/cifar10_torch/SWEEP.md.

    CIFAR10_TARBALL=../shared/data/cifar10-jpeg.tar.gz python tools/sweeps/cifar10_torch_gpu.py PLAN.py OUT.json
"""
import json, math, os, sys, time
import numpy as np, torch, torch.nn.functional as F
sys.path.insert(0, ".")
from edgepack.toolkit.arch import get_arch
from edgepack.toolkit.backends.torch.model import build
from edgepack.toolkit.data import load_dataset
from edgepack.toolkit.train import TrainConfig, lr_at

dev = "cuda"
ds = load_dataset("cifar10", os.environ.get("CIFAR10_TARBALL", "../shared/data/cifar10-jpeg.tar.gz"))
tr, va = ds.split(0.1, 0)
mean = torch.tensor(ds.mean, device=dev).view(1, 3, 1, 1); std = torch.tensor(ds.std, device=dev).view(1, 3, 1, 1)
Xtr = torch.from_numpy(ds.x_train[tr]).to(dev).permute(0, 3, 1, 2).float().div(255); Ytr = torch.from_numpy(ds.y_train[tr]).to(dev)
Xte = torch.from_numpy(ds.x_test).to(dev).permute(0, 3, 1, 2).float().div(255); Yte = torch.from_numpy(ds.y_test).to(dev)
norm = lambda x: (x - mean) / std

def aug(x, g):
    n = x.shape[0]; p = F.pad(x, (4, 4, 4, 4))
    dy = torch.randint(0, 9, (n,), device=dev, generator=g); dx = torch.randint(0, 9, (n,), device=dev, generator=g)
    ar = torch.arange(32, device=dev)
    rows = (dy[:, None] + ar)[:, :, None].expand(n, 32, 32); cols = (dx[:, None] + ar)[:, None, :].expand(n, 32, 32)
    out = p[torch.arange(n, device=dev)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    flip = torch.rand(n, device=dev, generator=g) < 0.5
    out[flip] = out[flip].flip(3)
    return out

@torch.no_grad()
def acc(m, X, Y):
    m.eval(); c = 0
    for i in range(0, len(Y), 2000):
        c += (m(norm(X[i:i+2000])).argmax(1) == Y[i:i+2000]).sum().item()
    return c / len(Y)

def train(arch, epochs, opt="sgd", lr=0.05, wd=5e-4, sched="onecycle", seed=0, teacher=None, alpha=0.8, T=2.0, bs=128, model=None):
    torch.manual_seed(seed); g = torch.Generator(device=dev); g.manual_seed(seed)
    m = model if model is not None else build(get_arch(arch)).to(dev)
    cfg = TrainConfig(epochs=epochs, lr=lr, schedule=sched)
    ps = [p for p in m.parameters() if p.requires_grad]
    o = torch.optim.Adam(ps, lr=lr, weight_decay=wd) if opt == "adam" else torch.optim.SGD(ps, lr=lr, momentum=0.9, weight_decay=wd, nesterov=True)
    steps_per = math.ceil(len(Ytr) / bs); total = epochs * steps_per; k = 0; curve = []
    for ep in range(epochs):
        m.train(); perm = torch.randperm(len(Ytr), device=dev, generator=g)
        for i in range(steps_per):
            idx = perm[i*bs:(i+1)*bs]; x = norm(aug(Xtr[idx], g)); y = Ytr[idx]
            for gr in o.param_groups: gr["lr"] = lr_at(cfg, k, total)
            lo = m(x)
            if teacher is not None:
                with torch.no_grad(): t = teacher(x)
                loss = alpha*T*T*F.kl_div(F.log_softmax(lo/T, 1), F.log_softmax(t/T, 1), log_target=True, reduction="batchmean") + (1-alpha)*F.cross_entropy(lo, y)
            else:
                loss = F.cross_entropy(lo, y)
            o.zero_grad(); loss.backward(); o.step(); k += 1
        curve.append(round(acc(m, Xte, Yte), 4))
    return m, curve

if __name__ == "__main__":
    res = {}
    def rec(name, curve):
        res[name] = curve; print(name, curve, flush=True)
        with open(sys.argv[2] + ".txt", "a") as f: f.write(f"{name} {curve}\n")
    exec(open(sys.argv[1]).read())
    json.dump(res, open(sys.argv[2], "w"), indent=1)

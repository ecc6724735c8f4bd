import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import MNIST_DIR
from edgepack.toolkit.errors import OptionError
from edgepack.toolkit.train import EarlyStopper, TrainConfig, lr_at


def test_schedules():
    cfg = TrainConfig(lr=0.1, schedule="cosine")
    assert lr_at(cfg, 0, 100) == pytest.approx(0.1) and lr_at(cfg, 100, 100) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(cfg, 50, 100) == pytest.approx(0.05)
    oc = TrainConfig(lr=0.1, schedule="onecycle")
    lrs = [lr_at(oc, s, 100) for s in range(101)]
    assert lrs[0] == pytest.approx(0.1 / 25) and max(lrs) == pytest.approx(0.1) and lrs[-1] < 1e-4
    assert int(np.argmax(lrs)) == 30
    assert lr_at(TrainConfig(lr=0.1), 70, 100) == 0.1


def test_config_validation():
    with pytest.raises(OptionError, match="optimizer"):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(OptionError, match="unknown training option"):
        TrainConfig.from_dict({"epochs": 1, "learning_rate": 0.1})
    with pytest.raises(OptionError, match=r"\[0, 1\)"):
        TrainConfig(val_fraction=1.0)


def test_early_stopper():
    s = EarlyStopper(patience=2)
    assert s.update(1.0, 1) and s.update(0.5, 2)
    assert not s.update(0.6, 3) and not s.stop
    assert not s.update(0.7, 4) and s.stop and s.best_epoch == 2
    assert not EarlyStopper(patience=0).stop


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_train_writes_checkpoint_metrics_and_history(framework, mnist_small, tmp_path):
    from edgepack.toolkit.api import load_checkpoint, train
    cfg = TrainConfig(epochs=2, batch_size=64, schedule="cosine", patience=3, seed=1)
    res = train(framework, "mnist-tutorial", mnist_small, out=tmp_path, config=cfg, verbose=False)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert {"test_accuracy", "params", "epochs", "train_seconds"} <= set(m)
    assert m["params"] == 20410 and m["epochs"] == 2
    assert m["test_accuracy"] > 0.8                        # 3k real digits, 2 epochs: far above chance (0.1)
    hist = json.loads((tmp_path / "history.json").read_text())
    assert len(hist["epochs"]) == 2 and hist["epochs"][1]["loss"] < hist["epochs"][0]["loss"]
    assert (tmp_path / "history.png").stat().st_size > 10_000
    loaded = load_checkpoint(res.checkpoint)                # torch: weights_only=True under the hood
    x = mnist_small.normalize(mnist_small.x_test[:32], loaded.backend.LAYOUT)
    np.testing.assert_allclose(loaded.backend.predict(loaded.model, x), res.backend.predict(res.model, x), atol=1e-5)
    assert loaded.record.dataset["name"] == "mnist" and loaded.record.steps[0]["step"] == "train"


def test_early_stopping_restores_best_weights(mnist_small, tmp_path):
    from edgepack.toolkit.backends import get_backend
    from edgepack.toolkit.arch import get_arch
    T = get_backend("torch")
    model = T.build(get_arch("mnist-tutorial"))
    cfg = TrainConfig(epochs=6, lr=0.05, optimizer="sgd", patience=1, seed=0)   # high LR: val loss bounces
    hist = T.fit(model, mnist_small, cfg, verbose=False)
    best = min(r["val_loss"] for r in hist.epochs)
    assert hist.best_epoch == 1 + [r["val_loss"] for r in hist.epochs].index(best)
    _, val_idx = mnist_small.split(cfg.val_fraction, cfg.seed)
    loss, _ = T.evaluate(model, mnist_small, val_idx, split="train")
    assert loss == pytest.approx(best, rel=1e-4)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "edgepack.toolkit.cli", *args], capture_output=True, text=True, timeout=300)


def test_cli_help_lists_commands():
    r = _cli("--help")
    assert r.returncode == 0
    for cmd in ("models", "train", "demo"):
        assert cmd in r.stdout


@pytest.mark.slow
def test_cli_models_prints_counts_for_both_frameworks():
    r = _cli("models")
    assert r.returncode == 0, r.stderr
    line = next(l for l in r.stdout.splitlines() if l.startswith("cifar-teacher"))
    assert line.count("961,706") == 4                       # trainable, +BN stats (none), torch, keras
    line = next(l for l in r.stdout.splitlines() if l.startswith("mnist-small"))
    assert line.count("6,330") == 3 and line.count("6,442") == 1   # trainable in the spec and both frameworks; + BN stats
    assert "trainable: the weights training changes" in r.stdout


@pytest.mark.parametrize("args,needle", [
    (["--data-dir", "/definitely/not/here"], "data directory does not exist"),
    (["--arch", "nope"], "unknown architecture"),
])
def test_cli_bad_input_is_one_line_no_traceback(tmp_path, args, needle):
    base = {"--framework": "torch", "--arch": "mnist-tutorial", "--data": "mnist", "--data-dir": str(MNIST_DIR),
            "--epochs": "1", "--out": str(tmp_path / "o")}
    for k, v in zip(args[::2], args[1::2]):
        base[k] = v
    r = _cli("train", *[x for kv in base.items() for x in kv])
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and needle in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("restore", [True, False])
def test_run_epochs_restores_best_only_when_asked(mnist_small, restore):
    from edgepack.toolkit.train import run_epochs
    losses = iter([0.5, 0.7, 0.9])                         # validation gets worse after epoch 1
    restored = []
    hist = run_epochs(None, mnist_small, TrainConfig(epochs=3, batch_size=1000, restore_best=restore), "NHWC",
                      step=lambda x, y, lr: (1.0, 0), validate=lambda idx: (next(losses), 0.5),
                      snapshot=lambda: "epoch-1-weights", restore=restored.append, verbose=False)
    assert restored == (["epoch-1-weights"] if restore else [])
    assert hist.best_epoch == (1 if restore else None)


def test_keras_model_with_a_softmax_head_is_trained_on_probabilities(mnist_small):
    """tf.keras.applications models end in softmax by default: treating that output as logits stalls at ln(10)."""
    from edgepack.toolkit.backends import get_backend
    from edgepack.toolkit.backends.keras.model import keras
    from edgepack.toolkit.train import TrainConfig
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    hist = get_backend("keras").fit(model, mnist_small, TrainConfig(epochs=1, batch_size=64), verbose=False)
    assert hist.epochs[-1]["loss"] < 1.5                      # was stuck at 2.3026 with from_logits=True


def test_params_means_trainable_parameters_in_every_record(tmp_path):
    """Training, compression and the file's own count agree on "params" (trainable); BatchNorm statistics are only
    in "params_total" (the training record once wrote the total as "params", compression the trainable count)."""
    from edgepack.toolkit.api import train
    from edgepack.toolkit.compress import compress
    from edgepack.toolkit.data import Dataset
    rng = np.random.default_rng(0)
    ds = Dataset("synthetic", "random", rng.integers(0, 255, (256, 28, 28, 1), np.uint8), rng.integers(0, 10, 256),
                 rng.integers(0, 255, (64, 28, 28, 1), np.uint8), rng.integers(0, 10, 64), [str(i) for i in range(10)],
                 (0.5,), (0.25,))
    res = train("torch", "mnist-small", ds, out=tmp_path / "t", config=TrainConfig(epochs=1, val_fraction=0), verbose=False)
    counts = res.backend.count_params(res.model)
    assert counts["total"] > counts["trainable"]                     # mnist-small has BatchNorm statistics
    assert res.metrics["params"] == counts["trainable"] and res.metrics["params_total"] == counts["total"]
    compress(res.checkpoint, [{"technique": "prune", "sparsity": 0.5, "epochs": 1, "schedule": "oneshot"}],
             tmp_path / "c", ds, verbose=False)
    rec = json.loads((tmp_path / "c" / "metrics.json").read_text())["steps"][0]
    assert rec["before"]["params"] == res.metrics["params"]


def _separable(n=400, k=10, seed=0):
    """k classes of 8x8 grey images: class c has pixel c lit, the rest low noise (linearly separable)."""
    from edgepack.toolkit.data import Dataset
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n).astype(np.int64)
    x = rng.integers(0, 30, (n, 8, 8, 1)).astype(np.uint8)
    x.reshape(n, -1)[np.arange(n), y] = 255
    return Dataset("lit-pixel", "synthetic", x, y, x, y, [str(c) for c in range(k)], (0.1,), (0.3,))


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_label_smoothing_bounds_the_training_loss_by_the_smoothed_targets_entropy(framework):
    """Cross-entropy against smoothed targets q is >= H(q) for any prediction; without smoothing a separable set
    drives it towards 0. Both backends, same option."""
    from edgepack.toolkit.backends import get_backend
    backend, ds, eps, k = get_backend(framework), _separable(), 0.3, 10
    q = np.full(k, eps / k)
    q[0] += 1 - eps
    entropy = float(-(q * np.log(q)).sum())                    # 1.18 nats for e = 0.3, K = 10

    def final_epoch(smoothing):
        if framework == "torch":
            from torch import nn
            model = nn.Sequential(nn.Flatten(), nn.Linear(64, k))
        else:
            from edgepack.toolkit.backends.keras.model import keras
            model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(k)])
        cfg = TrainConfig(epochs=12, batch_size=32, lr=0.05, val_fraction=0.0, label_smoothing=smoothing, seed=0)
        return backend.fit(model, ds, cfg, verbose=False).epochs[-1]

    plain, smoothed = final_epoch(0.0), final_epoch(eps)
    assert plain["accuracy"] == 1.0 and smoothed["accuracy"] == 1.0
    assert plain["loss"] < 0.5 * entropy                        # nothing holds plain cross-entropy up
    assert entropy - 1e-3 <= smoothed["loss"] < entropy + 0.3   # smoothing does, and training still gets near it


def test_label_smoothing_is_a_recipe_key_and_a_flag_and_is_range_checked():
    import argparse
    from edgepack.toolkit.options import add_arguments, from_args, from_recipe, recipe_schema
    with pytest.raises(OptionError, match=r"label smoothing must be in \[0, 1\)"):
        TrainConfig(label_smoothing=1.0)
    assert "label_smoothing" in recipe_schema(TrainConfig)
    assert from_recipe(TrainConfig, {"label_smoothing": 0.1}).label_smoothing == 0.1
    parser = argparse.ArgumentParser()
    add_arguments(parser, TrainConfig)
    assert from_args(TrainConfig, parser.parse_args(["--label-smoothing", "0.2"])).label_smoothing == 0.2
    assert from_args(TrainConfig, parser.parse_args([])).label_smoothing == 0.0


def _flat_rgb(n=64, side=16, value=200):
    """n RGB images of one flat colour (not the mean), so the only exact zeros after normalization are cutout's."""
    from edgepack.toolkit.data import Dataset
    x = np.full((n, side, side, 3), value, np.uint8)
    y = np.arange(n) % 10
    return Dataset("flat", "synthetic", x, y, x, y, [str(c) for c in range(10)], (0.5, 0.4, 0.3), (0.2, 0.2, 0.2))


def _boxes(zero_mask):
    """Per image (H, W) mask: (rows, cols) of its bounding box, and whether the mask fills that box exactly."""
    out = []
    for m in zero_mask:
        ys, xs = np.where(m)
        rows, cols = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        out.append((rows, cols, m.sum() == rows * cols))
    return out


def test_cutout_sets_one_clipped_square_per_image_to_the_mean_in_both_layouts():
    from edgepack.toolkit.data import iterate_batches
    ds, size = _flat_rgb(), 6
    idx = np.arange(len(ds.y_train))

    def batches(layout, cutout):
        return list(iterate_batches(ds, idx, 16, layout, shuffle=True, augment=True, cutout=cutout, seed=3, epoch=1))

    nhwc, nchw = batches("NHWC", size), batches("NCHW", size)
    for (a, ya), (b, yb) in zip(nhwc, nchw):                 # one order, one crop and one square in either layout
        np.testing.assert_array_equal(a, b.transpose(0, 2, 3, 1))
        np.testing.assert_array_equal(ya, yb)
    x = np.concatenate([a for a, _ in nhwc])
    zero = x == 0.0                                           # 0 after normalization: the mean colour
    assert (zero.all(-1) == zero.any(-1)).all()               # all channels of a cut pixel, never some
    boxes = _boxes(zero.all(-1))
    assert all(full for _, _, full in boxes)                  # one solid rectangle per image
    sides = {s for r, c, _ in boxes for s in (r, c)}
    assert sides <= set(range(size - size // 2, size + 1)) and size in sides   # size, or clipped at a border
    assert sum(r == c == size for r, c, _ in boxes) > len(boxes) // 3          # most squares lie inside
    off = batches("NHWC", 0)
    assert not any((a == 0.0).any() for a, _ in off)          # off: no pixel is cut
    first, cut = off[0][0], zero[:len(off[0][0])]             # the first batch's crops come before any square is drawn
    np.testing.assert_array_equal(first[~cut], nhwc[0][0][~cut])   # so cutout changed nothing but its squares


def test_training_batches_carry_cutout_through_the_shared_epoch_loop():
    """Both backends train through run_epochs: the batches its step gets are cut when the config says so."""
    from edgepack.toolkit.train import run_epochs
    ds = _flat_rgb(n=40)

    def cut_fraction(cfg):
        seen = []
        run_epochs(None, ds, cfg, "NCHW", step=lambda x, y, lr: (seen.append((x == 0.0).all(1)), (1.0, 0))[1],
                   validate=lambda idx: (1.0, 0.5), snapshot=lambda: None, restore=lambda s: None, verbose=False)
        return float(np.concatenate(seen).mean())

    base = dict(epochs=2, batch_size=8, val_fraction=0.0, augment=True)
    assert cut_fraction(TrainConfig(**base)) == 0.0
    frac = cut_fraction(TrainConfig(**base, cutout=4))
    assert 9 / 256 < frac <= 16 / 256                         # about one 4x4 square (some clipped) per 16x16 image


def test_cutout_option_needs_augment_is_checked_and_a_fine_tune_without_augment_drops_it():
    import argparse
    from types import SimpleNamespace
    from edgepack.toolkit.compress.techniques import _train_config
    from edgepack.toolkit.options import add_arguments, from_args, from_recipe
    with pytest.raises(OptionError, match="needs augment"):
        TrainConfig(cutout=8)
    with pytest.raises(OptionError, match="cutout must be >= 0"):
        TrainConfig(cutout=-1, augment=True)
    assert from_recipe(TrainConfig, {"cutout": 8, "augment": True}).cutout == 8
    parser = argparse.ArgumentParser()
    add_arguments(parser, TrainConfig)
    assert from_args(TrainConfig, parser.parse_args(["--augment", "--cutout", "8"])).cutout == 8
    state = SimpleNamespace(train_config=TrainConfig(augment=True, cutout=8))
    assert _train_config(state, 1, 0.01, augment=False).cutout == 0           # pruning fine-tunes default to no augment
    assert _train_config(state, 1, 0.01, augment=True).cutout == 8


class _FakeClock:
    """Seconds that pass only when a training step says so: epochs of a known length, no sleeping."""
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _timed_run(cfg, step_seconds, n=40):
    """run_epochs on n images whose steps take step_seconds(epoch) fake seconds; returns (history, lrs, clock)."""
    from edgepack.toolkit.train import run_epochs
    clock, lrs, ds = _FakeClock(), [], _flat_rgb(n=n)
    state = {"epoch": 0}

    def step(x, y, lr):
        lrs.append(lr)
        clock.now += step_seconds(state["epoch"])
        return 1.0, 0

    hist = run_epochs(None, ds, cfg, "NHWC", step=step, validate=lambda idx: (1.0, 0.5), snapshot=lambda: None,
                      restore=lambda s: None, callbacks=[type("E", (), {"on_epoch_end": lambda self, e: state.update(epoch=e + 1)})()],
                      verbose=False, clock=clock)
    return hist, lrs, clock


def test_time_budget_plans_the_epochs_and_ends_the_one_cycle_schedule_on_time():
    cfg = TrainConfig(epochs=100, batch_size=4, lr=0.1, val_fraction=0.0, schedule="onecycle", time_budget=1.0)
    hist, lrs, clock = _timed_run(cfg, lambda epoch: 1.0)       # 10 steps of 1 s: 10 s per epoch, 60 s budget
    assert len(hist.epochs) == 6 and hist.stopped_on_time and clock.now == 60.0
    six = TrainConfig(epochs=6, batch_size=4, lr=0.1, val_fraction=0.0, schedule="onecycle")
    assert lrs[10:] == [lr_at(six, s, 60) for s in range(10, 60)]   # once planned: the 6-epoch schedule exactly
    assert lrs[-1] < 2e-3 * cfg.lr and max(lrs) > 0.95 * cfg.lr     # annealed to the end, past the peak
    assert hist.to_dict()["stopped_on_time"] is True


def test_time_budget_shortens_the_plan_when_epochs_slow_down_and_caps_at_epochs():
    cfg = TrainConfig(epochs=100, batch_size=4, lr=0.1, val_fraction=0.0, schedule="onecycle", time_budget=2.0)
    hist, lrs, clock = _timed_run(cfg, lambda epoch: 1.0 if epoch < 3 else 2.0)   # 10 s, then 20 s per epoch
    assert clock.now <= 120.0                                    # inside the budget despite the slowdown
    assert len(hist.epochs) == 7 and lrs[-1] < 2e-3 * cfg.lr     # 3 x 10 s + 4 x 20 s = 110 s; an 8th would not fit
    capped, capped_lrs, _ = _timed_run(TrainConfig(epochs=3, batch_size=4, val_fraction=0.0, schedule="onecycle",
                                                   time_budget=10.0), lambda e: 1.0)
    assert len(capped.epochs) == 3 and not capped.stopped_on_time   # a budget never adds epochs beyond `epochs`
    _, fixed_lrs, _ = _timed_run(TrainConfig(epochs=3, batch_size=4, val_fraction=0.0, schedule="onecycle"), lambda e: 1.0)
    assert capped_lrs == fixed_lrs                                  # a budget that does not bind changes nothing
    plain, _, _ = _timed_run(TrainConfig(epochs=3, batch_size=4, val_fraction=0.0), lambda e: 100.0)
    assert len(plain.epochs) == 3 and not plain.stopped_on_time     # no budget: epochs as asked, however slow


def test_plan_epochs_never_undoes_finished_epochs():
    from edgepack.toolkit.train import plan_epochs
    assert plan_epochs(60, [], 50) == 50                         # nothing measured yet: the most
    assert plan_epochs(60, [10.0], 50) == 6
    assert plan_epochs(60, [10.0, 10.0, 30.0], 50) == 3          # over budget already: stop where it is
    assert plan_epochs(60, [10.0, 10.0, 10.0], 4) == 4


def test_time_budget_option_is_checked_and_not_inherited_by_fine_tunes():
    from types import SimpleNamespace
    from edgepack.toolkit.compress.techniques import _train_config
    from edgepack.toolkit.options import from_recipe
    with pytest.raises(OptionError, match="time budget must be >= 0"):
        TrainConfig(time_budget=-1)
    assert from_recipe(TrainConfig, {"time_budget": 85}).time_budget == 85
    state = SimpleNamespace(train_config=TrainConfig(time_budget=85.0, precision="bf16"))
    assert _train_config(state, 2, 0.01).time_budget == 0.0
    assert _train_config(state, 2, 0.01).precision == "fp32"       # nor bf16: QAT's ranges are float32


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_time_budget_stops_real_training_in_both_backends(framework, mnist_small, tmp_path):
    """The budget goes through each backend's fit to the shared loop, on the real clock: 50 epochs of 3,000 digits
    take far longer than 4 seconds, so the plan cuts them and the metrics say so."""
    from edgepack.toolkit.api import train
    cfg = TrainConfig(epochs=50, batch_size=64, schedule="onecycle", lr=0.01, val_fraction=0.0, time_budget=4 / 60)
    train(framework, "mnist-tutorial", mnist_small, out=tmp_path, config=cfg, verbose=False)
    m = json.loads((tmp_path / "metrics.json").read_text())
    hist = json.loads((tmp_path / "history.json").read_text())
    assert 1 <= m["epochs"] < 50 and m["stopped_on_time"] is True and hist["stopped_on_time"] is True
    spent = sum(r["seconds"] for r in hist["epochs"])
    assert spent <= 4 + 2 * max(r["seconds"] for r in hist["epochs"])   # on time, give or take the epoch it measures


def test_report_names_the_time_budget_beside_the_epochs_it_planned():
    from edgepack.toolkit.recipes.report import epochs_cell
    assert epochs_cell({"epochs": 105, "config": {"epochs": 105, "time_budget": 0.0}}) == "105"
    assert epochs_cell({"epochs": 117, "stopped_on_time": True, "config": {"epochs": 300, "time_budget": 85.0}}) == \
        "117 of at most 300 (85-min time budget, stopped on time)"
    assert epochs_cell({"epochs": 30, "stopped_on_time": False, "config": {"epochs": 30, "time_budget": 85.0}}) == \
        "30 of at most 30 (85-min time budget)"
    assert epochs_cell({}) == "-"                                   # a summary recorded before epochs were


def test_area_resize_averages_boxes_in_both_layouts():
    from edgepack.toolkit.data.dataset import area_weights, resize_area
    w = area_weights(32, 24)
    assert w.shape == (24, 32) and np.allclose(w.sum(1), 1.0) and (w >= 0).all()
    assert np.allclose(area_weights(32, 16), np.kron(np.eye(16), [[0.5, 0.5]]))   # halving: 2x2 means
    rng = np.random.default_rng(0)
    nhwc = rng.random((3, 32, 32, 3), dtype=np.float32)
    half = resize_area(nhwc, 16, 16, "NHWC")
    assert np.allclose(half, nhwc.reshape(3, 16, 2, 16, 2, 3).mean((2, 4)), atol=1e-6)
    nchw = resize_area(np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2)), 24, 20, "NCHW")
    assert nchw.shape == (3, 3, 24, 20) and nchw.dtype == np.float32
    assert np.allclose(nchw.transpose(0, 2, 3, 1), resize_area(nhwc, 24, 20, "NHWC"), atol=1e-6)
    assert np.allclose(resize_area(np.full((1, 32, 32, 3), 0.7, np.float32), 20, 20, "NHWC"), 0.7)  # flat stays flat
    assert resize_area(nhwc, 32, 32, "NHWC") is nhwc


def test_progressive_resizing_schedule_grows_in_steps_of_4_to_full_size():
    from edgepack.toolkit.train import train_size
    cfg = TrainConfig(resize_from=16, resize_until=0.5)
    sides = [train_size(cfg, (32, 32), e, 10)[0] for e in range(10)]
    assert sides == [16, 16, 20, 24, 28, 32, 32, 32, 32, 32]
    assert [train_size(cfg, (32, 32), e, 100)[0] for e in (0, 49, 50, 99)] == [16, 28, 32, 32]
    assert train_size(cfg, (32, 48), 0, 10) == (16, 24)                              # width in proportion
    assert train_size(TrainConfig(), (32, 32), 0, 10) == (32, 32)                    # off by default
    assert train_size(TrainConfig(resize_from=40), (32, 32), 0, 10) == (32, 32)      # never upscales


def test_training_batches_follow_the_resize_schedule_in_the_shared_epoch_loop():
    from edgepack.toolkit.train import run_epochs
    ds = _flat_rgb(n=16, side=32)
    for layout, axis in (("NCHW", 2), ("NHWC", 1)):
        seen = []
        hist = run_epochs(None, ds, TrainConfig(epochs=4, batch_size=8, val_fraction=0.0, augment=True, resize_from=16),
                          layout, step=lambda x, y, lr: (seen.append(x.shape[axis:axis + 2]), (1.0, 0))[1],
                          validate=lambda idx: (1.0, 0.5), snapshot=lambda: None, restore=lambda s: None, verbose=False)
        assert seen == [(16, 16)] * 2 + [(24, 24)] * 2 + [(32, 32)] * 4
        assert [r["size"] for r in hist.epochs] == [16, 24, 32, 32]


def test_plan_epochs_counts_cheaper_epochs_by_their_cost():
    from edgepack.toolkit.train import plan_epochs
    assert plan_epochs(100, [5.0], 50, costs=[1.0], cost=lambda e, n: 1.0) == plan_epochs(100, [5.0], 50) == 20
    # a half-cost epoch took 5 s: 10 s per full one; 95 s left hold 19 more half-cost epochs
    assert plan_epochs(100, [5.0], 50, costs=[0.5], cost=lambda e, n: 0.5) == 20
    # the rest at full cost: 9 more
    assert plan_epochs(100, [5.0], 50, costs=[0.5], cost=lambda e, n: 1.0) == 10
    # the first half of any plan at half cost: n epochs cost 5 * (n - 1) + ... ; the largest n inside 95 s
    half_first = lambda e, n: 0.5 if e < n / 2 else 1.0          # noqa: E731
    n = plan_epochs(100, [5.0], 50, costs=[0.5], cost=half_first)
    spend = lambda n: 10 * sum(half_first(e, n) for e in range(1, n))   # noqa: E731
    assert spend(n) <= 95 < spend(n + 1) and n == 13


def test_time_budget_with_progressive_resizing_fits_more_epochs_and_ends_on_time():
    """Fake steps whose time follows the cost model (from the batch's own size): the budget plans more epochs than
    of full-size ones, ends at full size inside the budget, and the one-cycle schedule still anneals to its end."""
    from edgepack.toolkit.train import RESIZE_FIXED_COST, run_epochs
    base = dict(epochs=100, batch_size=4, lr=0.1, val_fraction=0.0, schedule="onecycle", time_budget=2.0, augment=True)

    def timed(cfg):              # 40 images of 16x16, 10 steps per epoch, 1 fake second per full-size step
        clock, lrs = _FakeClock(), []

        def step(x, y, lr):
            lrs.append(lr)
            clock.now += RESIZE_FIXED_COST + (1 - RESIZE_FIXED_COST) * (x.shape[1] / 16) ** 2
            return 1.0, 0
        hist = run_epochs(None, _flat_rgb(n=40), cfg, "NHWC", step=step, validate=lambda idx: (1.0, 0.5),
                          snapshot=lambda: None, restore=lambda s: None, verbose=False, clock=clock)
        return hist, lrs, clock.now

    plain, _, plain_spent = timed(TrainConfig(**base))
    hist, lrs, spent = timed(TrainConfig(**base, resize_from=8, resize_until=0.5))
    assert len(plain.epochs) == 12 and plain_spent <= 120.0
    assert len(hist.epochs) > len(plain.epochs) and spent <= 120.0 and hist.stopped_on_time
    assert hist.epochs[0]["size"] == 8 and hist.epochs[-1]["size"] == 16
    assert 120.0 - spent < 10.0                  # no full-size epoch (10 s) left unused
    assert lrs[-1] < 2e-3 * 0.1


def test_fixed_share_is_fitted_from_the_median_time_of_each_size():
    from edgepack.toolkit.train import fixed_share
    line = lambda a: 10 + 40 * a                                   # noqa: E731  fixed 10 s + 40 s x area: 0.2
    areas = [0.25, 0.25, 0.25, 0.5625, 0.5625, 1.0]
    times = [30.0] + [line(a) for a in areas[1:]]                 # a slow first epoch: its size's median ignores it
    assert fixed_share(areas, times) == pytest.approx(0.2)
    assert fixed_share(areas[:4], times[:4]) is None              # one size with two epochs: nothing to fit yet
    assert fixed_share([0.25, 0.25, 1.0, 1.0], [20.0, 20.0, 10.0, 10.0]) is None   # smaller images slower: no line
    assert fixed_share([0.25, 0.25, 1.0, 1.0], [1.0, 1.0, 40.0, 40.0]) == 0.0     # time below proportional: kept at 0


def test_time_budget_measures_what_smaller_epochs_cost_and_settles_its_plan(capsys):
    """Fake steps whose fixed share is 0.05, not the prior's 0.3: once two sizes have two epochs each the plan
    prices epochs by the measured share, stops changing long before the full size, and uses the budget."""
    import re
    from edgepack.toolkit.train import RESIZE_FIXED_COST, run_epochs
    assert RESIZE_FIXED_COST != 0.05
    clock = _FakeClock()
    cfg = TrainConfig(epochs=300, batch_size=8, lr=0.1, val_fraction=0.0, schedule="onecycle", time_budget=10.0,
                      augment=True, resize_from=16, resize_until=0.5)

    def step(x, y, lr):                                            # 8 steps per epoch, 1 fake second per full step
        clock.now += 0.05 + 0.95 * (x.shape[1] / 32) ** 2
        return 1.0, 0
    hist = run_epochs(None, _flat_rgb(n=64, side=32), cfg, "NHWC", step=step, validate=lambda idx: (1.0, 0.5),
                      snapshot=lambda: None, restore=lambda s: None, verbose=True, clock=clock)
    plans = re.findall(r"(\d+) epochs planned \(.* used in (\d+)(.*)\)", capsys.readouterr().out)
    n, used, priced = plans[-1]
    assert int(n) == len(hist.epochs) and "0.05 + 0.95 x its area, measured" in priced
    sizes = [r["size"] for r in hist.epochs]
    assert int(used) < sizes.index(32) and sizes[-1] == 32        # settled while the images were still small
    assert 600.0 - 8.0 < clock.now <= 600.0                        # less than one full-size epoch left unused


def test_a_plan_that_grows_never_sends_progressive_resizing_back_to_smaller_images():
    """Epochs that get 4x faster mid-run (a busy host going quiet) stretch the plan and with it the resize ramp;
    sizes already reached are kept."""
    from edgepack.toolkit.train import run_epochs
    clock = _FakeClock()
    cfg = TrainConfig(epochs=100, batch_size=4, lr=0.1, val_fraction=0.0, schedule="onecycle", time_budget=2.0,
                      augment=True, resize_from=8, resize_until=0.5)

    def step(x, y, lr):
        clock.now += (1.0 if clock.now < 30 else 0.25) * (x.shape[1] / 16) ** 2
        return 1.0, 0
    hist = run_epochs(None, _flat_rgb(n=40), cfg, "NHWC", step=step, validate=lambda idx: (1.0, 0.5),
                      snapshot=lambda: None, restore=lambda s: None, verbose=False, clock=clock)
    sizes = [r["size"] for r in hist.epochs]
    assert sizes == sorted(sizes) and sizes[0] == 8 and sizes[-1] == 16 and clock.now <= 120.0


def test_progressive_resizing_options_are_checked_and_not_inherited_by_fine_tunes():
    import argparse
    from types import SimpleNamespace
    from edgepack.toolkit.compress.techniques import _train_config
    from edgepack.toolkit.options import add_arguments, from_args, from_recipe
    with pytest.raises(OptionError, match="resize_from must be >= 0"):
        TrainConfig(resize_from=-4)
    with pytest.raises(OptionError, match=r"resize_until must be in \(0, 1\]"):
        TrainConfig(resize_from=16, resize_until=0.0)
    assert from_recipe(TrainConfig, {"resize_from": 16, "resize_until": 0.6}).resize_until == 0.6
    parser = argparse.ArgumentParser()
    add_arguments(parser, TrainConfig)
    assert from_args(TrainConfig, parser.parse_args(["--resize-from", "16"])).resize_from == 16
    state = SimpleNamespace(train_config=TrainConfig(resize_from=16))
    assert _train_config(state, 2, 0.01).resize_from == 0


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_progressive_resizing_trains_a_pooling_network_and_names_a_flattening_one(framework):
    """Both backends train ResNet-8 on smaller images and still take full-size ones afterwards (Keras: its
    input-shape check is back); a network with a flatten gets a one-line ModelError naming the option."""
    from edgepack.toolkit.arch import get_arch
    from edgepack.toolkit.backends import get_backend
    from edgepack.toolkit.data import Dataset
    from edgepack.toolkit.errors import ModelError
    backend, rng = get_backend(framework), np.random.default_rng(0)
    x, y = rng.integers(0, 256, (32, 32, 32, 3), dtype=np.uint8), np.arange(32) % 10
    ds = Dataset("rgb", "synthetic", x, y, x, y, [str(c) for c in range(10)], (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    cfg = TrainConfig(epochs=3, batch_size=16, lr=0.01, val_fraction=0.0, resize_from=16, resize_until=0.6)
    model = backend.build(get_arch("resnet8"))
    hist = backend.fit(model, ds, cfg, verbose=False)
    assert [r["size"] for r in hist.epochs] == [16, 24, 32]
    assert backend.predict(model, ds.normalize(x[:4], backend.LAYOUT)).shape == (4, 10)
    if framework == "keras":
        assert model.input_spec[0].shape[1:3] == (32, 32)
    flat = backend.build(get_arch("mnist-tutorial", input_shape=(32, 32, 3)))
    with pytest.raises(ModelError, match="progressive resizing .*accepts inputs smaller than 32x32") as err:
        backend.fit(flat, ds, cfg, verbose=False)
    assert "\n" not in str(err.value)


def test_bf16_precision_runs_convolutions_in_bfloat16_and_keeps_weights_loss_and_evaluation_float32(monkeypatch):
    """precision = bf16: the train step's convolutions compute in bfloat16 (autocast), the loss and the weights
    stay float32, and the network still learns a separable set; "auto" follows the CPU's AMX, and Keras refuses
    bf16 in one line."""
    import torch
    from torch import nn
    from edgepack.toolkit.backends import get_backend
    from edgepack.toolkit.backends.torch import train as torch_train
    ds = _separable()
    seen = []

    def model():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                            nn.Linear(32, 10))
        net[0].register_forward_hook(lambda mod, inp, out: seen.append(out.dtype) if mod.training else None)
        return net

    cfg = TrainConfig(epochs=12, batch_size=32, lr=0.05, val_fraction=0.0, seed=0, precision="bf16")
    net = model()
    hist = get_backend("torch").fit(net, ds, cfg, verbose=False)
    assert set(seen) == {torch.bfloat16} and hist.precision == "bf16"
    assert all(p.dtype == torch.float32 for p in net.parameters())
    seen.clear()
    ref = get_backend("torch").fit(model(), ds, dataclasses.replace(cfg, precision="fp32"), verbose=False)
    assert set(seen) == {torch.float32} and ref.precision == "fp32"           # the default arithmetic
    assert TrainConfig().precision == "fp32"
    # bf16 learns what float32 learns from the same start (chance is 10%)
    assert hist.epochs[-1]["accuracy"] > 0.6 and hist.epochs[-1]["loss"] < 0.5 * hist.epochs[0]["loss"]
    assert abs(hist.epochs[-1]["accuracy"] - ref.epochs[-1]["accuracy"]) < 0.05
    for amx, want in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda amx=amx: amx)
        assert torch_train.resolve_precision("auto") == want
        assert torch_train.resolve_precision("fp32") == "fp32"
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    assert torch_train.resolve_precision("auto") == "fp32"                   # a torch that cannot tell: fp32
    with pytest.raises(OptionError, match="must be one of|precision"):
        TrainConfig(precision="fp16")
    from edgepack.toolkit.backends.keras.model import keras
    kmodel = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    with pytest.raises(OptionError, match="PyTorch-only") as err:
        get_backend("keras").fit(kmodel, ds, cfg, verbose=False)
    assert "\n" not in str(err.value)


def test_report_names_bf16_training_beside_the_epochs():
    from edgepack.toolkit.recipes.report import epochs_cell
    assert epochs_cell({"epochs": 219, "stopped_on_time": True, "precision": "bf16",
                        "config": {"epochs": 300, "time_budget": 85.0}}) == \
        "219 of at most 300 (85-min time budget, bf16, stopped on time)"
    assert epochs_cell({"epochs": 30, "precision": "bf16", "config": {"epochs": 30}}) == "30 (bf16)"
    assert epochs_cell({"epochs": 30, "precision": "fp32", "config": {"epochs": 30}}) == "30"

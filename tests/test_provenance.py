"""Never silently wrong: which data a figure was measured on is a checked fact, and one bad file cannot take
a benchmark down (issue: data provenance, crash isolation)."""
import gzip
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import MNIST_DIR
from edgepack.toolkit.errors import DataError


def _cli(args, tmp_path, **env):
    e = {k: v for k, v in os.environ.items() if k != "EDGEPACK_DATA"}
    e.update({"EDGEPACK_CACHE": str(tmp_path / "cache"), **env})
    return subprocess.run([sys.executable, "-m", "edgepack.toolkit.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=e, cwd=tmp_path)


def test_bench_never_substitutes_the_offline_stand_in(exported, tmp_path):
    f = exported["keras"]["tflite-int8"].path                  # made on real MNIST (a slice of it)
    r = _cli(["bench", f, "--data", "mnist", "--runs", "3", "--min-seconds", "0", "--json", tmp_path / "a.json"],
             tmp_path, EDGEPACK_OFFLINE="1")
    assert r.returncode != 0
    assert "no local copy found" in r.stderr and "--data digits" in r.stderr
    row, = json.loads((tmp_path / "a.json").read_text())["results"]
    assert not row["ok"] and row["accuracy"] is None


def test_stand_in_only_by_name_and_a_data_mismatch_is_flagged(exported, tmp_path):
    f = exported["keras"]["tflite-int8"].path
    r = _cli(["bench", f, "--data", "digits", "--runs", "3", "--min-seconds", "0", "--json", tmp_path / "d.json",
              "--report", tmp_path / "rep"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "OFFLINE STAND-IN" in r.stderr                     # which data was used, on stderr
    assert "warning:" in r.stderr and "benchmarked on mnist" in r.stderr
    row, = json.loads((tmp_path / "d.json").read_text())["results"]
    assert row["data"]["fallback"] is True and row["test_images"] == 360 and len(row["data"]["test_sha256"]) == 64
    assert "made and verified on mnist" in row["data_warning"]


def test_bench_defaults_to_the_data_set_a_file_records(exported, tmp_path, mnist):
    f = exported["torch"]["onnx-int8"].path
    r = _cli(["bench", f, "--runs", "3", "--min-seconds", "0", "--json", tmp_path / "r.json"],
             tmp_path, EDGEPACK_DATA=str(MNIST_DIR.parent))
    assert r.returncode == 0, r.stderr
    row, = json.loads((tmp_path / "r.json").read_text())["results"]
    assert row["data"]["name"] == "mnist" and row["accuracy"] > 0.5 and row["data_warning"] is not None
    # the fixture model was verified on a 1,000-image slice: the full test set is other data, and it says so


def test_a_truncated_tflite_among_good_files_leaves_the_other_rows_and_the_report(exported, tmp_path):
    good = exported["keras"]["tflite-int8"].path
    bad = tmp_path / "cut.tflite"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 10])
    other = exported["torch"]["onnx-int8"].path
    r = _cli(["bench", other, bad, good, "--data", "mnist", "--data-dir", MNIST_DIR, "--runs", "3", "--min-seconds", "0",
              "--json", tmp_path / "r.json", "--report", tmp_path / "rep"], tmp_path)
    assert r.returncode == 2                                  # one row failed ...
    rows = json.loads((tmp_path / "r.json").read_text())["results"]
    assert [x["ok"] for x in rows] == [True, False, True]    # ... the others are measured
    assert "cut.tflite" in rows[1]["error"]
    assert (tmp_path / "rep" / "report.md").is_file() and "cut.tflite" in (tmp_path / "rep" / "report.md").read_text()
    assert "Traceback" not in r.stderr


def test_a_model_with_other_classes_than_the_data_is_an_error(tmp_path):
    import torch
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 5)).eval()
    torch.onnx.export(net, (torch.zeros(1, 1, 28, 28),), str(tmp_path / "five.onnx"), dynamo=False)
    from edgepack.benchmarks.harness import BenchSettings, benchmark
    (row,) = benchmark([tmp_path / "five.onnx"], "mnist", str(MNIST_DIR), BenchSettings(runs=2, min_seconds=0),
                       progress=lambda m: None)
    assert not row.ok and "5 outputs but mnist has 10 classes" in row.error


def test_a_single_class_image_folder_is_refused(tmp_path):
    from PIL import Image
    from edgepack.toolkit.data import load_dataset
    for split in ("train", "test"):
        d = tmp_path / "one" / split / "cats"
        d.mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8, 3), i * 40, np.uint8)).save(d / f"{i}.png")
    with pytest.raises(DataError, match="1 class found; a classifier needs at least two"):
        load_dataset("pets", tmp_path / "one")


def test_resume_recomputes_when_the_data_changes(tmp_path):
    from edgepack.toolkit.recipes.runner import Runner
    from edgepack.toolkit.recipes.schema import load_recipe
    data = tmp_path / "mnist"
    shutil.copytree(MNIST_DIR, data)
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[recipe]\nname = "d"\n[data]\nname = "mnist"\ndir = "{data}"\n'
                      '[[step]]\nid = "t"\nkind = "train"\nframework = "torch"\narch = "mnist-small"\nepochs = 1\nbatch_size = 512\n')
    def run():
        state = Runner(load_recipe(recipe), tmp_path / "run", False, ()).run()["steps"]["t"]
        return state["hash"], (tmp_path / "run" / state["primary"]).stat().st_mtime_ns
    first = run()
    assert run() == first                                     # unchanged: skipped, checkpoint untouched
    labels = data / "t10k-labels-idx1-ubyte.gz"               # same path, same file count: other content
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[8], raw[9] = raw[9], raw[8] if raw[8] != raw[9] else (raw[8] + 1) % 10
    labels.write_bytes(gzip.compress(bytes(raw)))
    changed = run()
    assert changed[0] != first[0] and changed[1] != first[1]  # other data: trained again


def test_moving_an_image_between_class_folders_invalidates_the_decode_cache(tmp_path):
    from PIL import Image
    from edgepack.toolkit.data import load_dataset
    root = tmp_path / "pets"
    for split in ("train", "test"):
        for c in ("cats", "dogs"):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((8, 8, 3), 40 * i + (c == "dogs") * 100, np.uint8)).save(d / f"{c}{i}.png")
    first = load_dataset("pets", root)
    assert first.y_train.tolist().count(1) == 3
    shutil.move(str(root / "train" / "cats" / "cats0.png"), str(root / "train" / "dogs" / "cats0.png"))
    second = load_dataset("pets", root)                      # same file count, same train/ mtime
    assert second.y_train.tolist().count(1) == 4
    # the key is the one decode caches were written under (path relative to the tree | size | mtime per file): a
    # faster way to compute it must not send every user's cached CIFAR-10 back to decoding
    import hashlib
    import os
    from edgepack.toolkit.data.sources import _tree_stamp
    (root / "train" / "dogs" / "deeper").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "train" / "dogs" / "deeper" / "x.png")
    h = hashlib.sha256(str(root.resolve()).encode())
    for split in ("train", "test"):
        for dirpath, _, files in sorted(os.walk(root / split)):
            for f in sorted(files):
                st = os.stat(os.path.join(dirpath, f))
                h.update(f"{os.path.relpath(os.path.join(dirpath, f), root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    assert _tree_stamp(root) == h.hexdigest()[:16]


def test_idx_labels_given_as_images_is_a_data_error(tmp_path):
    from edgepack.toolkit.data import load_dataset
    d = tmp_path / "swapped"
    shutil.copytree(MNIST_DIR, d)
    (d / "train-images-idx3-ubyte.gz").unlink()
    shutil.copy(MNIST_DIR / "train-labels-idx1-ubyte.gz", d / "train-images-idx3-ubyte.gz")
    with pytest.raises(DataError, match="are images and labels swapped"):
        load_dataset("mnist", d)


def test_preprocessing_comes_from_the_record_or_the_command_line(exported, tmp_path):
    from edgepack.benchmarks.harness import BenchSettings, benchmark
    f = exported["torch"]["onnx-int8"].path
    s = BenchSettings(runs=2, min_seconds=0)
    (rec,) = benchmark([f], "mnist", str(MNIST_DIR), s, progress=lambda m: None)
    assert rec.input["preprocessing"]["from"] == "the file's edgepack record"
    assert rec.input["preprocessing"]["mean"] == [0.1307]
    raw = BenchSettings(runs=2, min_seconds=0, preprocessing={"mean": [0.9], "std": [0.1], "scale": 1 / 255})
    (given,) = benchmark([f], "mnist", str(MNIST_DIR), raw, progress=lambda m: None)
    assert given.input["preprocessing"]["from"] == "command line"
    assert given.accuracy < rec.accuracy - 0.05                # a model fed other preprocessing than its own


def test_idx_files_that_are_not_mnist_get_their_own_statistics(tmp_path, capsys):
    from edgepack.toolkit.data import load_dataset
    d = tmp_path / "fashion-like"
    shutil.copytree(MNIST_DIR, d)
    p = d / "t10k-images-idx3-ubyte.gz"
    raw = bytearray(gzip.decompress(p.read_bytes()))
    raw[16:16 + 784 * 100] = bytes(255 - b for b in raw[16:16 + 784 * 100])    # other content, same shape
    p.write_bytes(gzip.compress(bytes(raw)))
    ds = load_dataset("mnist", d)
    assert "not the canonical MNIST" in capsys.readouterr().err
    assert ds.mean != (0.1307,)
    assert load_dataset("mnist", MNIST_DIR, quiet=True).mean == (0.1307,)


def test_bench_skips_manifests_and_names_colliding_files(exported, tmp_path):
    from edgepack.benchmarks.harness import BenchSettings, benchmark
    from edgepack.benchmarks.report import short_names
    a = exported["torch"]["onnx-int8"].path
    b = exported["keras"]["onnx-int8"].path
    notes = []
    rows = benchmark([a, a.with_name(a.name + ".json"), b], "mnist", str(MNIST_DIR), BenchSettings(runs=2, min_seconds=0),
                     progress=notes.append)
    assert len(rows) == 2 and all(r.ok for r in rows)
    assert any("skipping model.int8.onnx.json" in n for n in notes)
    names = short_names([r.to_dict() for r in rows])
    assert sorted(names.values()) == sorted([f"{a.parent.name}/{a.name}", f"{b.parent.name}/{b.name}"])

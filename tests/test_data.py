import gzip
import io
import os
import shutil
import tarfile

import numpy as np
import pytest

from tests.conftest import CIFAR_TARBALL, MNIST_DIR
from edgepack.toolkit.data import load_dataset
from edgepack.toolkit.data import sources
from edgepack.toolkit.errors import DataError


def test_mnist_from_shared_idx_files(mnist):
    assert mnist.x_train.shape == (60000, 28, 28, 1) and mnist.x_train.dtype == np.uint8
    assert mnist.x_test.shape == (10000, 28, 28, 1)
    assert sorted(np.unique(mnist.y_test)) == list(range(10))
    assert mnist.input_shape == (28, 28, 1) and mnist.num_classes == 10
    # the shared copy decompresses to the canonical files
    for stem in sources.MNIST_FILES:
        sources._check_idx_md5(MNIST_DIR / f"{stem}.gz", stem)


def test_raw_idx_under_any_name(tmp_path, mnist):
    d = tmp_path / "my-digits"
    d.mkdir()
    for stem in sources.MNIST_FILES:  # uncompressed copies under a custom data set name
        (d / stem).write_bytes(gzip.decompress((MNIST_DIR / f"{stem}.gz").read_bytes()))
    ds = load_dataset("my-digits", d)
    assert ds.name == "my-digits" and len(ds.y_train) == 60000
    np.testing.assert_array_equal(ds.x_test[:5], mnist.x_test[:5])


def test_channel_statistics_are_exact_without_a_float_copy():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (300_000, 1, 1, 3), dtype=np.uint8)      # more than one counting slice per channel
    x[:, 0, 0, 1] //= 4                                               # channels that differ
    ref = x.reshape(-1, 3).astype(np.float64) / 255.0
    mean, std = sources._stats(x)
    np.testing.assert_allclose(mean, ref.mean(0), rtol=1e-10)
    np.testing.assert_allclose(std, ref.std(0), rtol=1e-10)
    assert sources._stats(np.full((4, 2, 2, 1), 7, np.uint8))[1] == (1e-6,)     # a constant channel: the floor
    np.testing.assert_allclose(sources._stats(x.astype(np.float32))[0], ref.mean(0), rtol=1e-6)


def test_truncated_gzip_names_the_file(tmp_path):
    for stem in sources.MNIST_FILES:
        shutil.copy(MNIST_DIR / f"{stem}.gz", tmp_path)
    bad = tmp_path / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:5000])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz"):
        load_dataset("mnist", tmp_path)


def test_checksum_mismatch_is_reported(tmp_path):
    stem = "t10k-labels-idx1-ubyte"
    raw = bytearray(gzip.decompress((MNIST_DIR / f"{stem}.gz").read_bytes()))
    raw[100] = (raw[100] + 1) % 10
    (tmp_path / f"{stem}.gz").write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match="checksum mismatch"):
        sources._check_idx_md5(tmp_path / f"{stem}.gz", stem)


def test_missing_data_dir_is_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("mnist", tmp_path / "nope")


def test_unknown_dataset_lists_choices():
    with pytest.raises(DataError, match="mnist, cifar10"):
        load_dataset("imagenet")


def test_env_var_resolution(monkeypatch, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(MNIST_DIR, root / "mnist")
    monkeypatch.setenv("EDGEPACK_DATA", str(root))
    assert load_dataset("mnist").source == str(root / "mnist")


def test_fallback_is_announced_never_silent(monkeypatch, capsys):
    def offline(dest):
        raise OSError("network unreachable")
    monkeypatch.setitem(sources.DATASETS, "mnist", sources.DatasetSpec(
        **{**sources.DATASETS["mnist"].__dict__, "download": offline}))
    ds = load_dataset("mnist")
    err = capsys.readouterr().err
    assert "OFFLINE FALLBACK" in err and "network unreachable" in err
    assert "scikit-learn" in ds.source and ds.notes
    assert ds.x_train.shape[1:] == (28, 28, 1) and len(ds.y_test) == 360
    with pytest.raises(DataError, match="no local copy"):
        load_dataset("mnist", allow_fallback=False)


def _png_tree(root, classes, n=3, size=(10, 12)):
    from PIL import Image
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")


def test_generic_image_folder(tmp_path):
    _png_tree(tmp_path / "pets", ["dog", "cat", "bird"])
    ds = load_dataset("pets", tmp_path / "pets")
    assert ds.classes == ["bird", "cat", "dog"]                      # sorted folder names
    assert ds.x_train.shape == (9, 10, 12, 3) and list(np.bincount(ds.y_train)) == [3, 3, 3]
    assert len(ds.mean) == 3 and all(0 < s for s in ds.std)


def test_caches_filled_by_two_processes_at_once_stay_whole(tmp_path, monkeypatch):
    """Workers of a grid on a fresh machine load the same data at once. Here a second loader finishes while the
    first is mid-write: the first must neither destroy the folder the second published (and may be reading) nor
    trip over a temporary they share; both get the data, and no temporaries are left."""
    monkeypatch.setenv("EDGEPACK_CACHE", str(tmp_path / "cache"))
    _png_tree(tmp_path / "src" / "pets", ["dog", "cat"])
    tarball = tmp_path / "pets.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(tmp_path / "src" / "pets", arcname="pets")
    real_extract, in_use = sources.safe_extract, []

    def extract_while_another_finishes(src, dest):
        real_extract(src, dest)
        if not in_use:                               # the other process: extracts, publishes, starts reading
            in_use.append(None)
            in_use[0] = sources._extracted(tarball)
            (in_use[0] / "reading").touch()
    monkeypatch.setattr(sources, "safe_extract", extract_while_another_finishes)
    folder = sources._extracted(tarball)
    assert folder == in_use[0] and (folder / "reading").is_file() and (folder / ".done").is_file()
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]          # no temporaries left
    mask = os.umask(0o022)
    os.umask(mask)
    assert folder.stat().st_mode & 0o777 == 0o777 & ~mask                           # as mkdir would make it

    real_save, other = np.save, []

    def save_while_another_finishes(path, array):
        real_save(path, array)
        if not other:                                # the other process decodes and publishes in between
            other.append(None)
            other[0] = sources.load_image_tree("pets", folder / "pets")
            (published,) = (d for d in (tmp_path / "cache" / "decoded").iterdir() if (d / ".done").is_file())
            (published / "reading").touch()          # (our own temporary lies beside it, still unmarked)
    monkeypatch.setattr(np, "save", save_while_another_finishes)
    ds = sources.load_image_tree("pets", folder / "pets")
    assert ds.x_train.shape == other[0].x_train.shape == (6, 10, 12, 3)
    decoded = tmp_path / "cache" / "decoded"
    (cached,) = decoded.iterdir()                                                     # one folder, no temporaries
    assert sorted(p.name for p in cached.iterdir()) == [".done", "reading", "x_test.npy", "x_train.npy",
                                                        "y_test.npy", "y_train.npy"]  # the winner's, kept
    np.testing.assert_array_equal(np.load(cached / "x_train.npy"), ds.x_train)
    assert cached.stat().st_mode & 0o777 == 0o777 & ~mask
    assert (cached / "x_train.npy").stat().st_mode & 0o777 == 0o666 & ~mask


def test_decoded_images_are_mapped_not_read_and_writes_stay_private(tmp_path, monkeypatch):
    """A later load maps the decoded arrays (a benchmark child reads the test split alone, not 150 MB of CIFAR-10
    training images); a consumer that writes into them in place changes its own copy, never the cache; a tarball's
    extraction is keyed by its path, not by a walk over every image file."""
    monkeypatch.setenv("EDGEPACK_CACHE", str(tmp_path / "cache"))
    _png_tree(tmp_path / "src" / "pets", ["dog", "cat"])
    (tmp_path / "cache" / "decoded").mkdir(parents=True)
    np.savez(tmp_path / "cache" / "decoded" / "pets-0123456789abcdef.npz", x=np.zeros(3))    # the old format
    (tmp_path / "cache" / "decoded" / "birds-0123456789abcdef.npz").write_bytes(b"another data set's")
    first = load_dataset("pets", tmp_path / "src" / "pets")
    assert sorted(p.suffix for p in (tmp_path / "cache" / "decoded").iterdir()) == ["", ".npz"]   # pets' removed
    again = load_dataset("pets", tmp_path / "src" / "pets")
    assert again.x_train.base is not None and not again.x_train.flags.owndata          # a view of a mapping
    np.testing.assert_array_equal(first.x_train, again.x_train)
    again.x_train[:] = 0
    again.y_test[:] = 1
    third = load_dataset("pets", tmp_path / "src" / "pets")
    np.testing.assert_array_equal(first.x_train, third.x_train)
    np.testing.assert_array_equal(first.y_test, third.y_test)
    tarball = tmp_path / "pets.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(tmp_path / "src" / "pets", arcname="pets")
    monkeypatch.setattr(sources, "_tree_stamp", lambda root: pytest.fail("a tarball's extraction was walked"))
    ds = sources.load_cifar_like("pets", tarball, (0.5,) * 3, (0.25,) * 3)
    assert ds.x_test.shape == (6, 10, 12, 3)


def test_tarball_path_traversal_is_refused(tmp_path):
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    from edgepack.toolkit.data.images import safe_extract
    with pytest.raises(DataError, match="outside"):
        safe_extract(evil, tmp_path / "dest")
    assert not (tmp_path / "escape.txt").exists()


def test_cifar_python_batches(tmp_path):
    import pickle
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 255, (4, 3072), dtype=np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": list(range(4))}, f)
    ds = load_dataset("cifar10", tmp_path)
    assert ds.x_train.shape == (20, 32, 32, 3) and ds.x_test.shape == (4, 32, 32, 3)
    # channel-planar rows become NHWC pixels
    with open(folder / "test_batch", "rb") as f:
        row = pickle.load(f)[b"data"][0]
    assert ds.x_test[0, 0, 0, 1] == row[1024]


@pytest.mark.slow
def test_cifar10_jpeg_tarball():
    ds = load_dataset("cifar10", CIFAR_TARBALL)
    assert ds.x_train.shape == (50000, 32, 32, 3) and ds.x_test.shape == (10000, 32, 32, 3)
    assert ds.classes[0] == "airplane" and ds.classes[-1] == "truck"
    assert list(np.bincount(ds.y_test)) == [1000] * 10


def test_split_layout_and_calibration(mnist):
    tr, va = mnist.split(0.1, seed=3)
    assert len(va) == 6000 and len(np.intersect1d(tr, va)) == 0
    tr2, va2 = mnist.split(0.1, seed=3)
    np.testing.assert_array_equal(va, va2)
    nhwc = mnist.normalize(mnist.x_test[:4], "NHWC")
    nchw = mnist.normalize(mnist.x_test[:4], "NCHW")
    np.testing.assert_array_equal(nhwc.transpose(0, 3, 1, 2), nchw)
    assert abs(float(mnist.normalize(mnist.x_train[:5000]).mean())) < 0.05     # per-dataset normalisation
    cal = mnist.calibration(64, layout="NCHW")
    assert cal.shape == (64, 1, 28, 28) and cal.dtype == np.float32

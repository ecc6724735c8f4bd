import numpy as np
import pytest

from edgepack.toolkit.arch import ArchSpec, get_arch, list_archs
from edgepack.toolkit.arch import spec as S
from edgepack.toolkit.backends import get_backend
from edgepack.toolkit.errors import ModelError, OptionError

# Parameter counts fixed by the product description (trainable for cifar-base, total elsewhere).
EXPECTED = {"mnist-tutorial": ("total", 20410), "cifar-teacher": ("total", 961706),
            "cifar-student": ("total", 156074), "cifar-base": ("trainable", 1187562), "resnet8": ("total", 78666)}


@pytest.fixture(scope="module")
def backends():
    return get_backend("torch"), get_backend("keras")


def test_every_expected_arch_is_registered():
    assert set(EXPECTED) <= set(list_archs())
    assert "cifar-ds-student" in list_archs()


@pytest.mark.parametrize("name", list_archs())
def test_param_counts_and_shapes_match_across_frameworks(name, backends):
    spec = get_arch(name)
    counted = spec.counts()
    T, K = backends
    tm, km = T.build(spec), K.build(spec)
    for b, m in ((T, tm), (K, km)):
        got = b.count_params(m)
        assert got["trainable"] == counted["trainable"] and got["total"] == counted["total"], b.NAME
    if name in EXPECTED:
        key, value = EXPECTED[name]
        assert counted[key] == value
    x = np.zeros((2, *spec.input_shape), np.float32)
    assert T.predict(tm, x.transpose(0, 3, 1, 2)).shape == K.predict(km, x).shape == (2, *spec.output_shape())


def test_depthwise_separable_student_uses_separable_layers():
    spec = get_arch("cifar-ds-student")
    assert sum(isinstance(n.layer, S.SeparableConv) for n in spec.walk()) == 5
    assert spec.counts()["total"] < get_arch("cifar-student").counts()["total"]


def test_spec_dict_round_trip():
    for name in list_archs():
        spec = get_arch(name)
        assert ArchSpec.from_dict(spec.to_dict()) == spec


def test_bad_descriptions_fail_with_clear_errors():
    with pytest.raises(ModelError, match="unknown layer type 'Conv3D'"):
        ArchSpec.from_dict({"name": "x", "input_shape": [8, 8, 1], "num_classes": 2, "layers": [{"type": "Conv3D"}]})
    with pytest.raises(ModelError, match="Flatten or GlobalAvgPool"):
        ArchSpec("x", (8, 8, 1), 2, (S.Dense(2),)).walk()
    with pytest.raises(ModelError, match="ends in shape"):
        ArchSpec("x", (8, 8, 1), 3, (S.Flatten(), S.Dense(2))).walk()
    with pytest.raises(ModelError, match="residual branches disagree"):
        ArchSpec("x", (8, 8, 4), 2, (S.Residual((S.Conv(8),)), S.GlobalAvgPool(), S.Dense(2))).walk()
    with pytest.raises(OptionError, match="resnet8"):
        get_arch("resnet9")


def test_grouped_and_depthwise_convs_build_in_both(backends):
    spec = ArchSpec("g", (16, 16, 8), 4, (S.Conv(16, 3, groups=4), S.DepthwiseConv(3, 2, multiplier=2),
                                           S.Activation("relu6"), S.AvgPool(2), S.GlobalAvgPool(), S.Dense(4)))
    counted = spec.counts()
    assert counted["trainable"] == (3 * 3 * 2 * 16 + 16) + (3 * 3 * 32 + 32) + (32 * 4 + 4)
    _assert_transfer_exact(spec, backends, np.random.default_rng(1).normal(size=(4, 16, 16, 8)).astype(np.float32))


def _assert_transfer_exact(spec, backends, x, tol=1e-4):
    import torch
    T, K = backends
    tm = T.build(spec, seed=0)
    for m in tm.modules():                           # make BatchNorm statistics non-trivial
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    km = K.build(spec, seed=1)
    K.set_weights(km, T.get_weights(tm, spec), spec)       # through the shared (spec) layout
    a, b = T.predict(tm, x.transpose(0, 3, 1, 2)), K.predict(km, x)
    assert np.abs(a - b).max() < tol
    back = T.build(spec, seed=7)
    T.set_weights(back, K.get_weights(km, spec), spec)
    assert np.abs(T.predict(back, x.transpose(0, 3, 1, 2)) - a).max() < tol


@pytest.mark.parametrize("name", ["mnist-tutorial", "cifar-base", "cifar-ds-student", "resnet8", "tiny-det"])
def test_weight_transfer_on_real_images(name, backends, mnist):
    spec = get_arch(name)
    if spec.input_shape == (28, 28, 1):
        x = mnist.normalize(mnist.x_test[:64])
    elif spec.input_shape == (96, 96, 1):   # a detector: real digits padded onto 96 px canvases, off-centre
        x = np.pad(mnist.normalize(mnist.x_test[:16]), ((0, 0), (10, 58), (40, 28), (0, 0)))
    else:  # real CIFAR-shaped input from real MNIST digits, tiled to RGB and resized by padding
        x = np.repeat(np.pad(mnist.normalize(mnist.x_test[:64]), ((0, 0), (2, 2), (2, 2), (0, 0))), 3, axis=-1)
    _assert_transfer_exact(spec, backends, x)


def test_weights_that_do_not_fit_name_what_is_unset_and_what_has_no_place(backends):
    """The torch implementation reports missing and unexpected tensors under the right names (transfer.py once
    swapped them)."""
    from edgepack.toolkit.errors import ModelError
    T, _ = backends
    spec = get_arch("mnist-tutorial")
    model = T.build(spec)
    w = T.get_weights(model)
    first = next(iter(w))
    w["no.such.tensor"] = w.pop(first)
    with pytest.raises(ModelError) as e:
        T.set_weights(model, w, spec)
    msg = str(e.value)
    assert msg.index(first) < msg.index("no place") < msg.index("no.such.tensor")
    assert "left unset" in msg.split(first)[0]

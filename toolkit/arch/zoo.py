"""Built-in architectures, registered by name (timm-style `register` / `get_arch` / `list_archs`)."""
from __future__ import annotations

from typing import Callable

from edgepack.toolkit.arch.spec import (ArchSpec, AvgPool, BatchNorm, Conv, Dense, DepthwiseConv, Dropout, Flatten,
                               GlobalAvgPool, GridOutput, MaxPool, Residual, SeparableConv, Activation)
from edgepack.toolkit.errors import OptionError

_REGISTRY: dict[str, Callable[..., ArchSpec]] = {}


def register(fn: Callable[..., ArchSpec]) -> Callable[..., ArchSpec]:
    _REGISTRY[fn.__name__.replace("_", "-")] = fn
    return fn


def list_archs() -> list[str]:
    return sorted(_REGISTRY)


def get_arch(name: str, **overrides) -> ArchSpec:
    try:
        fn = _REGISTRY[name]
    except KeyError:
        raise OptionError(f"unknown architecture {name!r}; built-in: {', '.join(list_archs())}") from None
    return fn(**overrides)


def _cbr(filters, stride=1, kernel=3):
    return (Conv(filters, kernel, stride, bias=True), BatchNorm(), Activation("relu"))


@register
def mnist_tutorial(input_shape=(28, 28, 1), num_classes=10) -> ArchSpec:
    """The TFMOT/TFLite tutorial model: Conv 12@3x3, MaxPool 2, Flatten, Dense 10."""
    return ArchSpec("mnist-tutorial", tuple(input_shape), num_classes,
                    (Conv(12, 3, padding="valid", activation="relu"), MaxPool(2), Flatten(), Dense(num_classes)),
                    "TFMOT MNIST tutorial CNN")


@register
def mnist_small(input_shape=(28, 28, 1), num_classes=10) -> ArchSpec:
    """A compact MNIST CNN (~20k params) aimed at >= 99% with a full-integer file under 8 kB gzipped."""
    return ArchSpec("mnist-small", tuple(input_shape), num_classes,
                    (Conv(8, 3, padding="valid"), BatchNorm(), Activation("relu"), MaxPool(2),
                     Conv(16, 3, padding="valid"), BatchNorm(), Activation("relu"), MaxPool(2),
                     Conv(32, 3, padding="valid"), BatchNorm(), Activation("relu"),
                     GlobalAvgPool(), Dense(num_classes)),
                    "three conv-bn-relu stages with global pooling")


@register
def mnist_teacher(input_shape=(28, 28, 1), num_classes=10) -> ArchSpec:
    """A larger MNIST CNN used as the distillation teacher in the Keras MNIST flow."""
    r = "relu"
    return ArchSpec("mnist-teacher", tuple(input_shape), num_classes,
                    (Conv(32, activation=r), MaxPool(2), Conv(64, activation=r), MaxPool(2), Flatten(),
                     Dense(128, activation=r), Dropout(0.3), Dense(num_classes)),
                    "MNIST distillation teacher")


@register
def cifar_teacher(input_shape=(32, 32, 3), num_classes=10) -> ArchSpec:
    """7 conv + 2 dense teacher (961,706 parameters)."""
    r = "relu"
    return ArchSpec("cifar-teacher", tuple(input_shape), num_classes,
                    (Conv(32, activation=r), Conv(32, activation=r), MaxPool(2),
                     Conv(64, activation=r), Conv(64, activation=r), MaxPool(2),
                     Conv(128, activation=r), Conv(128, activation=r), Conv(128, activation=r), MaxPool(2),
                     Flatten(), Dense(256, activation=r), Dropout(0.3), Dense(num_classes)),
                    "VGG-style CIFAR teacher")


@register
def cifar_student(input_shape=(32, 32, 3), num_classes=10) -> ArchSpec:
    """3 conv + 2 dense student (156,074 parameters)."""
    r = "relu"
    return ArchSpec("cifar-student", tuple(input_shape), num_classes,
                    (Conv(16, activation=r), MaxPool(2), Conv(32, activation=r), MaxPool(2),
                     Conv(64, activation=r), MaxPool(2), Flatten(), Dense(128, activation=r), Dropout(0.1),
                     Dense(num_classes)),
                    "small CIFAR student")


@register
def cifar_base(input_shape=(32, 32, 3), num_classes=10) -> ArchSpec:
    """conv-bn-relu 128/64/64/32 + 2048->512->10 (1,187,562 trainable parameters)."""
    return ArchSpec("cifar-base", tuple(input_shape), num_classes,
                    (*_cbr(128), *_cbr(64), MaxPool(2), *_cbr(64), *_cbr(32), MaxPool(2),
                     Flatten(), Dense(512, activation="relu"), Dropout(0.1), Dense(num_classes)),
                    "the structured-pruning base model")


@register
def cifar_ds_student(input_shape=(32, 32, 3), num_classes=10) -> ArchSpec:
    """Depthwise-separable CIFAR student."""
    def sep(f, s=1):
        return (SeparableConv(f, 3, s, bias=False), BatchNorm(), Activation("relu"))
    return ArchSpec("cifar-ds-student", tuple(input_shape), num_classes,
                    (*_cbr(32), *sep(64), *sep(64), MaxPool(2), *sep(128), *sep(128), MaxPool(2),
                     *sep(256), MaxPool(2), GlobalAvgPool(), Dropout(0.1), Dense(num_classes)),
                    "depthwise-separable student")


@register
def resnet8(input_shape=(32, 32, 3), num_classes=10) -> ArchSpec:
    """MLPerf Tiny image-classification reference (ResNet-8, 78,666 parameters incl. BN statistics)."""
    def block(f, stride):
        body = (Conv(f, 3, stride), BatchNorm(), Activation("relu"), Conv(f, 3, 1), BatchNorm())
        shortcut = (Conv(f, 1, stride),) if stride != 1 else ()
        return Residual(body, shortcut, "relu")
    return ArchSpec("resnet8", tuple(input_shape), num_classes,
                    (*_cbr(16), block(16, 1), block(32, 2), block(64, 2), GlobalAvgPool(), Dense(num_classes)),
                    "MLPerf Tiny ResNet-8")


__all__ = ["register", "list_archs", "get_arch", "DepthwiseConv", "AvgPool"]


def _dense_bn_relu(units: int) -> tuple:
    return (Dense(units), BatchNorm(), Activation("relu"))


@register
def ae_fc(input_shape=(28, 28, 1), num_classes=None) -> ArchSpec:
    """MLPerf Tiny's anomaly-detection autoencoder (4 x Dense 128 + BN + ReLU, a bottleneck of 8, 4 x Dense 128,
    a linear reconstruction), its 640-value input adapted to the image's H x W x C values."""
    size = int(input_shape[0] * input_shape[1] * input_shape[2])
    layers = (Flatten(),) + sum((_dense_bn_relu(128) for _ in range(4)), ()) + _dense_bn_relu(8) \
        + sum((_dense_bn_relu(128) for _ in range(4)), ()) + (Dense(size),)
    return ArchSpec("ae-fc", tuple(input_shape), size, layers,
                    "MLPerf Tiny AD fully-connected autoencoder; output: the input's values, flattened (H, W, C)")


@register
def ae_conv(input_shape=(28, 28, 1), num_classes=None) -> ArchSpec:
    """A small convolutional autoencoder: two strided conv-bn-relu stages, a dense bottleneck of 32, a dense decoder."""
    size = int(input_shape[0] * input_shape[1] * input_shape[2])
    return ArchSpec("ae-conv", tuple(input_shape), size,
                    _cbr(16, stride=2) + _cbr(32, stride=2) + (Flatten(),) + _dense_bn_relu(32) + _dense_bn_relu(128)
                    + (Dense(size),),
                    "convolutional encoder, dense decoder; output: the input's values, flattened (H, W, C)")


@register
def tiny_det(input_shape=(96, 96, 1), num_classes=10) -> ArchSpec:
    """edgepack's reference detector: five conv-bn-relu stages to stride 8 and a 1x1 grid head (one box per cell:
    centre offset, size, objectness, class logits; decoded in the harness by `edgepack.toolkit.tasks.detection`)."""
    return ArchSpec("tiny-det", tuple(input_shape), num_classes,
                    _cbr(16, stride=2) + _cbr(32, stride=2) + _cbr(64, stride=2) + _cbr(64) + _cbr(64)
                    + (Conv(5 + num_classes, 1), GridOutput()),
                    "single-scale anchor-free grid detector (stride 8); output (cells, 5 + classes)")


@register
def ds_cnn(input_shape=(49, 10, 1), num_classes=12) -> ArchSpec:
    """MLPerf Tiny's keyword-spotting reference (DS-CNN, `keras_model.py` 'ds_cnn'): Conv 64@10x4 stride 2, four
    depthwise-separable blocks (3x3 depthwise, 1x1 pointwise, each followed by BN + ReLU), dropout 0.4, average
    pooling over the whole map, Dense. Input: 49 MFCC frames x 10 coefficients (`edgepack.toolkit.data.audio`)."""
    r = ()
    for _ in range(4):
        r += (DepthwiseConv(3), BatchNorm(), Activation("relu"), Conv(64, 1), BatchNorm(), Activation("relu"))
    return ArchSpec("ds-cnn", tuple(input_shape), num_classes,
                    (Conv(64, (10, 4), (2, 2)), BatchNorm(), Activation("relu"), Dropout(0.2)) + r
                    + (Dropout(0.4), GlobalAvgPool(), Dense(num_classes)),
                    "MLPerf Tiny KWS DS-CNN: depthwise-separable CNN on 49x10 MFCC frames")

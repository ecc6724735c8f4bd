"""The framework interface: what edgepack needs of a training framework, in one abstract class.

`TorchFramework` (toolkit/backends/torch) and `KerasFramework` (toolkit/backends/keras) fill it; everything else
works on a `Framework` object it got from `edgepack.toolkit.backends.get_backend` / `backend_for_file` / `backend_for_model`,
never on a framework's name (as Model Compression Toolkit passes one `fw_impl` to framework-free code).

The core methods are abstract. Capabilities (distillation, pruning, QAT, a direct TFLite route) default to
"not supported": an implementation declares one by overriding it, and `supports(name)` tells callers which.
Weights cross frameworks in one layout: NumPy arrays in PyTorch's layout, keyed by architecture-spec node names.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from edgepack.toolkit.errors import OptionError

CAPABILITIES = ("kd_loss", "hint_distillation", "prune", "prune_structured", "qat_apply", "to_tflite", "to_pte")


class NotSupported(OptionError):
    """A capability this framework's implementation does not have."""


class Framework(ABC):
    NAME: str = ""                # "torch", "keras": the key in records, recipes and --framework
    LAYOUT: str = ""              # input layout the framework's models take: "NCHW" or "NHWC"
    SUFFIXES: tuple[str, ...] = ()  # checkpoint file suffixes, the preferred one first
    PACKAGE: str = ""             # import name that must be installed
    EXTRA: str = ""               # pip extra that installs it
    TFLITE_MODES: tuple[str, ...] = ()  # the modes `to_tflite` writes (the framework's own TFLite converter)
    TFLITE_PACKAGE: str = ""      # import name that converter needs (checked before `auto` picks it)
    TFLITE_ROUTE: str = "onnx2tf"  # what `--tflite-route auto` takes for this framework's models

    def __repr__(self) -> str:
        return f"<framework {self.NAME}>"

    # ------------------------------------------------------------ core
    @abstractmethod
    def owns(self, model) -> bool:
        """True when `model` is an in-memory model of this framework."""

    @abstractmethod
    def build(self, spec, seed: int | None = 0):
        """A fresh model for an `ArchSpec` (deterministic init when `seed` is given)."""

    @abstractmethod
    def save(self, model, path: str | Path) -> Path: ...

    @abstractmethod
    def load(self, path: str | Path, spec=None, model=None): ...

    @abstractmethod
    def preferred_suffix(self, model) -> str: ...

    @abstractmethod
    def predict(self, model, x, batch_size: int = 500):
        """Logits (NumPy) for float32 input in this framework's LAYOUT."""

    def predict_outputs(self, model, x, batch_size: int = 500) -> dict:
        """Every output by name (NumPy); models built from a description have one, named 'logits' as in their ONNX."""
        return {"logits": self.predict(model, x, batch_size)}

    @abstractmethod
    def fit(self, model, ds, cfg, *, loss_fn=None, verbose: bool = True, callbacks=None, extra_parameters=None,
            objective: str = "classification"):
        """Train in place with `edgepack.toolkit.train.run_epochs`; returns its History. `objective` (a task's): classification
        (cross-entropy on labels), reconstruction (mean squared error against the input, flattened H, W, C) or boxes
        (a grid detection head's loss on the per-cell targets `ds.y_train` holds then)."""

    @abstractmethod
    def evaluate(self, model, ds, indices=None, split: str = "test") -> tuple[float, float]:
        """(mean cross-entropy, top-1 accuracy)."""

    @abstractmethod
    def count_params(self, model) -> dict:
        """{'trainable', 'non_trainable', 'total', 'nonzero'}: every tensor, buffers included."""

    @abstractmethod
    def count_nonzero_trainable(self, model) -> int:
        """Non-zero entries of the trainable tensors (what pruning changes)."""

    @abstractmethod
    def get_weights(self, model, spec=None) -> dict:
        """Weights in the shared layout (PyTorch's, keyed by spec node names)."""

    @abstractmethod
    def set_weights(self, model, weights: dict, spec=None, strict: bool = True) -> None: ...

    @abstractmethod
    def to_onnx(self, model, path: str | Path, input_shape_hwc: tuple[int, int, int], opset: int | None = None) -> dict:
        """Write an fp32 ONNX file (input 'input', dynamic batch); returns details for the manifest."""

    def check_input(self, model, hwc) -> None:
        """ModelError when the model cannot take images of shape (H, W, C). Built models are checked against
        their architecture spec by `edgepack.toolkit.api.check_fits`; a model file read from disk checks its own input."""

    # ------------------------------------------------------------ capabilities (not supported unless overridden)
    def _unsupported(self, what: str):
        raise NotSupported(f"{what} is not available for {self.NAME} models")

    def kd_loss(self, teacher, alpha: float, temperature: float):
        """loss_fn(logits, y, x) for knowledge distillation from a frozen `teacher`."""
        self._unsupported("distillation")

    def hint_distillation(self, student, teacher, student_layer: str, teacher_layer: str, weight: float, dataset):
        """An object with wrap(loss) -> loss, parameters (list) and detach(): feature (hint) distillation."""
        self._unsupported("feature (hint) distillation")

    def prune(self, model, dataset, cfg, schedule, *, method: str, scope: str, block_size, verbose: bool):
        """Unstructured pruning while fine-tuning with `cfg` under a sparsity `schedule`; returns the pruned model
        with its masks made permanent."""
        self._unsupported("unstructured pruning")

    def prune_structured(self, model, spec, dataset, *, ratio: float, criterion: str, layers, calibration_batches: int):
        """Channel pruning; returns (model, spec or None, notes)."""
        self._unsupported("structured pruning")

    def qat_apply(self, model, preserve_sparsity: bool):
        self._unsupported("quantization-aware training")

    def qat_strip(self, model):
        return model

    def sparsity_report(self, model) -> dict:
        return {}

    def to_tflite(self, model, mode: str, representative=None, io_dtype: str = "int8", per_channel: bool = True,
                  dense_per_channel: bool | None = None, float_nodes: tuple[str, ...] = (), input_shape_hwc=None,
                  input_layout: str = "NHWC") -> tuple[bytes, dict]:
        """The framework's own TFLite converter, the `converter` route (otherwise TFLite files go through ONNX and
        onnx2tf), for the modes in TFLITE_MODES. `representative()` yields [one float image in `input_layout`];
        `float_nodes`: TFLite nodes (output tensor names) kept float in an int8 file."""
        self._unsupported("a direct TFLite converter")

    def to_pte(self, model, mode: str, input_shape_hwc, calibration=None, per_channel: bool = True) -> tuple[bytes, dict]:
        """An ExecuTorch program ("fp32" or "int8", calibrated on `calibration`: float images in the model's layout)."""
        self._unsupported("ExecuTorch (.pte) export")

    def supports(self, capability: str) -> bool:
        if capability not in CAPABILITIES:
            raise ValueError(f"unknown capability {capability!r}; known: {CAPABILITIES}")
        return getattr(type(self), capability) is not getattr(Framework, capability)

    def capabilities(self) -> list[str]:
        return [c for c in CAPABILITIES if self.supports(c)]

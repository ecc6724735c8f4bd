"""The PyTorch implementation of the framework interface (edgepack.toolkit.backends.base.Framework).

Its modules (model, train, compress, export) import torch; this class imports them when first used."""
from __future__ import annotations

from pathlib import Path

from edgepack.toolkit.backends.base import Framework
from edgepack.toolkit.errors import OptionError


class TorchFramework(Framework):
    NAME = "torch"
    LAYOUT = "NCHW"
    SUFFIXES = (".pt", ".pth")
    PACKAGE = "torch"
    EXTRA = "torch"
    TFLITE_MODES = ("fp32", "dynamic", "int8")   # litert-torch + ai-edge-quantizer (toolkit/backends/torch/litert.py)
    TFLITE_PACKAGE = "litert_torch"
    TFLITE_ROUTE = "onnx2tf"          # auto's pick, from benchmarks/results/tflite_routes (both routes measured)

    def owns(self, model) -> bool:
        if type(model).__module__.startswith(("torch", "torchvision", "edgepack.toolkit.backends.torch")):
            return True
        import sys
        torch = sys.modules.get("torch")                 # a torch model exists only if torch was imported
        return torch is not None and isinstance(model, torch.nn.Module)

    # ------------------------------------------------------------ core
    def build(self, spec, seed: int | None = 0):
        from edgepack.toolkit.backends.torch.model import build
        return build(spec, seed)

    def save(self, model, path: str | Path) -> Path:
        from edgepack.toolkit.backends.torch.model import save
        return save(model, path)

    def load(self, path: str | Path, spec=None, model=None):
        from edgepack.toolkit.backends.torch.model import load
        return load(path, spec, model)

    def preferred_suffix(self, model) -> str:
        return ".pt"

    def predict(self, model, x, batch_size: int = 500):
        from edgepack.toolkit.backends.torch.model import predict
        return predict(model, x, batch_size)

    def predict_outputs(self, model, x, batch_size: int = 500) -> dict:
        from edgepack.toolkit.backends.torch.model import predict_outputs
        return predict_outputs(model, x, batch_size)

    def fit(self, model, ds, cfg, **kw):
        from edgepack.toolkit.backends.torch.train import fit
        return fit(model, ds, cfg, **kw)

    def evaluate(self, model, ds, indices=None, split: str = "test"):
        from edgepack.toolkit.backends.torch.train import evaluate
        return evaluate(model, ds, indices, split)

    def count_params(self, model) -> dict:
        from edgepack.toolkit.backends.torch.model import count_params
        return count_params(model)

    def count_nonzero_trainable(self, model) -> int:
        return int(sum(int((p != 0).sum()) for p in model.parameters()))

    def get_weights(self, model, spec=None) -> dict:
        return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}

    def set_weights(self, model, weights: dict, spec=None, strict: bool = True) -> None:
        import numpy as np
        import torch
        from edgepack.toolkit.errors import ModelError
        result = model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()},
                                       strict=False)
        unset = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
        if strict and (unset or result.unexpected_keys):
            raise ModelError(f"weights do not fit the model: tensors left unset {unset[:3]}, "
                             f"tensors with no place {result.unexpected_keys[:3]}")

    def to_pte(self, model, mode, input_shape_hwc, calibration=None, per_channel=True):
        from edgepack.toolkit.backends.torch.executorch import to_pte
        return to_pte(model, mode, input_shape_hwc, calibration, per_channel)

    def to_tflite(self, model, mode: str, representative=None, io_dtype: str = "int8", per_channel: bool = True,
                  dense_per_channel: bool | None = None, float_nodes: tuple[str, ...] = (), input_shape_hwc=None,
                  input_layout: str = "NHWC"):
        from edgepack.toolkit.backends.torch.litert import to_tflite
        return to_tflite(model, mode, representative, io_dtype, per_channel,
                         per_channel if dense_per_channel is None else dense_per_channel, tuple(float_nodes),
                         input_shape_hwc, input_layout)

    def to_onnx(self, model, path, input_shape_hwc, opset: int | None = None) -> dict:
        from edgepack.toolkit.backends.torch.export import DEFAULT_OPSET, to_onnx
        return to_onnx(model, path, input_shape_hwc, opset or DEFAULT_OPSET)

    # ------------------------------------------------------------ capabilities
    def kd_loss(self, teacher, alpha: float, temperature: float):
        from edgepack.toolkit.backends.torch.compress import kd_loss
        return kd_loss(teacher, alpha, temperature)

    def hint_distillation(self, student, teacher, student_layer, teacher_layer, weight, dataset):
        import torch
        from edgepack.toolkit.backends.torch.compress import HintDistillation
        hint = HintDistillation(student, teacher, student_layer, teacher_layer, weight)
        x = torch.from_numpy(dataset.calibration(2, layout="NCHW"))   # one forward pass sizes the 1x1 adapter
        student.eval()(x)
        teacher.eval()(x)
        hint.build_adapter(hint.feats["s"].shape, hint.feats["t"].shape)
        hint.parameters = list(hint.adapter.parameters())
        return hint

    def prune(self, model, dataset, cfg, schedule, *, method, scope, block_size, verbose):
        from edgepack.toolkit.backends.torch.compress import PruningCallback, strip_pruning
        from edgepack.toolkit.sparsity import ConstantSparsity
        if block_size:
            raise OptionError("block sparsity (block_size) is available for Keras models (TFMOT)")
        if method == "random" and not isinstance(schedule, ConstantSparsity):
            raise OptionError("random pruning is one-shot only")
        self.fit(model, dataset, cfg, verbose=verbose, callbacks=[PruningCallback(model, schedule, method, scope)])
        return strip_pruning(model)

    def prune_structured(self, model, spec, dataset, *, ratio, criterion, layers, calibration_batches):
        import torch
        from edgepack.toolkit.backends.torch.compress import prune_structured, spec_from_pruned
        from edgepack.toolkit.data import iterate_batches
        example = torch.from_numpy(dataset.calibration(1, layout="NCHW"))
        calib = None
        if criterion == "taylor":
            idx = dataset.split(0.1, 0)[0][: 64 * calibration_batches]
            calib = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in
                     iterate_batches(dataset, idx, 64, "NCHW", shuffle=False, augment=False, seed=0)]
        ignored = None
        if layers:
            mods = dict(model.named_modules())
            missing = [n for n in layers if n not in mods]
            if missing:
                raise OptionError(f"layer(s) {missing} do not exist in the model")
            keep = set(layers)
            ignored = [m for n, m in mods.items() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and n not in keep]
            ignored += [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1:]
        model = prune_structured(model, example, ratio, criterion, calib, ignored)
        if spec is not None:
            spec = spec_from_pruned(model, spec)
            model.edgepack_spec = spec
        return model, spec, {}

    def qat_apply(self, model, preserve_sparsity: bool):
        from edgepack.toolkit.backends.torch.compress import qat_apply
        return qat_apply(model, preserve_sparsity)

    def qat_strip(self, model):
        from edgepack.toolkit.backends.torch.compress import qat_strip
        return qat_strip(model)

    def sparsity_report(self, model) -> dict:
        from edgepack.toolkit.backends.torch.compress import sparsity_report
        return sparsity_report(model)


FRAMEWORK = TorchFramework()

"""Source checkpoints (.pt via PyTorch, .keras/.h5 via Keras) in the same harness as their exports."""
from __future__ import annotations

import numpy as np

from edgepack.runtimes.base import Runner, RunnerInfo, TensorSpec


class _CheckpointRunner(Runner):
    def _load(self) -> None:
        from edgepack.toolkit.api import load_checkpoint
        self.loaded = load_checkpoint(self.path)
        self.backend = self.loaded.backend
        self.model = self.loaded.model
        spec = self.loaded.spec
        if spec is not None:
            h, w, c = spec.input_shape
            n_out = spec.num_classes
        else:
            h, w, c, n_out = self._shapes_from_model()
        shape = (-1, c, h, w) if self.backend.LAYOUT == "NCHW" else (-1, h, w, c)
        self.inputs = [TensorSpec("input", shape, np.dtype(np.float32))]
        self.outputs = [TensorSpec("logits", (-1, n_out), np.dtype(np.float32))]
        self._prepare()

    def _shapes_from_model(self):
        raise NotImplementedError

    def _prepare(self) -> None:
        pass


class TorchRunner(_CheckpointRunner):
    runtime = "torch"
    format = "torch"
    suffixes = (".pt", ".pth")
    needs = ("torch",)
    extra = "torch"
    label = "PyTorch (eager)"

    def _prepare(self):
        import torch
        if self.threads:
            torch.set_num_threads(int(self.threads))
        self.model.eval()

    def _run(self, feed: np.ndarray):
        import torch
        with torch.inference_mode():
            return [self.model(torch.from_numpy(feed)).numpy()]

    def _shapes_from_model(self):
        """A TorchScript file declares no input shape: PyTorch's NCHW, sizes taken from the data."""
        return -1, -1, -1, -1

    def layout(self, image_shape):
        if all(d == -1 for d in self.input.shape[1:]):
            return "NCHW"
        return super().layout(image_shape)

    def info(self) -> RunnerInfo:
        import torch
        mode = "TorchScript" if isinstance(self.model, torch.jit.ScriptModule) else "eager, inference_mode"
        return RunnerInfo("torch", torch.__version__, self.threads, {"mode": mode})


class KerasRunner(_CheckpointRunner):
    runtime = "keras"
    format = "keras"
    suffixes = (".keras", ".h5")
    needs = ("tensorflow",)
    extra = "tf"
    label = "Keras (eager)"

    def _shapes_from_model(self):
        """A Keras file saved outside edgepack: the model itself says its input and output shapes."""
        from edgepack.toolkit.errors import ModelError
        ins, outs = tuple(self.model.input_shape), tuple(self.model.output_shape)
        if len(ins) != 4 or len(outs) != 2:
            raise ModelError(f"{self.path}: expected an image classifier (N, H, W, C) -> (N, classes), got {ins} -> {outs}")
        return ins[1], ins[2], ins[3], outs[1]

    def _run(self, feed: np.ndarray):
        return [self.model(feed, training=False).numpy()]

    def info(self) -> RunnerInfo:
        from edgepack.toolkit.tf_import import import_tensorflow
        tf = import_tensorflow()
        return RunnerInfo("keras", tf.__version__, self.threads, {"mode": "eager call"})


RUNNERS = (TorchRunner, KerasRunner,)   # registered by runtimes/__init__.py

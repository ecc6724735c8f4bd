"""Source checkpoints (.pt via PyTorch, .keras/.h5 via Keras) in the same harness as their exports."""
from __future__ import annotations

import numpy as np

from benchmarks.runners.base import Runner, RunnerInfo, TensorSpec


class _CheckpointRunner(Runner):
    def _load(self) -> None:
        from toolkit.api import load_checkpoint
        self.loaded = load_checkpoint(self.path)
        self.backend = self.loaded.backend
        spec = self.loaded.spec
        if spec is not None:
            h, w, c = spec.input_shape
            n_out = spec.num_classes
        else:
            h, w, c, n_out = self._shape_from_model()
        shape = (-1, c, h, w) if self.backend.LAYOUT == "NCHW" else (-1, h, w, c)
        self.inputs = [TensorSpec("input", shape, np.dtype(np.float32))]
        self.outputs = [TensorSpec("logits", (-1, n_out), np.dtype(np.float32))]
        self._set_threads()

    def _shape_from_model(self):  # pragma: no cover - users' own checkpoints always carry a record
        raise NotImplementedError


class TorchRunner(_CheckpointRunner):
    runtime = "torch"
    formats = (".pt", ".pth")
    needs = ("torch",)

    def _set_threads(self):
        import torch
        if self.threads:
            torch.set_num_threads(int(self.threads))
        self.model = self.loaded.model.eval()

    def _run(self, feed: np.ndarray):
        import torch
        with torch.inference_mode():
            return [self.model(torch.from_numpy(feed)).numpy()]

    def info(self) -> RunnerInfo:
        import torch
        return RunnerInfo("torch", torch.__version__, self.threads, {"mode": "eager, inference_mode"})


class KerasRunner(_CheckpointRunner):
    runtime = "keras"
    formats = (".keras", ".h5")
    needs = ("tensorflow",)

    def _set_threads(self):
        self.model = self.loaded.model
        self._fn = None

    def _run(self, feed: np.ndarray):
        return [self.model(feed, training=False).numpy()]

    def info(self) -> RunnerInfo:
        from toolkit.tf_import import import_tensorflow
        tf = import_tensorflow()
        return RunnerInfo("keras", tf.__version__, self.threads, {"mode": "eager call"})

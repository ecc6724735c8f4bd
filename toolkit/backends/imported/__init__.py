"""Models users bring as files (an fp32 .onnx or .tflite) behind the same framework interface as checkpoints.

They cannot be trained or compressed here (no framework graph to change), but they are sources for everything
downstream: `edgepack export` and `edgepack deploy` take one like a checkpoint. The source's outputs come from the
file run in its own runtime (ONNX Runtime, LiteRT), so every export is verified against the file the user gave;
the fp32 ONNX that the exporters build on is the file itself (.onnx) or its tf2onnx conversion (.tflite).

Input convention: the data set's normalisation (scale 1/255, the data set's mean/std), as for every file
`edgepack bench` measures without --mean/--std; the input layout (NCHW or NHWC) is read from the file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepack.toolkit.backends.base import Framework, NotSupported
from edgepack.toolkit.errors import ModelError

QUANTIZED_ONNX_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul",
                      "ConvInteger", "MatMulInteger", "QLinearAdd", "QGemm"}


class ImportedModel:
    """A model file and its loaded session; `layout` and `fixed_batch` are read from the file's input."""

    def __init__(self, path: Path, kind: str, input_shape: list, input_name: str = ""):
        self.path, self.kind, self.input_shape, self.input_name = Path(path), kind, list(input_shape), input_name
        self.session = None
        self.output_shapes: dict[str, tuple] = {}        # name -> shape (batch first, -1 dynamic), in the file's order

    def __repr__(self) -> str:
        return f"<imported {self.kind} model {self.path.name}, input {self.input_shape}>"

    def layout(self, hwc) -> str:
        """'NHWC' or 'NCHW' for images of shape (H, W, C); ModelError when the input fits neither."""
        h, w, c = hwc
        dims = [d if isinstance(d, int) and d > 0 else -1 for d in self.input_shape[1:]]

        def fits(want):
            return len(dims) == 3 and all(d in (-1, x) for d, x in zip(dims, want))
        if fits((h, w, c)) and dims[2] == c:
            return "NHWC"
        if fits((c, h, w)) and dims[0] == c:
            return "NCHW"
        raise ModelError(f"{self.path}: input shape {tuple(self.input_shape)} does not fit images of shape {tuple(hwc)} "
                         "(H, W, C)")

    @property
    def fixed_batch(self) -> int | None:
        b = self.input_shape[0] if self.input_shape else -1
        return b if isinstance(b, int) and b > 0 else None


class ImportedFramework(Framework):
    """What the file kinds share: no training, the source outputs from the file's runtime, batches the file takes."""
    EXTRA = "runtime"

    # ------------------------------------------------------------ core
    def owns(self, model) -> bool:
        return isinstance(model, ImportedModel) and model.kind == self.NAME

    def _no(self, what: str):
        raise NotSupported(f"{what} needs a checkpoint (.pt, .keras): an imported .{self.NAME} file can be exported, "
                           "deployed and benchmarked, not trained or compressed")

    def build(self, spec, seed: int | None = 0):
        self._no("building a model")

    def save(self, model, path: str | Path) -> Path:
        self._no("saving a changed model")

    def fit(self, model, ds, cfg, **kw):
        self._no("training")

    def get_weights(self, model, spec=None) -> dict:
        self._no("moving weights between frameworks")

    def set_weights(self, model, weights: dict, spec=None, strict: bool = True) -> None:
        self._no("moving weights between frameworks")

    def preferred_suffix(self, model) -> str:
        return self.SUFFIXES[0]

    def load(self, path: str | Path, spec=None, model=None) -> ImportedModel:
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: not found")
        model = self._open(path)
        if len(model.input_shape) != 4:
            raise ModelError(f"{path}: input shape {tuple(model.input_shape)} is not a batch of images (N, H, W, C or "
                             "N, C, H, W)")
        return model

    def check_input(self, model: ImportedModel, hwc) -> None:
        model.layout(hwc)

    def predict(self, model: ImportedModel, x, batch_size: int = 500):
        """Logits (the first output) for float32 NHWC input."""
        return next(iter(self.predict_outputs(model, x, batch_size).values()))

    def predict_outputs(self, model: ImportedModel, x, batch_size: int = 500) -> dict:
        """Every output by name for float32 NHWC input, in the batches the file takes (a fixed batch is padded)."""
        x = np.asarray(x, np.float32)
        if model.layout(x.shape[1:]) == "NCHW":
            x = x.transpose(0, 3, 1, 2)
        bs = model.fixed_batch or batch_size
        parts: dict[str, list] = {}
        for i in range(0, len(x), bs):
            chunk = x[i:i + bs]
            n = len(chunk)
            if model.fixed_batch and n < bs:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], bs - n, 0)])
            for name, out in self._run_all(model, np.ascontiguousarray(chunk)).items():
                parts.setdefault(name, []).append(np.asarray(out, np.float32)[:n])
        return {name: np.concatenate(p) for name, p in parts.items()}

    def output_shapes(self, model: ImportedModel) -> dict:
        return dict(model.output_shapes)

    def evaluate(self, model, ds, indices=None, split: str = "test") -> tuple[float, float]:
        x, y = (ds.x_test, ds.y_test) if split == "test" else (ds.x_train, ds.y_train)
        if indices is not None:
            x, y = x[indices], y[indices]
        logits = self.predict(model, ds.normalize(x, "NHWC")).astype(np.float64)
        z = logits - logits.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        return float(-logp[np.arange(len(y)), y].mean()), float((logits.argmax(1) == y).mean())

    def count_nonzero_trainable(self, model) -> int:
        return self.count_params(model)["nonzero"]

    # ------------------------------------------------------------ what each file kind fills in
    def _open(self, path: Path) -> ImportedModel:
        raise NotImplementedError

    def _run_all(self, model: ImportedModel, x: np.ndarray) -> dict:
        """Every output of one batch in the file's layout, by name."""
        raise NotImplementedError

    def _weights(self, model: ImportedModel) -> list[np.ndarray]:
        raise NotImplementedError

    def count_params(self, model) -> dict:
        ws = [w for w in self._weights(model) if w.ndim >= 1]
        total = int(sum(w.size for w in ws))
        return {"trainable": total, "non_trainable": 0, "total": total, "nonzero": int(sum(np.count_nonzero(w) for w in ws))}


def single_input(path: Path, names: list[str]) -> None:
    if len(names) != 1:
        raise ModelError(f"{path}: the model has {len(names)} inputs ({', '.join(names)}); edgepack handles models "
                         "with one image input")

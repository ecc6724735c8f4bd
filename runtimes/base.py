"""The runner contract shared by every runtime: load a model file, adapt canonical input, run, decode output.

Canonical input is what `Dataset.normalize` produces: float32 NHWC. Each runner reads the layout
(NHWC/NCHW) and dtype from the model itself, quantizes int8/uint8 inputs with the model's own scale
and zero point, and dequantizes outputs, so every model sees the same images.
"""
from __future__ import annotations

import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgepack.toolkit.errors import ModelError, first_line


class Captured:
    """What a `captured_fd2` block wrote to file descriptor 2 (`text`, set when the block ends)."""
    text: str = ""


@contextmanager
def captured_fd2():
    """Runtimes written in C++ (ExecuTorch, TFLite Micro) print to file descriptor 2, past Python's sys.stderr: keep
    that off the user's terminal and hand it back (`Captured.text`) for the runtimes whose errors it explains."""
    said = Captured()
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield said
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            said.text = tmp.read().decode("utf-8", "replace")


@dataclass
class TensorSpec:
    name: str
    shape: tuple                 # -1 for dynamic dimensions
    dtype: np.dtype
    scale: float | None = None   # affine quantization: real = scale * (q - zero_point)
    zero_point: int | None = None

    @property
    def quantized(self) -> bool:
        return self.scale is not None and np.issubdtype(self.dtype, np.integer)


ARENA_KEY = "tensor_arena_bytes"     # in RunnerInfo.settings, from runners that measure a tensor arena


def arena_of(runtime_info: dict | None) -> int | None:
    """The tensor arena in a bench result's `runtime_info`, where its runner measured one."""
    return ((runtime_info or {}).get("settings") or {}).get(ARENA_KEY)


@dataclass
class RunnerInfo:
    runtime: str
    runtime_version: str
    threads: int | None
    settings: dict = field(default_factory=dict)


def _dequantize(out: np.ndarray, spec: TensorSpec) -> np.ndarray:
    if spec.quantized:
        return (out.astype(np.float32) - spec.zero_point) * spec.scale
    return out.astype(np.float32)


class Runner:
    """Subclasses implement `_load`, `_run` and set `self.inputs` / `self.outputs`."""
    runtime = "?"
    format = "?"                         # the file format it runs: onnx, tflite, edgepack-archive, torch, keras
    suffixes: tuple[str, ...] = ()       # file suffixes of that format
    needs: tuple[str, ...] = ()          # modules that must be importable
    extra = "runtime"                    # the pip extra that installs them
    install_note = ""                    # where that extra has no wheels, said with the install hint
    label = "?"                          # in reports and plot legends
    by_name_only = False                 # True: runs only when named, never in "all" (nor in deploy's default runtimes)
    max_threads: int | None = None       # the most threads the runtime uses (None: as many as asked)
    measures_arena = False               # True: info() reports the tensor arena a file needs (ARENA_KEY)
    # a plug-in format's figures read from the file (params, nonzero_params, macs, ...): a staticmethod
    # file_metrics(path) -> dict; without one, bench leaves them empty (built-in formats: runtimes/metrics.py)
    file_metrics = None

    def __init__(self, path: str | Path, threads: int | None = 1, **options):
        self.path = Path(path)
        self.threads = threads
        self.options = options
        self.inputs: list[TensorSpec] = []
        self.outputs: list[TensorSpec] = []
        self.load_ms: float | None = None

    # ------------------------------------------------------------ lifecycle
    def load(self) -> "Runner":
        if self.path.is_dir():
            raise ModelError(f"{self.path}: is a folder, not a model file")
        if not self.path.is_file():
            raise ModelError(f"{self.path}: file not found")
        if self.max_threads is not None and (self.threads or 1) > self.max_threads:
            raise ModelError(f"{self.path}: {self.label} runs on at most {self.max_threads} thread(s), not {self.threads}")
        t0 = time.perf_counter()
        try:
            self._load()
        except ModelError:
            raise
        except Exception as e:
            raise ModelError(f"{self.path}: cannot load as {self.runtime} model ({first_line(e)})") from None
        self.load_ms = (time.perf_counter() - t0) * 1e3
        self.run = self._run          # the timed call goes straight to the runtime binding, no extra Python layer
        if len(self.inputs) != 1:
            raise ModelError(f"{self.path}: edgepack benchmarks single-input models; this one has {len(self.inputs)} inputs")
        return self

    def _load(self) -> None:
        raise NotImplementedError

    def _run(self, feed: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def info(self) -> RunnerInfo:
        raise NotImplementedError

    # ------------------------------------------------------------ input / output adaptation
    @property
    def input(self) -> TensorSpec:
        return self.inputs[0]

    def layout(self, image_shape: tuple[int, int, int]) -> str:
        """'NHWC', 'NCHW' or 'flat', decided by comparing the model's input shape with (H, W, C)."""
        h, w, c = image_shape
        dims = tuple(self.input.shape[1:])
        if len(dims) == 3:
            if dims == (h, w, c) or (dims[2] == c and -1 in dims[:2]):
                return "NHWC"
            if dims == (c, h, w) or (dims[0] == c and -1 in dims[1:]):
                return "NCHW"
        if len(dims) == 1 and dims[0] in (h * w * c, -1):
            return "flat"
        raise ModelError(f"{self.path}: input shape {tuple(self.input.shape)} does not fit images of shape {image_shape} (H, W, C)")

    def fixed_batch(self) -> int | None:
        b = self.input.shape[0] if self.input.shape else -1
        return None if b in (-1, None, 0) else int(b)

    def prepare(self, x_nhwc: np.ndarray) -> np.ndarray:
        """Canonical float32 NHWC -> the model's layout and dtype (done outside timed regions)."""
        lay = self.layout(x_nhwc.shape[1:])
        x = x_nhwc.transpose(0, 3, 1, 2) if lay == "NCHW" else x_nhwc.reshape(len(x_nhwc), -1) if lay == "flat" else x_nhwc
        spec = self.input
        if spec.quantized:
            info = np.iinfo(spec.dtype)
            x = np.clip(np.round(x / spec.scale + spec.zero_point), info.min, info.max)
        return np.ascontiguousarray(x.astype(spec.dtype))

    def random_feed(self, batch: int = 1, seed: int = 0) -> np.ndarray:
        """Random input of the model's own shape and dtype (latency without a data set, like benchmark_model)."""
        shape = list(self.input.shape)
        if not shape:
            raise ModelError(f"{self.path}: the model's input has no shape; cannot make random input for it")
        if shape[0] in (-1, 0, None):
            shape[0] = batch
        if any(d is None or d < 1 for d in shape[1:]):
            raise ModelError(f"{self.path}: input shape {tuple(self.input.shape)} has dynamic dimensions besides the batch; "
                             "random input needs a fixed shape")
        rng = np.random.default_rng(seed)
        if np.issubdtype(self.input.dtype, np.integer):
            info = np.iinfo(self.input.dtype)
            return rng.integers(info.min, int(info.max) + 1, size=shape).astype(self.input.dtype)
        return rng.standard_normal(shape).astype(self.input.dtype)

    def decode(self, outs: list[np.ndarray]) -> np.ndarray:
        return _dequantize(outs[0], self.outputs[0])

    def run(self, feed: np.ndarray) -> list[np.ndarray]:
        """One inference on a prepared feed: the call the harness times."""
        return self._run(feed)

    def _batched(self, x_nhwc: np.ndarray, batch_size: int):
        """(n, raw outputs) per chunk of canonical input, in the largest batches the model accepts (a fixed batch is
        padded with the last input; the first n rows of each output are real)."""
        fixed = self.fixed_batch()
        bs = fixed or batch_size
        for i in range(0, len(x_nhwc), bs):
            chunk = x_nhwc[i:i + bs]
            n = len(chunk)
            if fixed and n < fixed:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed - n, 0)])
            yield n, self.run(self.prepare(chunk))

    def predict(self, x_nhwc: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Float logits (the first output) for canonical input."""
        return np.concatenate([self.decode(outs)[:n] for n, outs in self._batched(x_nhwc, batch_size)])

    def output_names(self) -> list[str]:
        """The outputs' names, in the order `run` returns them (ONNX output names, TFLite signature names)."""
        return [o.name for o in self.outputs]

    def predict_outputs(self, x_nhwc: np.ndarray, batch_size: int = 256) -> dict[str, np.ndarray]:
        """Every output, dequantized to float, by name: what tasks other than classification read."""
        parts: list[list[np.ndarray]] = [[] for _ in self.outputs]
        for n, outs in self._batched(x_nhwc, batch_size):
            for i, (o, spec) in enumerate(zip(outs, self.outputs)):
                parts[i].append(_dequantize(o, spec)[:n])
        return {name: np.concatenate(p) for name, p in zip(self.output_names(), parts)}

    def close(self) -> None:
        pass


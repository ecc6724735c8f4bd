"""TensorFlow Lite for Microcontrollers (`tflite-micro`, MLPerf Tiny's runtime) for .tflite files: the same file a
microcontroller runs, in TFLM's reference kernels, which share no code with LiteRT's XNNPACK.

What it tells: the file's accuracy in TFLM on the full test set (`edgepack bench FILE --runtime litert,tflite-micro`
puts it beside LiteRT's, with the top-1 agreement), whether TFLM loads the file at all (it runs full-integer and
float files, not dynamic-range ones), and the tensor arena the file needs, measured by TFLM's recording allocator:
the RAM a board must give it besides the model in flash. What it does not tell: latency on a board. It runs on
the host CPU, one thread, one image at a time, in plain C++ kernels; its timings are reported as measured there.

Runs only when named (`--runtime tflite-micro`), never in `--runtime all` or a deploy's default runtimes: its kernels
are slow on a full test set and its latencies say nothing of a device. Install with `pip install 'edgepack[micro]'`
(the project publishes nightly wheels only, for Linux x86_64).
"""
from __future__ import annotations

import re

import numpy as np

from edgepack.runtimes.base import ARENA_KEY, Runner, RunnerInfo, TensorSpec, captured_fd2
from edgepack.toolkit.errors import ModelError

ARENA_BYTES = 64 << 20     # room to allocate in; the arena a file needs is measured, never this figure


def _spec(name: str, d: dict) -> TensorSpec:
    q = d.get("quantization_parameters") or {}
    scales, zps = np.ravel(q.get("scales", [])), np.ravel(q.get("zero_points", []))
    quantized = len(scales) == 1 and float(scales[0]) != 0.0
    return TensorSpec(name, tuple(int(s) for s in d["shape"]), np.dtype(d["dtype"]),
                      float(scales[0]) if quantized else None, int(zps[0]) if quantized and len(zps) else None)


def _with_fd2(fn):
    """fn's result (or exception) and what it wrote to file descriptor 2: TFLM prints from C++ there, its allocation
    record and why a file does not load."""
    with captured_fd2() as said:
        try:
            result, error = fn(), None
        except Exception as e:     # noqa: BLE001 - handed back with the text that explains it
            result, error = None, e
    return result, error, said.text


class TFLiteMicroRunner(Runner):
    runtime = "tflite-micro"
    format = "tflite"
    suffixes = (".tflite",)
    needs = ("tflite_micro",)
    extra = "micro"
    install_note = "its wheels exist for Linux x86_64 only"
    label = "TFLite Micro"
    by_name_only = True
    max_threads = 1
    measures_arena = True

    def _load(self) -> None:
        from tflite_micro.python.tflite_micro import runtime
        self.interp, error, said = _with_fd2(lambda: runtime.Interpreter.from_file(str(self.path), arena_size=ARENA_BYTES))
        if error is not None:          # e.g. dynamic-range files: "Input type: FLOAT32 with filter type: INT8 not supported."
            why = " ".join(line.strip() for line in said.splitlines() if line.strip())[:300]
            raise ModelError(f"{self.path}: TensorFlow Lite Micro cannot run it ({why or error})")
        self.inputs = [_spec("input", self.interp.get_input_details(0))]
        self.outputs = [_spec("output", self.interp.get_output_details(0))]
        self._arena: int | None = None

    def _run(self, feed: np.ndarray):
        self.interp.set_input(feed, 0)
        self.interp.invoke()
        return [self.interp.get_output(0)]

    def arena_bytes(self) -> int:
        """The tensor arena the file needed (TFLM's recording allocator, after an inference)."""
        if self._arena is None:
            _, _, text = _with_fd2(self.interp.print_allocations)
            m = re.search(r"Arena allocation total (\d+) bytes", text)
            if m is None:
                raise ModelError(f"{self.path}: TFLite Micro printed no arena allocation record")
            self._arena = int(m.group(1))
        return self._arena

    def info(self) -> RunnerInfo:
        from importlib.metadata import version
        return RunnerInfo(self.runtime, version("tflite-micro"), 1,
                          {"kernels": "reference (host CPU)", ARENA_KEY: self.arena_bytes()})


RUNNERS = (TFLiteMicroRunner,)   # registered by runtimes/__init__.py

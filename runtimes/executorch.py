"""ExecuTorch runners for `.pte` files (PyTorch's on-device runtime, XNNPACK delegate).

`executorch`: ExecuTorch's own Python bindings (the `executorch` wheel; they link libtorch, so torch comes with them).
`executorch-numpy`: `executorch-numpy-runtime`, a torch-free build of the same C++ core with NumPy in and out (15 MB;
Python 3.12+, Linux x86_64/aarch64), for devices without torch. It cannot set XNNPACK's thread pool, which has one
thread per core: it runs at that thread count only and says so when asked for another. Where both are installed a
.pte runs in `executorch` unless `--runtime executorch-numpy` is named; where only `executorch-numpy` is installed, there."""
from __future__ import annotations

import os

import numpy as np

from edgepack.runtimes.base import Runner, RunnerInfo, TensorSpec, captured_fd2
from edgepack.toolkit.errors import ModelError

# ExecuTorch's ScalarType codes -> NumPy
_DTYPES = {0: np.uint8, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.int64, 5: np.float16, 6: np.float32, 7: np.float64,
           11: np.bool_}


def _spec(i: int, shape, dtype_code: int) -> TensorSpec:
    if dtype_code not in _DTYPES:
        raise ModelError(f"ExecuTorch tensor type {dtype_code} is not one edgepack feeds")
    return TensorSpec(f"input_{i}", tuple(int(s) for s in shape), np.dtype(_DTYPES[dtype_code]))


class ExecuTorchRunner(Runner):
    runtime = "executorch"
    format = "pte"
    suffixes = (".pte",)
    needs = ("executorch",)
    extra = "executorch"
    label = "ExecuTorch"

    def load(self) -> "Runner":
        import torch  # noqa: F401 - the bindings link libtorch: imported before the load is timed (seconds, not the file's)
        import executorch.runtime  # noqa: F401
        return super().load()

    def _load(self) -> None:
        import torch
        from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
        from executorch.runtime import Runtime
        with captured_fd2():      # ExecuTorch's C++ logs (cpuinfo probing) on every load
            if self.threads:
                _unsafe_reset_threadpool(int(self.threads))     # the process's XNNPACK pool (one model per process)
            self.program = Runtime.get().load_program(str(self.path))
            self.method = self.program.load_method("forward")
        meta = self.method.metadata
        self.inputs = [_spec(i, meta.input_tensor_meta(i).sizes(), meta.input_tensor_meta(i).dtype())
                       for i in range(meta.num_inputs())]
        self.outputs = [TensorSpec(f"output_{i}", tuple(meta.output_tensor_meta(i).sizes()),
                                   np.dtype(_DTYPES.get(meta.output_tensor_meta(i).dtype(), np.float32)))
                        for i in range(meta.num_outputs())]
        self._torch = torch

    def _run(self, feed: np.ndarray):
        return [o.numpy() for o in self.method.execute([self._torch.from_numpy(feed)])]

    def info(self) -> RunnerInfo:
        from importlib.metadata import version
        from executorch.extension.pybindings.portable_lib import _threadpool_get_thread_count
        return RunnerInfo(self.runtime, version("executorch"), _threadpool_get_thread_count(),
                          {"delegate": "XNNPACK", "bindings": "executorch pybindings (libtorch)"})


class ExecuTorchNumpyRunner(Runner):
    runtime = "executorch-numpy"
    format = "pte"
    suffixes = (".pte",)
    needs = ("executorch_numpy_runtime",)
    extra = "executorch-numpy"
    install_note = "Python 3.12+, Linux x86_64/aarch64"
    label = "ExecuTorch (torch-free)"
    by_name_only = True        # the same kernels as `executorch`: run when named, or where it is the only one installed

    def load(self) -> "Runner":
        pool = os.cpu_count() or 1
        if self.threads and int(self.threads) != pool:
            raise ModelError(f"{self.path}: executorch-numpy-runtime runs XNNPACK on one thread per core ({pool} here) "
                             f"and cannot be told otherwise; bench it with --threads {pool}")
        return super().load()

    def _load(self) -> None:
        import executorch_numpy_runtime as en
        with captured_fd2():      # ExecuTorch's C++ logs (cpuinfo probing) on every load
            self.program = en.Runtime.get().load_program(str(self.path))
            self.method = self.program.load_method("forward")
        meta = self.method.metadata
        self.inputs = [_spec(i, t["shape"], t["scalar_type"]) for i, t in enumerate(meta["inputs"])]
        self.outputs = [TensorSpec(f"output_{i}", tuple(t["shape"]), np.dtype(_DTYPES.get(t["scalar_type"], np.float32)))
                        for i, t in enumerate(meta["outputs"])]

    def _run(self, feed: np.ndarray):
        return self.method([feed])

    def info(self) -> RunnerInfo:
        import executorch_numpy_runtime as en
        return RunnerInfo(self.runtime, f"{en.__version__} (ExecuTorch {en.__et_version__})", os.cpu_count() or 1,
                          {"delegate": "XNNPACK", "threads": "one per core (the runtime cannot set its pool)"})


RUNNERS = (ExecuTorchRunner, ExecuTorchNumpyRunner)   # registered by runtimes/__init__.py

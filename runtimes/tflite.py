"""LiteRT (`ai_edge_litert`) runner: the default delegate set (XNNPACK) with the thread count applied."""
from __future__ import annotations

import numpy as np

from edgepack.runtimes.base import Runner, RunnerInfo, TensorSpec


def _spec(d: dict) -> TensorSpec:
    q = d.get("quantization_parameters") or {}
    scales, zps = q.get("scales", []), q.get("zero_points", [])
    scale = float(scales[0]) if len(scales) == 1 else None
    zp = int(zps[0]) if len(zps) == 1 else None
    sig = d.get("shape_signature")
    shape = tuple(int(s) for s in (sig if sig is not None and len(sig) else d["shape"]))
    return TensorSpec(d["name"], shape, np.dtype(d["dtype"]), scale, zp)


class LiteRTRunner(Runner):
    runtime = "litert"
    format = "tflite"
    suffixes = (".tflite",)
    needs = ("ai_edge_litert",)
    label = "LiteRT"

    def _load(self) -> None:
        from ai_edge_litert.interpreter import Interpreter
        from edgepack.toolkit.tf_import import quiet_stderr
        with quiet_stderr():   # the delegate's "Created TensorFlow Lite XNNPACK delegate" banner
            self.interp = Interpreter(model_path=str(self.path), num_threads=self.threads or None)
            self._allocate()

    def _allocate(self):
        self.interp.allocate_tensors()
        self.inputs = [_spec(d) for d in self.interp.get_input_details()]
        self.outputs = [_spec(d) for d in self.interp.get_output_details()]
        self._in_idx = self.interp.get_input_details()[0]["index"]
        self._out_idx = [d["index"] for d in self.interp.get_output_details()]
        self._batch = int(self.interp.get_input_details()[0]["shape"][0])

    def output_names(self) -> list[str]:
        """The signature's output names where the file has one signature (what converters keep of the source's
        names), else the tensor names."""
        try:
            sigs = self.interp._get_full_signature_list()
        except Exception:  # noqa: BLE001 - files without signatures, older interpreters
            sigs = {}
        if len(sigs) == 1:
            by_index = {idx: name for name, idx in next(iter(sigs.values())).get("outputs", {}).items()}
            if all(i in by_index for i in self._out_idx):
                return [by_index[i] for i in self._out_idx]
        return super().output_names()

    def fixed_batch(self):
        """LiteRT tensors have a concrete batch; resize to the requested one when the signature allows."""
        sig = self.inputs[0].shape[0]
        return None if sig == -1 else int(sig)

    def _ensure_batch(self, n: int):
        cur = self.interp.get_input_details()[0]["shape"][0]
        if cur != n:
            shape = list(self.interp.get_input_details()[0]["shape"])
            shape[0] = n
            self.interp.resize_tensor_input(self._in_idx, shape)
            self._allocate()

    def _run(self, feed: np.ndarray):
        if feed.shape[0] != self._batch:              # cached: querying tensor details costs microseconds per call
            self._ensure_batch(feed.shape[0])
        interp = self.interp
        interp.set_tensor(self._in_idx, feed)
        interp.invoke()
        if len(self._out_idx) == 1:                   # the common case, without a comprehension in the timed call
            return [interp.get_tensor(self._out_idx[0])]
        return [interp.get_tensor(i) for i in self._out_idx]

    def info(self) -> RunnerInfo:
        import ai_edge_litert
        return RunnerInfo("litert", getattr(ai_edge_litert, "__version__", _dist_version("ai-edge-litert")), self.threads,
                          {"delegate": "XNNPACK (default)"})


def _dist_version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def time_path(path: str, resolver: str, runs: int = 2000, warmup: int = 200, threads: int = 1) -> float:
    """Median invoke time in microseconds on one kernel path."""
    import time
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    it = Interpreter(model_path=path, num_threads=threads, experimental_op_resolver_type=getattr(OpResolverType, resolver))
    it.allocate_tensors()
    d = it.get_input_details()[0]
    it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    for _ in range(warmup):
        it.invoke()
    ts = np.empty(runs)
    for i in range(runs):
        t = time.perf_counter()
        it.invoke()
        ts[i] = time.perf_counter() - t
    return float(np.median(ts) * 1e6)


RUNNERS = (LiteRTRunner,)   # registered by runtimes/__init__.py

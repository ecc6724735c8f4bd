"""Exporter base class, the options every export shares, and the per-call context."""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from toolkit.data import Dataset
from toolkit.errors import OptionError

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
IO_DTYPES = ("int8", "uint8")
SPARSE_VALUE_DTYPES = ("fp32", "fp16", "int8")
TFLITE_ROUTES = ("auto", "converter", "onnx2tf")   # converter: the source framework's own (Keras: TFLiteConverter)
ROUTE_ALIASES = {"keras": "converter"}             # the name of the converter route before 0.2


@dataclass
class ExportOptions:
    calibration_method: str = "minmax"        # ORT static quantization calibrator
    calibration_samples: int = 200            # real training images
    per_channel: bool = True                  # int8 weights: one scale per output channel (False: per tensor)
    dense_per_channel: bool = True            # TFLite converter route: False gives Dense layers per-tensor weights
                                              # (fewer distinct values, smaller gzip; the TFLite default before TF 2.x)
    onnx_activations: str = "uint8"           # ORT QDQ activations: uint8 (U8S8, fully fused by ORT's x86 CPU kernels) or int8
    io_dtype: str = "int8"                    # full-integer TFLite input/output type
    tflite_route: str = "auto"                # the framework's converter where it has one (Keras), onnx2tf otherwise
    keep_nchw: bool = False                   # onnx2tf: keep the NCHW input instead of NHWC
    sparse_values: str = "fp32"               # value storage in the sparse archive
    verify_images: int = 1000                 # real test images for verification, stratified by class
    max_accuracy_drop: float = 1.0            # quantized files: allowed accuracy drop (pp), beyond 2 standard errors
    target: str = "any"                       # CPUs the file must keep its accuracy on (exporters.verify.TARGETS)
    seed: int = 0

    def __post_init__(self):
        self.tflite_route = ROUTE_ALIASES.get(self.tflite_route, self.tflite_route)
        for value, allowed, what in ((self.calibration_method, CALIBRATION_METHODS, "calibration method"),
                                     (self.io_dtype, IO_DTYPES, "input/output dtype"),
                                     (self.onnx_activations, IO_DTYPES, "ONNX activation type"),
                                     (self.sparse_values, SPARSE_VALUE_DTYPES, "sparse value type"),
                                     (self.tflite_route, TFLITE_ROUTES, "TFLite route")):
            if value not in allowed:
                raise OptionError(f"unknown {what} {value!r}; expected one of {', '.join(allowed)}")
        if self.calibration_samples < 1:
            raise OptionError("calibration samples must be >= 1")
        if self.verify_images < 1:
            raise OptionError("verification needs at least one image")
        from exporters.verify import TARGETS
        if self.target not in TARGETS:
            raise OptionError(f"unknown target {self.target!r}; expected one of {', '.join(TARGETS)}")
        if not 0 <= self.max_accuracy_drop <= 100:
            raise OptionError(f"max accuracy drop must be in [0, 100] percentage points, got {self.max_accuracy_drop}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ExportContext:
    """Everything one export call shares: the source model, its data, options and intermediate files."""
    model: object
    backend: object                           # the source's toolkit.backends.Framework
    dataset: Dataset
    options: ExportOptions
    out_dir: Path
    stem: str = "model"
    spec: object | None = None
    source_record: object | None = None
    source_path: Path | None = None
    produced: dict = field(default_factory=dict)     # format name -> Path, for exporters that build on others
    _work: Path | None = None

    @property
    def framework(self) -> str:
        return self.backend.NAME

    @property
    def work_dir(self) -> Path:
        if self._work is None:
            self._work = Path(tempfile.mkdtemp(prefix="edgepack-export-"))
        return self._work

    def cleanup(self) -> None:
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)

    def fp32_onnx(self) -> Path:
        """The fp32 ONNX of the source model: reused if exported in this call, else written to the work dir."""
        if "onnx" in self.produced:
            return self.produced["onnx"]
        path = self.work_dir / f"{self.stem}.fp32.onnx"
        if not path.exists():
            self.backend.to_onnx(self.model, path, self.dataset.input_shape)
        return path


class Exporter:
    """One target format. Subclasses set the class attributes and implement `export`."""
    name: str = ""
    suffix: str = ""
    description: str = ""
    needs: tuple[str, ...] = ()               # framework capabilities the source must have (toolkit.backends.CAPABILITIES)
    precision: str = "fp32"                   # fp32 | fp16 | dynamic | int8 | archive
    atol: float | None = 1e-4                 # max abs logit difference allowed (None: not checked)
    min_agreement: float = 1.0                # top-1 agreement with the source
    runtime: str = ""                         # the runtime that verifies it
    kernel_sensitive: bool = False            # results depend on the CPU's int8 kernel class: proven per class

    tag: str = ""                             # file name part: model.<tag>.<suffix>

    def accepts(self, backend) -> bool:
        """Whether a model of this framework (a toolkit.backends.Framework) can be exported to this format."""
        return all(backend.supports(c) for c in self.needs)

    def criteria(self, options: "ExportOptions") -> tuple[float | None, float | None]:
        """(atol, min_agreement) this file is judged by; atol None: a quantized file, judged by accuracy kept."""
        return self.atol, self.min_agreement

    def filename(self, stem: str) -> str:
        return f"{stem}.{self.tag}{self.suffix}" if self.tag else f"{stem}{self.suffix}"

    def export(self, ctx: ExportContext, path: Path) -> dict:
        """Write the artifact at `path`; return details for the manifest."""
        raise NotImplementedError

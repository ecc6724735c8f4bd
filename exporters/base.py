"""Exporter base class, the options every export shares, and the per-call context."""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgepack.exporters.verify import TARGET_HELP, TARGETS
from edgepack.toolkit.data import Dataset
from edgepack.toolkit.errors import OptionError
from edgepack.toolkit.options import check_choices, option

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
IO_DTYPES = ("int8", "uint8")
ONNX_WEIGHTS = ("auto", "int8", "uint8")
SPARSE_VALUE_DTYPES = ("fp32", "fp16", "int8")
TFLITE_ROUTES = ("auto", "converter", "onnx2tf", "litert-torch")   # converter: the source framework's own (Keras:
                                                                     # TFLiteConverter; PyTorch: litert-torch)
ROUTE_ALIASES = {"keras": "converter"}             # the name of the converter route before 0.2
DEFAULT_CALIBRATION_SAMPLES = 200                  # a task may ask for more (toolkit.tasks.base.Task)
VERIFY_OPTIONS = ("verify_images", "verify_max_drop", "seed")   # read for every format


def unused_options(options: "ExportOptions", exporters) -> list[str]:
    """Options set away from their defaults that none of these formats reads (the user meant something else)."""
    from dataclasses import fields
    read = set(VERIFY_OPTIONS).union(*(e.options for e in exporters))
    return [f.name for f in fields(options) if f.name not in read and getattr(options, f.name) != f.default]


@dataclass
class ExportOptions:
    """Export options, declared once: `edgepack export` flags and recipe export-step keys come from these fields.
    Each exporter reads the ones of its format (ONNX int8: calibration, activations, target; TFLite: io_dtype,
    route, per-channel; archive: sparse_values); verification options apply to every format."""
    # ONNX int8 (ORT static quantization)
    calibration_method: str = option("minmax", "ORT static calibration method", choices=CALIBRATION_METHODS,
                                     flag="--calibration", key="calibration")
    calibration_samples: int | None = option(None, "training images used for calibration (both int8 routes; "
                                             "stratified by class, seeded). Default: the task's (200; detection 500)")
    onnx_activations: str = option("uint8", "ONNX int8 activation type: uint8 (ORT's x86 kernels fuse every QDQ conv) "
                                   "or int8", choices=IO_DTYPES)
    target: str = option("any", f"CPUs the files must keep their accuracy on. {TARGET_HELP}", choices=tuple(TARGETS))
    onnx_weights: str = option("auto", "ONNX int8 weight type: int8 (ORT's default; 7-bit for --target any, see "
                               "--target), or uint8 (8-bit, symmetric around zero point 128: ORT's u8 x u8 kernels "
                               "widen to 16 bits before adding, so no CPU saturates and the full 8 bits stay "
                               "portable); auto: the task's (detection uint8, else int8)", choices=ONNX_WEIGHTS)
    # weights of every int8 format
    per_channel: bool = option(True, "int8 weights with one scale per tensor (default per channel)", negate="--per-tensor")
    dense_per_channel: bool | None = option(None, "TFLite: Dense weights per channel, or per tensor (--dense-per-"
                                            "tensor: fewer distinct values, smaller gzip; in full-integer files, the "
                                            "converter route only). Default: per channel in full-integer files, per "
                                            "tensor in dynamic-range ones (per-channel Dense there needs TFLite 2.17)",
                                            negate="--dense-per-tensor")
    # TFLite
    io_dtype: str = option("int8", "full-integer TFLite input/output type", choices=IO_DTYPES)
    tflite_route: str = option("auto", "converter: the framework's own (Keras: TFLiteConverter; PyTorch: litert-torch "
                               "+ ai-edge-quantizer, also named litert-torch), or onnx2tf (from the fp32 ONNX); auto: "
                               "Keras the converter, PyTorch onnx2tf (measured: benchmarks/results/tflite_routes)",
                               choices=TFLITE_ROUTES)
    keep_nchw: bool = option(False, "PyTorch sources' TFLite files: keep an NCHW input (default NHWC)")
    # mixed precision (both int8 formats)
    keep_float: str = option("", "mixed precision: comma-separated layers of the source model kept in float in int8 "
                             "files (e.g. conv0); `edgepack deploy` finds them by measurement")
    int8_tail: str = option("auto", "int8 files: what stays float at the outputs. head: the last convolutions and "
                            "every op after them (a detector's box/class convolutions, concatenation, sigmoid, grid "
                            "arithmetic); decode: only the ops after them; int8: nothing (naive full-int8); auto: head "
                            "where the task asks for it (detection), else int8", choices=("auto", "head", "decode", "int8"))
    # the sparse archive
    sparse_values: str = option("fp32", "value storage in the sparse archive", choices=SPARSE_VALUE_DTYPES)
    # verification (every format)
    verify_images: int = option(1000, "test images for verification, stratified by class and seeded")
    verify_max_drop: float = option(1.0, "verification of quantized files: the accuracy drop against the source they "
                                    "may show, in percentage points, beyond two "
                                      "standard errors")
    seed: int = option(0, "seed of calibration and verification subsets")

    def __post_init__(self):
        self.tflite_route = ROUTE_ALIASES.get(self.tflite_route, self.tflite_route)
        check_choices(self)                       # target, route, dtypes, calibration: from the declarations
        if self.dense_per_channel and not self.per_channel:
            raise OptionError("per-channel Dense weights (dense_per_channel) contradict per-tensor weights everywhere "
                              "(per_channel=false / --per-tensor): drop one")
        self.check_onnx_types(self.onnx_weights)
        if self.calibration_samples is not None and self.calibration_samples < 1:
            raise OptionError("calibration samples must be >= 1")
        if self.verify_images < 1:
            raise OptionError("verification needs at least one image")
        if not 0 <= self.verify_max_drop <= 100:
            raise OptionError(f"verify_max_drop must be in [0, 100] percentage points, got {self.verify_max_drop}")

    def float_tail(self, task) -> str | None:
        """What int8 files keep float at the outputs for this task: "head", "decode" or None (nothing)."""
        mode = ("head" if getattr(task, "float_tail", False) else "int8") if self.int8_tail == "auto" else self.int8_tail
        return None if mode == "int8" else mode

    def check_onnx_types(self, weights: str) -> str:
        """`weights` (an ONNX int8 weight type, or auto), refused in one line where the activations contradict it."""
        if weights == "uint8" and self.onnx_activations != "uint8":
            raise OptionError("uint8 ONNX weights (onnx_weights) go with uint8 activations (ORT fuses u8 x u8 "
                              "convolutions, not s8 x u8): drop onnx_activations=int8 or choose onnx_weights=int8")
        return weights

    def onnx_weight_type(self, task) -> str:
        """"int8" or "uint8": the ONNX int8 weights for this task (the option, else the task's default)."""
        return getattr(task, "onnx_weights", "int8") if self.onnx_weights == "auto" else self.onnx_weights

    def calibration_count(self, task) -> int:
        """Training images the int8 routes calibrate on: the option, else the task's default."""
        return self.calibration_samples or getattr(task, "calibration_samples", DEFAULT_CALIBRATION_SAMPLES)

    @property
    def float_layers(self) -> list[str]:
        return [n.strip() for n in self.keep_float.split(",") if n.strip()]

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
    task: object = None                       # the source's toolkit.tasks.Task (classification unless told)
    _work: Path | None = None

    def __post_init__(self):
        from edgepack.toolkit.tasks import get_task
        self.task = get_task(self.task)

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
    needs: tuple[str, ...] = ()               # framework capabilities the source must have (edgepack.toolkit.backends.CAPABILITIES)
    options: tuple[str, ...] = ()             # the ExportOptions fields this format reads (besides VERIFY_OPTIONS)
    precision: str = "fp32"                   # fp32 | fp16 | dynamic | int8 | archive
    atol: float | None = 1e-4                 # max abs logit difference allowed (None: not checked)
    min_agreement: float = 1.0                # top-1 agreement with the source
    runtime: str = ""                         # the runtime that verifies it
    kernel_sensitive: bool = False            # results depend on the CPU's int8 kernel class: proven per class

    tag: str = ""                             # file name part: model.<tag>.<suffix>

    def option_values(self, options: "ExportOptions") -> dict:
        """The options this format was written with: its own and the verification ones (for its manifest)."""
        return {k: getattr(options, k) for k in (*self.options, *VERIFY_OPTIONS)}

    def accepts(self, backend) -> bool:
        """Whether a model of this framework (a toolkit.backends.Framework) can be exported to this format."""
        return all(backend.supports(c) for c in self.needs)

    def why_not(self, backend) -> str:
        """What a framework's model lacks for this format (when `accepts` is False)."""
        return f"it needs {', '.join(c for c in self.needs if not backend.supports(c))}"

    def criteria(self, options: "ExportOptions") -> tuple[float | None, float | None]:
        """(atol, min_agreement) this file is judged by; atol None: a quantized file, judged by accuracy kept."""
        return self.atol, self.min_agreement

    def filename(self, stem: str) -> str:
        return f"{stem}.{self.tag}{self.suffix}" if self.tag else f"{stem}{self.suffix}"

    def export(self, ctx: ExportContext, path: Path) -> dict:
        """Write the artifact at `path`; return details for the manifest."""
        raise NotImplementedError

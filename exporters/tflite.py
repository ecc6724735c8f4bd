"""TFLite: fp32, dynamic-range, float16, full-integer int8 and sparse-encoded files.

Two routes to one format:
- `converter`: the framework's own converter: Keras's TFLiteConverter (representative dataset of real training
  images, TFLITE_BUILTINS_INT8 only, so anything that cannot be fully quantized fails loudly);
  PyTorch's is litert-torch (toolkit/backends/torch/litert.py: torch.export to LiteRT, then ai-edge-quantizer);
- `onnx2tf`: from the fp32 ONNX of any source, calibration images passed explicitly.
A file's input is NHWC unless `keep_nchw` is set (PyTorch sources). `auto` takes the framework's TFLITE_ROUTE.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from edgepack.exporters.base import ExportContext, Exporter
from edgepack.toolkit.errors import ModelError, OptionError, first_line

ONNX2TF_SUFFIX = {"fp32": "_float32.tflite", "fp16": "_float16.tflite", "dynamic": "_dynamic_range_quant.tflite",
                  "int8": "_full_integer_quant.tflite"}
ONNX2TF_RGB_SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"


def route_for(ctx: ExportContext, mode: str) -> str:
    """"converter" (the source framework's own: Keras's TFLiteConverter, PyTorch's litert-torch) or "onnx2tf" for a
    file in `mode`. auto: the framework's preferred route (TFLITE_ROUTE) where its converter writes that mode and
    is installed, else onnx2tf; a route asked for by name is refused in one line where it cannot be taken."""
    import importlib.util
    backend, route = ctx.backend, ctx.options.tflite_route
    direct = backend.supports("to_tflite") and mode in backend.TFLITE_MODES
    if route == "auto":
        installed = bool(backend.TFLITE_PACKAGE) and importlib.util.find_spec(backend.TFLITE_PACKAGE) is not None
        return "converter" if backend.TFLITE_ROUTE == "converter" and direct and installed else "onnx2tf"
    if route == "litert-torch" and backend.TFLITE_PACKAGE != "litert_torch":
        raise OptionError(f"the litert-torch TFLite route converts PyTorch models, not {ctx.framework} ones")
    if route in ("converter", "litert-torch"):
        if not backend.supports("to_tflite"):
            raise OptionError(f"the converter TFLite route needs a framework with its own TFLite converter (Keras, "
                              f"PyTorch through litert-torch), not {ctx.framework}")
        if not direct:
            raise OptionError(f"{ctx.framework}'s own TFLite converter does not write {mode} files (it writes "
                              f"{', '.join(backend.TFLITE_MODES)}): use --tflite-route onnx2tf")
        return "converter"
    return route


def dense_per_channel(options, mode: str) -> bool:
    """Whether a file's Dense weights are quantized per channel: as asked, else per channel in full-integer files
    and per tensor in dynamic-range ones (either route), where per-channel FULLY_CONNECTED weights need TFLite 2.17
    (measured: tflite-runtime 2.14, the last wheel of it, refuses them) and per-tensor ones cost MNIST's tutorial
    model 0.01 pp."""
    if not options.per_channel:
        return False
    if options.dense_per_channel is not None:
        return options.dense_per_channel
    return mode != "dynamic"


def converter_layout(ctx: ExportContext) -> str:
    """The input layout of a converter-route file: NHWC, or NCHW where `keep_nchw` asks (PyTorch sources)."""
    return "NCHW" if ctx.options.keep_nchw and ctx.backend.LAYOUT == "NCHW" else "NHWC"


def via_converter(ctx: ExportContext, mode: str) -> tuple[bytes, dict]:
    layout = converter_layout(ctx)
    calib = ctx.dataset.calibration(ctx.options.calibration_count(ctx.task), ctx.options.seed, layout)

    def representative():
        for i in range(len(calib)):
            yield [calib[i:i + 1].astype(np.float32)]
    data, details = ctx.backend.to_tflite(ctx.model, mode, representative, ctx.options.io_dtype,
                                          ctx.options.per_channel, dense_per_channel(ctx.options, mode),
                                          input_shape_hwc=ctx.dataset.input_shape, input_layout=layout)
    if mode in ("int8", "sparse-int8"):
        details["calibration"] = {"samples": len(calib), "split": "train", "seed": ctx.options.seed}
    return data, details


@contextlib.contextmanager
def _in_dir(path: Path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def import_onnx2tf():
    """onnx2tf, or a one-line error saying how to install it (it comes with --no-deps: see the `onnx2tf` extra)."""
    try:
        import onnx2tf
    except ImportError:
        raise OptionError("TFLite export from ONNX needs onnx2tf: `make setup` installs it; elsewhere pip install "
                          "'edgepack[onnx2tf]' && pip install --no-deps onnx2tf==1.29.24 (it pins ai-edge-litert "
                          "2.1.0; edgepack runs it with 2.3.0)") from None
    return onnx2tf


def onnx2tf_convert(ctx: ExportContext) -> Path:
    """Run onnx2tf once per export call (all flavours at once); returns its output folder."""
    o = ctx.options                              # what onnx2tf's files depend on: one conversion per combination
    key = f"onnx2tf-dir:{o.io_dtype}:{o.per_channel}:{o.keep_nchw}:{o.calibration_count(ctx.task)}:{o.seed}"
    if key in ctx.produced:
        return ctx.produced[key]
    from edgepack.toolkit.tf_import import import_tensorflow, quiet_stderr
    import_tensorflow()
    with quiet_stderr():
        onnx2tf = import_onnx2tf()
    work = ctx.work_dir / f"onnx2tf-{sum(k.startswith('onnx2tf-dir') for k in ctx.produced)}"
    work.mkdir(exist_ok=True)
    src = work / ctx.fp32_onnx().name            # onnx2tf rewrites its input in place (onnxsim): use a copy
    shutil.copyfile(ctx.fp32_onnx(), src)
    ds, opts = ctx.dataset, ctx.options
    h, w, c = ds.input_shape
    # calibration: real training images in [0, 1], NHWC; onnx2tf applies mean/std itself
    idx = np.random.default_rng(opts.seed + 1).choice(len(ds.y_train), size=min(opts.calibration_count(ctx.task), len(ds.y_train)), replace=False)
    calib = ds.x_train[np.sort(idx)].astype(np.float32) / 255.0
    np.save(work / "calib.npy", calib)
    if c == 3:  # onnx2tf also loads this file for RGB inputs (or downloads it): make it from real images
        from PIL import Image
        sample = np.stack([np.asarray(Image.fromarray(im).resize((128, 128), Image.BILINEAR)) for im in ds.x_train[np.sort(idx)[:20]]])
        np.save(work / ONNX2TF_RGB_SAMPLE, sample.astype(np.float32) / 255.0)
    to01 = np.float32(ds.scale * 255.0)          # onnx2tf takes [0, 1] images: fold any other pixel scale into mean/std
    mean = np.asarray(ds.mean, np.float32).reshape(1, 1, 1, c) / to01
    std = np.asarray(ds.std, np.float32).reshape(1, 1, 1, c) / to01
    from edgepack.exporters.onnx_fp32 import input_layout
    in_name, layout = input_layout(src, ds.input_shape)
    _fix_spatial_dims(src, in_name, (1, c, h, w) if layout == "NCHW" else (1, h, w, c))
    # an NHWC graph (from tf2onnx) must be declared as such, or onnx2tf reads (N, H, W, C) as (N, C, H, W)
    keep_nhwc = [in_name] if layout == "NHWC" else None
    # onnx2tf runs `onnxsim` from PATH, which lacks the venv's bin/ when the venv is not activated: only then is it
    # put in front, for the duration of the call
    env_path = os.environ.get("PATH", "")
    add_bin = shutil.which("onnxsim") is None
    if add_bin:
        os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env_path}"
    try:
        with _in_dir(work), quiet_stderr(), open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            onnx2tf.convert(input_onnx_file_path=str(src), output_folder_path=str(work / "out"),
                            output_integer_quantized_tflite=True, output_dynamic_range_quantized_tflite=True,
                            custom_input_op_name_np_data_path=[[in_name, str(work / "calib.npy"), mean, std]],
                            input_quant_dtype=opts.io_dtype, output_quant_dtype=opts.io_dtype,
                            quant_type="per-channel" if opts.per_channel else "per-tensor",
                            keep_ncw_or_nchw_or_ncdhw_input_names=[in_name] if opts.keep_nchw and not keep_nhwc else None,
                            keep_nwc_or_nhwc_or_ndhwc_input_names=keep_nhwc,
                            non_verbose=True, verbosity="error")
    except Exception as e:
        raise ModelError(f"onnx2tf conversion failed: {first_line(e)}") from None
    finally:
        if add_bin:
            os.environ["PATH"] = env_path
    ctx.produced[key] = work / "out"
    return work / "out"


def _fix_spatial_dims(src: Path, in_name: str, shape: tuple) -> None:
    """An ONNX whose image size is dynamic (Ultralytics' `dynamic=True` exports: its decode head builds its anchor
    grid from Shape ops) leaves onnx2tf ops it can only run as TensorFlow Flex ops, and no full-integer file. Fixed to
    one image of the data set's size and simplified (onnxsim folds those shapes into constants), it converts whole."""
    import onnx
    m = onnx.load(str(src))
    dims = m.graph.input[0].type.tensor_type.shape.dim
    if all(d.dim_value > 0 for d in list(dims)[1:]):
        return
    import onnxsim
    try:
        simple, ok = onnxsim.simplify(m, overwrite_input_shapes={in_name: list(shape)})
    except Exception as e:          # noqa: BLE001 - onnxsim raises what its checker or runtime raised
        raise ModelError(f"{src.name}: its input size is dynamic and fixing it to {list(shape)} failed: "
                         f"{first_line(e)}") from None
    if not ok:
        raise ModelError(f"{src.name}: its input size is dynamic and the graph fixed to {list(shape)} did not check")
    onnx.save(simple, str(src))


def via_onnx2tf(ctx: ExportContext, mode: str) -> tuple[bytes, dict]:
    if mode not in ONNX2TF_SUFFIX:
        raise OptionError(f"TFLite mode {mode!r} is not available through onnx2tf (only {', '.join(ONNX2TF_SUFFIX)})")
    if ctx.options.dense_per_channel is False and ctx.options.per_channel and mode == "int8":
        raise OptionError("per-tensor Dense weights (dense_per_channel=false) in full-integer files need the converter "
                          "TFLite route; onnx2tf quantizes every layer one way (use per_channel=false)")
    out = onnx2tf_convert(ctx)                   # imports TensorFlow quietly first: import onnx2tf only after it
    import onnx2tf
    if mode == "dynamic" and ctx.options.per_channel and not dense_per_channel(ctx.options, mode):
        return _dynamic_from_saved_model(ctx, out, onnx2tf.__version__)
    f = out / f"{ctx.fp32_onnx().stem}{ONNX2TF_SUFFIX[mode]}"
    if not f.is_file():
        made = ", ".join(sorted(p.name for p in out.glob("*.tflite"))) or "nothing"
        raise ModelError(f"onnx2tf did not produce {f.name} (it wrote {made}); its {mode} conversion failed")
    details = {"converter": f"onnx2tf {onnx2tf.__version__}", "mode": mode, "from": "fp32 ONNX",
               "input_layout": "NCHW" if ctx.options.keep_nchw else "NHWC"}
    if mode == "int8":
        details.update(io_dtype=ctx.options.io_dtype, calibration={"samples": ctx.options.calibration_count(ctx.task),
                       "split": "train", "seed": ctx.options.seed, "passed_explicitly": True})
    return f.read_bytes(), details


def _dynamic_from_saved_model(ctx: ExportContext, saved_model: Path, version: str) -> tuple[bytes, dict]:
    """Dynamic range with per-tensor Dense weights from the SavedModel onnx2tf writes: onnx2tf's own dynamic-range
    file has per-channel FULLY_CONNECTED weights, which need TFLite 2.17 (tflite-runtime 2.14 refuses them)."""
    from edgepack.toolkit.tflite_convert import convert_saved_model
    data, details = convert_saved_model(saved_model, "dynamic", per_channel=True, dense_per_channel=False)
    details.update(converter=f"onnx2tf {version} SavedModel, then {details['converter']}", **{"from": "fp32 ONNX"},
                   input_layout="NCHW" if ctx.options.keep_nchw else "NHWC")
    return data, details


def mixed_int8(ctx: ExportContext) -> tuple[bytes, dict]:
    """Full-integer TFLite with the `keep_float` layers left in float (TensorFlow's selective quantization), on
    either route: the Keras converter, or a TFLiteConverter on the SavedModel onnx2tf writes. The file's compute
    ops are matched to the source's layers (edgepack.exporters.layers) on a full-int8 conversion first."""
    from edgepack.exporters.layers import match_tflite, nodes_of, onnx_layers, resolve, tflite_compute_ops, tflite_tail
    opts = ctx.options
    layers = onnx_layers(ctx.fp32_onnx())
    wanted = resolve(layers, opts.float_layers)             # a name error before any conversion
    route = route_for(ctx, "int8")
    layout = converter_layout(ctx) if route == "converter" else "NHWC"
    calib = ctx.dataset.calibration(opts.calibration_count(ctx.task), opts.seed, layout)

    def representative():
        for i in range(len(calib)):
            yield [calib[i:i + 1].astype(np.float32)]
    if route == "converter":
        def run(nodes):
            return ctx.backend.to_tflite(ctx.model, "int8", representative, opts.io_dtype, opts.per_channel,
                                         dense_per_channel(opts, "int8"), float_nodes=tuple(nodes),
                                         input_shape_hwc=ctx.dataset.input_shape, input_layout=layout)
    else:
        if opts.dense_per_channel is False and opts.per_channel:
            raise OptionError("per-tensor Dense weights (dense_per_channel=false) need the converter TFLite route")
        if opts.keep_nchw:
            raise OptionError("keep_float with the onnx2tf route makes NHWC files; drop keep_nchw")
        saved_model = onnx2tf_convert(ctx)                   # onnx2tf writes its SavedModel beside the .tflite files
        from edgepack.toolkit.tflite_convert import convert_saved_model

        def run(nodes):
            data, details = convert_saved_model(saved_model, "int8", representative, opts.io_dtype, opts.per_channel,
                                                opts.per_channel, float_nodes=tuple(nodes))
            return data, {**details, "from": "onnx2tf SavedModel"}
    key = (f"tflite-nodes:{route}:{opts.io_dtype}:{opts.per_channel}:{dense_per_channel(opts, 'int8')}:"
           f"{opts.calibration_count(ctx.task)}:{opts.seed}")
    if key not in ctx.produced:                              # node names of a full-int8 conversion, once per context
        full = run(())[0]
        ctx.produced[key] = (match_tflite(layers, tflite_compute_ops(full)), full)
    where, full = ctx.produced[key]
    tail_mode = opts.float_tail(ctx.task)
    tail = tflite_tail(full, with_head=tail_mode == "head") if tail_mode else []
    nodes = list(dict.fromkeys(nodes_of(where, wanted) + tail))           # a head layer may be asked for twice
    data, details = run(nodes)
    details.update(float_layers=[layer.name for layer in wanted], float_nodes=nodes, float_tail=tail,
                   float_tail_mode=tail_mode,
                   calibration={"samples": len(calib), "split": "train", "seed": opts.seed})
    return data, details


# tflite-runtime's last release: still what `pip install tflite-runtime` gives on a Raspberry Pi, beside ai-edge-litert
LAST_TFLITE_RUNTIME = "2.14.0"


def min_runtime_version(data: bytes) -> str | None:
    """The oldest TFLite runtime the converter says runs this file (its `min_runtime_version` metadata, from the
    op versions it used), or None when the file does not say."""
    try:
        from ai_edge_litert import schema_py_generated as schema
        m = schema.Model.GetRootAsModel(data, 0)
        for k in range(m.MetadataLength()):
            md = m.Metadata(k)
            if md.Name() == b"min_runtime_version":
                raw = bytes(m.Buffers(md.Buffer()).DataAsNumpy()).split(b"\0")[0].decode()
                if raw:
                    return raw
    except Exception:                                    # an unreadable table: the figure stays unknown, not guessed
        return None
    return None


def _newer(version: str, than: str) -> bool:
    def key(v):
        return tuple(int(p) if p.isdigit() else 0 for p in v.split("."))
    return key(version) > key(than)


class _TFLiteExporter(Exporter):
    suffix = ".tflite"
    options = ("tflite_route", "keep_nchw")
    runtime = "litert"
    mode = "fp32"

    def export(self, ctx: ExportContext, path: Path) -> dict:
        route = route_for(ctx, self.mode)
        if self.mode == "int8" and (ctx.options.float_layers or ctx.options.float_tail(ctx.task)):
            data, details = mixed_int8(ctx)
        else:
            data, details = (via_converter if route == "converter" else via_onnx2tf)(ctx, self.mode)
        path.write_bytes(data)
        details["route"] = route
        details["min_runtime_version"] = needs = min_runtime_version(data)
        if needs and _newer(needs, LAST_TFLITE_RUNTIME):
            details["runtime_note"] = (f"needs TFLite >= {needs}: tflite-runtime {LAST_TFLITE_RUNTIME} (the last "
                                       "tflite-runtime wheel, still common on Raspberry Pi) cannot load it; LiteRT can")
            if self.mode == "dynamic" and dense_per_channel(ctx.options, self.mode):
                details["runtime_note"] += ("; per-channel Dense weights (--dense-per-channel) make it so: without "
                                            "that option the file loads in older runtimes")
        return details


class TFLiteFp32(_TFLiteExporter):
    name = "tflite"
    description = "TFLite fp32 (Keras converter, or onnx2tf from the fp32 ONNX)"
    precision = "fp32"
    atol = 1e-3
    min_agreement = 1.0
    mode = "fp32"


class TFLiteInt8(_TFLiteExporter):
    name = "tflite-int8"
    tag = "int8"
    description = "TFLite full-integer int8 (int8 weights and activations, int8/uint8 input and output)"
    precision = "int8"
    atol = None
    min_agreement = 0.98
    mode = "int8"
    options = ("tflite_route", "keep_nchw", "calibration_samples", "io_dtype", "per_channel", "dense_per_channel",
               "keep_float", "int8_tail")


class TFLiteDynamic(_TFLiteExporter):
    name = "tflite-dynamic"
    tag = "dynamic"
    description = "TFLite dynamic-range quantization (int8 weights, float activations)"
    precision = "dynamic"
    atol = None
    min_agreement = 0.98
    mode = "dynamic"
    options = ("tflite_route", "keep_nchw", "per_channel", "dense_per_channel")


class TFLiteFp16(_TFLiteExporter):
    name = "tflite-fp16"
    tag = "fp16"
    description = "TFLite float16 weights"
    precision = "fp16"
    atol = None
    min_agreement = 0.99
    mode = "fp16"


class TFLiteSparse(_TFLiteExporter):
    name = "tflite-sparse"
    tag = "sparse"
    description = "TFLite with sparse weight encoding (EXPERIMENTAL_SPARSITY) where the converter applies it"
    needs = ("to_tflite",)
    precision = "fp32"
    atol = 1e-3
    min_agreement = 1.0
    mode = "sparse"

    def accepts(self, backend) -> bool:
        return super().accepts(backend) and self.mode in backend.TFLITE_MODES   # Keras's TFLiteConverter only

    def why_not(self, backend) -> str:
        return "it needs a TFLite converter that writes sparse-encoded weights (Keras's TFLiteConverter)"

    def export(self, ctx: ExportContext, path: Path) -> dict:
        if route_for(ctx, self.mode) != "converter":
            raise OptionError("tflite-sparse needs the converter route (a Keras source)")
        return super().export(ctx, path)


EXPORTERS = (TFLiteFp32, TFLiteInt8, TFLiteDynamic, TFLiteFp16, TFLiteSparse,)   # registered by exporters/registry.py

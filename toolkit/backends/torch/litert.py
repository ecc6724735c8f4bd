"""PyTorch -> TFLite without ONNX: litert-torch (Google's PyTorch -> LiteRT converter: torch.export, then the LiteRT
converter) writes the fp32 file, ai-edge-quantizer (LiteRT's quantizer, working on that file) the quantized ones:
dynamic range (int8 weights, float activations) and full integer (int8 weights and activations, calibrated on real
training images; int8 input and output). The file takes NHWC images unless NCHW is asked for, as onnx2tf's do."""
from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from edgepack.toolkit.errors import ModelError, OptionError, first_line

MODES = ("fp32", "dynamic", "int8")          # what this route writes (no fp16 or sparse encoding)


def import_litert_torch():
    """(litert_torch, ai_edge_quantizer), or a one-line error saying how to install them."""
    for name in ("absl", "jax._src.xla_bridge", "litert_torch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with _quiet():
            import ai_edge_quantizer
            import litert_torch
    except ImportError as e:
        raise OptionError("the litert-torch TFLite route needs litert-torch and ai-edge-quantizer on Python 3.11+ "
                          "(`make setup` installs them; pip install 'edgepack[litert-torch]' && pip install --no-deps "
                          "litert-torch==0.10.0 litert-converter==0.5.0), or use --tflite-route onnx2tf: "
                          f"{first_line(e)}") from None
    return litert_torch, ai_edge_quantizer


@contextlib.contextmanager
def _quiet():
    """litert-torch prints its progress tree and ai-edge-quantizer a report and a progress bar: keep them out of
    edgepack's output (errors still raise)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def to_tflite(model, mode: str, representative=None, io_dtype: str = "int8", per_channel: bool = True,
              dense_per_channel: bool = True, float_nodes: tuple[str, ...] = (), input_shape_hwc=None,
              input_layout: str = "NHWC") -> tuple[bytes, dict]:
    """The TFLite file of `model` in `mode` (fp32 | dynamic | int8). `representative()` yields [one float image in
    the file's input layout] (int8 only); `dense_per_channel=False`: FULLY_CONNECTED weights per tensor;
    `float_nodes`: output tensor names of ops kept float in an int8 file."""
    if mode not in MODES:
        raise OptionError(f"TFLite mode {mode!r} is not available through litert-torch (only {', '.join(MODES)}): "
                          "use --tflite-route onnx2tf")
    if mode == "int8" and io_dtype != "int8":
        raise OptionError(f"litert-torch's full-integer files take int8 input and output, not {io_dtype}: use "
                          "--tflite-route onnx2tf for uint8")
    litert_torch, _ = import_litert_torch()
    h, w, c = input_shape_hwc
    model = model.eval().to(memory_format=torch.contiguous_format)
    nhwc = input_layout == "NHWC"
    details = {"converter": f"litert-torch {_version('litert-torch')}", "torch": torch.__version__,
               "mode": mode, "from": "PyTorch model (torch.export)", "input_layout": input_layout}
    with tempfile.TemporaryDirectory(prefix="edgepack-litert-") as tmp:
        fp32 = Path(tmp) / "fp32.tflite"
        try:
            with _quiet(), torch.no_grad():
                source = litert_torch.to_channel_last_io(model, args=[0]).eval() if nhwc else model
                example = (torch.zeros(1, h, w, c) if nhwc else torch.zeros(1, c, h, w),)
                litert_torch.convert(source, example).export(str(fp32))
        except Exception as e:      # noqa: BLE001 - torch.export and the converter raise many kinds
            raise ModelError(f"litert-torch conversion failed: {first_line(e)}") from None
        if mode == "fp32":
            return fp32.read_bytes(), details
        data, quant = _quantize(fp32, mode, representative, per_channel, dense_per_channel, float_nodes)
    details.update(quant)
    details["converter"] += f", then ai-edge-quantizer {_version('ai-edge-quantizer')}"
    return data, details


def _quantize(fp32: Path, mode: str, representative, per_channel: bool, dense_per_channel: bool,
              float_nodes) -> tuple[bytes, dict]:
    from ai_edge_quantizer import qtyping, quantizer, recipe_manager
    chan, tensor = qtyping.QuantGranularity.CHANNELWISE, qtyping.QuantGranularity.TENSORWISE
    rm = recipe_manager.RecipeManager()
    for op, granularity in ((qtyping.TFLOperationName.ALL_SUPPORTED, chan if per_channel else tensor),
                            (qtyping.TFLOperationName.FULLY_CONNECTED, chan if dense_per_channel else tensor)):
        if mode == "dynamic":            # a later config of the same scope wins for its op: Dense weights as asked
            rm.add_dynamic_config(".*", op, num_bits=8, granularity=granularity)
        else:
            rm.add_static_config(".*", op, activation_num_bits=8, weight_num_bits=8, weight_granularity=granularity)
    every = qtyping.TFLOperationName.ALL_SUPPORTED
    for node in float_nodes:                 # later configs win: these ops stay float
        rm.add_quantization_config(f"^{re.escape(node)}$", every, algorithm_key="no_quantize")
    weights = (f"int8 {'per-channel' if per_channel else 'per-tensor'} symmetric, Dense "
               f"{'per-channel' if dense_per_channel else 'per-tensor'}")
    try:
        with _quiet():
            qt = quantizer.Quantizer(str(fp32))
            qt.load_quantization_recipe(rm.get_quantization_recipe())
            result = None
            if mode == "int8":
                from ai_edge_litert.interpreter import Interpreter
                signatures = Interpreter(model_path=str(fp32)).get_signature_list()
                key = next(iter(signatures))
                name = signatures[key]["inputs"][0]
                samples = [{name: np.asarray(batch[0], np.float32)} for batch in representative()]
                # the range each activation takes over every calibration image, as TFLiteConverter calibrates:
                # ai-edge-quantizer's default averages per-image ranges (a moving average), which on one image at a
                # time clips the larger activations (measured: CIFAR-10 students lost 2.6 points and more)
                from ai_edge_quantizer import calibrator
                from ai_edge_quantizer.utils import qsv_utils
                cal = calibrator.Calibrator(str(fp32), num_threads=max(1, os.cpu_count() or 1),
                                            qsv_update_func=qsv_utils.min_max_update)
                cal.calibrate({key: samples}, rm)
                result = cal.get_model_qsvs()
            out = Path(fp32).with_name(f"{mode}.tflite")
            qt.quantize(result, enable_progress_report=False).export_model(str(out), overwrite=True)
    except OptionError:
        raise
    except Exception as e:      # noqa: BLE001
        raise ModelError(f"ai-edge-quantizer ({mode}) failed: {first_line(e)}") from None
    details = {"quantizer": "ai-edge-quantizer", "weights": weights}
    if mode == "int8":
        details.update(activations="int8 per-tensor affine, min/max over all calibration images", io_dtype="int8",
                       float_nodes=list(float_nodes))
    return out.read_bytes(), details

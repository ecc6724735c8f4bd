"""The litert-torch TFLite route: PyTorch -> LiteRT without ONNX (torch.export, then ai-edge-quantizer), beside onnx2tf;
its files verified in LiteRT, its NHWC/NCHW inputs, and what it cannot write said in one line."""
import json

import numpy as np
import pytest

from edgepack.toolkit.errors import OptionError

pytestmark = pytest.mark.integration


def _details(path):
    return json.loads(path.with_name(path.name + ".json").read_text())["steps"][-1]["details"]


@pytest.fixture(scope="module")
def litert_files(trained, mnist_small, tmp_path_factory):
    from edgepack.exporters.api import export_checkpoint
    from edgepack.exporters.base import ExportOptions
    out = tmp_path_factory.mktemp("litert-torch")
    opts = ExportOptions(tflite_route="litert-torch", calibration_samples=100, verify_images=512)
    results = export_checkpoint(trained["torch"], ["tflite", "tflite-dynamic", "tflite-int8"], out, mnist_small,
                                None, opts, verbose=False)
    return {r.format: r for r in results}


def test_litert_torch_files_are_verified_and_compute_what_pytorch_does(litert_files, trained, mnist_small):
    from ai_edge_litert.interpreter import Interpreter

    from edgepack.runtimes import open_runner
    from edgepack.toolkit.api import load_checkpoint
    assert all(r.ok for r in litert_files.values()), {f: r.error for f, r in litert_files.items()}
    fp32, dyn, int8 = (litert_files[f].path for f in ("tflite", "tflite-dynamic", "tflite-int8"))
    for path in (fp32, dyn, int8):
        d = _details(path)
        assert d["converter"].startswith("litert-torch 0.10.0") and d["route"] == "converter"
        assert d["input_layout"] == "NHWC" and d["export_seconds"] > 0
    assert "ai-edge-quantizer" in _details(int8)["converter"] and _details(int8)["calibration"]["samples"] == 100
    # the file takes NHWC images like onnx2tf's; the full-integer one takes and gives int8
    it = Interpreter(model_path=str(int8))
    inp, outp = it.get_input_details()[0], it.get_output_details()[0]
    assert list(inp["shape"]) == [1, 28, 28, 1] and inp["dtype"] == np.int8 and outp["dtype"] == np.int8
    assert Interpreter(model_path=str(fp32)).get_input_details()[0]["dtype"] == np.float32
    assert fp32.stat().st_size > 3 * int8.stat().st_size and fp32.stat().st_size > 3 * dyn.stat().st_size
    x = mnist_small.normalize(mnist_small.x_test[:64])
    source = load_checkpoint(trained["torch"])
    ref = source.backend.predict(source.model, x.transpose(0, 3, 1, 2))
    got = open_runner(fp32).predict(x)
    assert np.abs(got - ref).max() < 1e-4                              # fp32: the same function
    q = open_runner(int8).predict(x)
    assert (q.argmax(1) == ref.argmax(1)).mean() >= 0.95 and np.abs(q - ref).max() > 1e-4   # quantized, close


def test_keep_nchw_gives_an_nchw_input_and_the_runner_follows_it(trained, mnist_small, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from edgepack.exporters.api import export_checkpoint
    from edgepack.exporters.base import ExportOptions
    from edgepack.runtimes import open_runner
    (r,) = export_checkpoint(trained["torch"], ["tflite"], tmp_path, mnist_small, None,
                             ExportOptions(tflite_route="litert-torch", keep_nchw=True, verify_images=256), verbose=False)
    assert r.ok, r.error
    assert list(Interpreter(model_path=str(r.path)).get_input_details()[0]["shape"]) == [1, 1, 28, 28]
    assert _details(r.path)["input_layout"] == "NCHW" and open_runner(r.path).layout((28, 28, 1)) == "NCHW"


def test_what_the_route_cannot_do_is_one_line(trained, mnist_small, tmp_path):
    from edgepack.exporters.api import export_checkpoint
    from edgepack.exporters.base import ExportOptions

    def one(ckpt, fmt, **kw):
        (r,) = export_checkpoint(ckpt, [fmt], tmp_path, mnist_small, None,
                                 ExportOptions(tflite_route="litert-torch", verify_images=64, **kw), verbose=False)
        assert not r.ok and "\n" not in r.error and not list(tmp_path.glob("*.partial*"))
        return r.error
    assert "converts PyTorch models, not keras" in one(trained["keras"], "tflite")
    assert "does not write fp16 files" in one(trained["torch"], "tflite-fp16")
    assert "int8 input and output, not uint8" in one(trained["torch"], "tflite-int8", io_dtype="uint8")
    # a route name that does not exist is refused before any work
    with pytest.raises(OptionError, match="unknown tflite route .* litert-torch"):
        ExportOptions(tflite_route="tflite-converter")


def test_auto_takes_each_frameworks_measured_route(trained, mnist_small, tmp_path):
    """auto: Keras its TFLiteConverter, PyTorch the route chosen by measurement (TorchFramework.TFLITE_ROUTE)."""
    from edgepack.exporters.api import export_context
    from edgepack.exporters.tflite import route_for
    from edgepack.toolkit.api import load_checkpoint
    from edgepack.toolkit.backends import get_backend
    torch_fw = get_backend("torch")
    ctx = export_context(load_checkpoint(trained["torch"]).model, mnist_small, tmp_path)
    assert route_for(ctx, "int8") == torch_fw.TFLITE_ROUTE
    assert route_for(ctx, "fp16") == "onnx2tf"                      # litert-torch writes no fp16 files
    ctx = export_context(load_checkpoint(trained["keras"]).model, mnist_small, tmp_path)
    assert route_for(ctx, "int8") == "converter"

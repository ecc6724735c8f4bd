"""`edgepack export`: argument parsing only; the work is exporters.api.export_checkpoint."""
from __future__ import annotations

import argparse


def add_export_parser(sub, add_data_args, func):
    from exporters.base import CALIBRATION_METHODS, IO_DTYPES, SPARSE_VALUE_DTYPES, TFLITE_ROUTES
    from exporters.registry import get_exporter, list_exporters
    from exporters.verify import TARGET_HELP, TARGETS
    lines = "\n".join(f"  {n:<18} {get_exporter(n).description}" for n in list_exporters())
    p = sub.add_parser("export", help="export a checkpoint to TFLite / ONNX / sparse formats, each verified",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=f"formats:\n{lines}")
    p.add_argument("checkpoint", help="a .pt or .keras checkpoint written by edgepack (its .json record beside it)")
    p.add_argument("--to", required=True, help="comma-separated formats (see below)")
    add_data_args(p, required=False)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--force", action="store_true", help="write beside exports of another model already in --out")
    p.add_argument("--calibration", default="minmax", choices=CALIBRATION_METHODS, help="ORT static calibration method")
    p.add_argument("--calibration-samples", type=int, default=200, help="training images used for calibration")
    p.add_argument("--io-dtype", default="int8", choices=IO_DTYPES, help="full-integer TFLite input/output type")
    p.add_argument("--onnx-activations", default="uint8", choices=IO_DTYPES,
                   help="ONNX int8 activation type: uint8 (ORT's x86 kernels fuse every QDQ conv) or int8")
    p.add_argument("--tflite-route", default="auto", choices=TFLITE_ROUTES, help="the framework's own converter (Keras) or onnx2tf; auto: the converter where there is one")
    p.add_argument("--keep-nchw", action="store_true", help="onnx2tf: keep an NCHW input (default NHWC)")
    p.add_argument("--per-tensor", action="store_true", help="int8 weights with one scale per tensor (default per channel)")
    p.add_argument("--dense-per-tensor", action="store_true",
                   help="Keras TFLite route: per-tensor weights for Dense layers only (smaller gzip)")
    p.add_argument("--sparse-values", default="fp32", choices=SPARSE_VALUE_DTYPES)
    p.add_argument("--verify-images", type=int, default=1000,
                   help="test images for verification, stratified by class and seeded (default 1000)")
    p.add_argument("--target", default="any", choices=TARGETS, help=f"CPUs the files must keep their accuracy on (default any). {TARGET_HELP}")
    p.add_argument("--max-accuracy-drop", type=float, default=1.0,
                   help="quantized files: allowed accuracy drop in percentage points, beyond two standard errors (default 1)")
    p.set_defaults(func=func)


def run_export(args) -> int:
    from pathlib import Path

    from exporters.api import export_checkpoint, raise_on_failures
    from exporters.base import ExportOptions
    from toolkit.errors import ModelError
    from toolkit.outputs import guard_export_folder
    from toolkit.record import sha256_file
    if not Path(args.checkpoint).is_file():
        raise ModelError(f"{args.checkpoint}: checkpoint not found")
    guard_export_folder(args.out, sha256_file(args.checkpoint), force=args.force)
    formats = [f.strip() for f in args.to.split(",") if f.strip()]
    opts = ExportOptions(calibration_method=args.calibration, calibration_samples=args.calibration_samples,
                         io_dtype=args.io_dtype, onnx_activations=args.onnx_activations, tflite_route=args.tflite_route, keep_nchw=args.keep_nchw,
                         sparse_values=args.sparse_values, verify_images=args.verify_images,
                         per_channel=not args.per_tensor, dense_per_channel=not args.dense_per_tensor,
                         target=args.target, max_accuracy_drop=args.max_accuracy_drop)
    results = export_checkpoint(args.checkpoint, formats, args.out, args.data, args.data_dir, opts)
    raise_on_failures(results)
    return 0

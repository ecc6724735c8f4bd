"""`edgepack export`: argument parsing only; the work is exporters.api.export_checkpoint."""
from __future__ import annotations

import argparse


def add_export_parser(sub, add_data_args, func):
    from edgepack.exporters.base import ExportOptions
    from edgepack.exporters.registry import get_exporter, list_exporters
    from edgepack.toolkit.options import add_arguments
    lines = "\n".join(f"  {n:<18} {get_exporter(n).description}" for n in list_exporters())
    p = sub.add_parser("export", help="export a checkpoint to TFLite / ONNX / sparse formats, each verified",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=f"formats:\n{lines}")
    p.add_argument("checkpoint", help="a .pt or .keras checkpoint written by edgepack (its .json record beside it), or "
                   "an fp32 .onnx/.tflite file (with --data unless edgepack wrote it; inputs normalised like the data set's)")
    p.add_argument("--to", required=True, help="comma-separated formats (see below)")
    add_data_args(p, required=False)
    from edgepack.toolkit.data.dataset import add_preprocessing_args
    add_preprocessing_args(p)                           # for a model file whose input is not the data set's default
    from edgepack.toolkit.tasks import add_task_args
    add_task_args(p)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--force", action="store_true", help="write beside exports of another model already in --out")
    add_arguments(p, ExportOptions)                     # every export option, declared once in ExportOptions
    p.set_defaults(func=func)


def run_export(args) -> int:
    from pathlib import Path

    from edgepack.exporters.api import export_checkpoint, raise_on_failures
    from edgepack.exporters.base import ExportOptions
    from edgepack.toolkit.errors import ModelError
    from edgepack.toolkit.options import from_args
    from edgepack.toolkit.outputs import guard_export_folder
    from edgepack.toolkit.record import sha256_file
    if not Path(args.checkpoint).is_file():
        raise ModelError(f"{args.checkpoint}: not found")
    guard_export_folder(args.out, sha256_file(args.checkpoint), force=args.force)
    from edgepack.toolkit.data.dataset import parse_preprocessing
    pre = parse_preprocessing(args.mean, args.std, args.scale)
    formats = [f.strip() for f in args.to.split(",") if f.strip()]
    opts = from_args(ExportOptions, args)
    from edgepack.toolkit.tasks import task_from_args
    results = export_checkpoint(args.checkpoint, formats, args.out, args.data, args.data_dir, opts, preprocessing=pre,
                                task=task_from_args(args))
    raise_on_failures(results)
    return 0

"""`edgepack` command line: thin commands over library calls (imports are lazy, so `edgepack bench`
on a runtime-only install never imports torch or TensorFlow)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from edgepack.toolkit.backends import FRAMEWORKS
from edgepack.toolkit.errors import EdgepackError, ModelError, first_line


def _train_config(args):
    from edgepack.toolkit.options import from_args
    from edgepack.toolkit.train import TrainConfig
    return from_args(TrainConfig, args)


def cmd_models(args) -> int:
    from edgepack.toolkit.arch import get_arch, list_archs
    from edgepack.toolkit.backends import get_backend
    frameworks = []
    for fw in FRAMEWORKS:
        try:
            frameworks.append((fw, get_backend(fw)))
        except EdgepackError:
            pass
    head = (f"{'architecture':<18}{'trainable':>11}{'+BN stats':>11}{'MACs':>14}"
            + "".join(f"{fw + ' trainable':>17}" for fw, _ in frameworks))
    print(head)
    for name in list_archs():
        spec = get_arch(name)
        c = spec.counts()
        row = f"{name:<18}{c['trainable']:>11,}{c['total']:>11,}{c['macs']:>14,}"
        for fw, b in frameworks:
            row += f"{b.count_params(b.build(spec))['trainable']:>17,}"
        print(row + f"   {spec.description}")
    print("trainable: the weights training changes; +BN stats: with BatchNorm's running means and variances (what a "
          "checkpoint stores); `edgepack bench` counts the weights in a file, BatchNorm folded into the convolutions")
    return 0


def cmd_train(args) -> int:
    from edgepack.toolkit.arch import get_arch
    from edgepack.toolkit.outputs import guard_checkpoint_folder
    from edgepack.toolkit.tasks import task_from_args
    get_arch(args.arch)                               # option errors before torch/TensorFlow are imported
    task = task_from_args(args)
    guard_checkpoint_folder(args.out, force=args.force)
    from edgepack.toolkit.api import train
    train(args.framework, args.arch, args.data, args.data_dir, out=args.out, config=_train_config(args), task=task)
    return 0


def cmd_export(args) -> int:
    from edgepack.exporters.cli import run_export
    return run_export(args)


def cmd_bench(args) -> int:
    from edgepack.benchmarks.cli import run_bench
    return run_bench(args)


def cmd_compress(args) -> int:
    from edgepack.toolkit.compress import compress
    from edgepack.toolkit.compress.steps import parse_steps
    from edgepack.toolkit.compress.techniques import get_technique
    from edgepack.toolkit.train import TrainConfig
    from edgepack.toolkit.outputs import guard_checkpoint_folder
    steps = parse_steps(args.steps)
    for s in steps:                                   # validate every step before any work starts
        get_technique(s["technique"], **{k: v for k, v in s.items() if k != "technique"})
    if not Path(args.checkpoint).is_file():
        raise ModelError(f"{args.checkpoint}: checkpoint not found")
    guard_checkpoint_folder(args.out, inputs=[args.checkpoint], force=args.force)
    compress(args.checkpoint, steps, args.out, args.data, args.data_dir,
             train_config=TrainConfig(batch_size=args.batch_size, seed=args.seed))
    return 0


def cmd_deploy(args) -> int:
    from edgepack.toolkit.deploy import deploy, select_for_device
    from edgepack.toolkit.deploy.budgets import Budgets
    from edgepack.toolkit.errors import OptionError
    budgets = Budgets.from_args(args)                 # unit errors before anything is loaded
    if args.threads < 1:
        raise OptionError("--threads must be >= 1")
    if args.device:
        if args.select or args.candidates_only:
            raise OptionError("--device measures on the device and picks; --select and --candidates-only are the "
                              "manual steps of the same: one or the other")
    elif args.ssh_config:
        raise OptionError("--ssh-config goes with --device")
    if args.select:
        if args.candidates_only:
            raise OptionError("--select picks from a bundle's device results; --candidates-only writes a bundle: one or the other")
        select_for_device(args.model, args.select, args.out, budgets)
        return 0
    from edgepack.toolkit.data.dataset import parse_preprocessing
    from edgepack.toolkit.tasks import task_from_args
    pre = parse_preprocessing(args.mean, args.std, args.scale)
    task_from_args(args)                               # an unknown task or a misplaced option: one line, before work
    runtimes = [r.strip() for r in args.runtime.split(",") if r.strip()] if args.runtime else None
    from edgepack.toolkit.executors import EXECUTORS, get_executor
    if args.executor not in EXECUTORS:
        raise OptionError(f"unknown executor {args.executor!r}; expected one of {', '.join(EXECUTORS)}")
    if args.executor != "local" and args.mixed_search == "attribution":
        raise OptionError("--executor runs the trials of --mixed-search exhaustive|tpe|auto; the attribution runs here")
    executor = get_executor(args.executor, args.ray_address, args.cpus_per_step)
    if args.device:
        from edgepack.toolkit.deploy.remote import deploy_on_devices
        deploy_on_devices(args.model, args.out, args.device, args.ssh_config, budgets, threads=args.threads,
                          runtimes=runtimes, data=args.data, data_dir=args.data_dir, mixed=not args.no_mixed,
                          preprocessing=pre, mixed_search=args.mixed_search, trials=args.trials, executor=executor,
                          task=task_from_args(args), calibration_samples=args.calibration_samples)
        return 0
    deploy(args.model, args.out, args.data, args.data_dir, budgets, threads=args.threads,
           candidates_only=args.candidates_only, mixed=not args.no_mixed, runtimes=runtimes, preprocessing=pre,
           mixed_search=args.mixed_search, trials=args.trials, executor=executor, task=task_from_args(args),
           calibration_samples=args.calibration_samples)
    return 0


def _add_executor_args(p, what: str, task: str, timing: str, shared: str) -> None:
    p.add_argument("--executor", default="local", help=f"local (default: one after another in this process) or "
                   f"ray ({what} side by side on a local Ray of its own, or on a cluster with --ray-address; "
                   f"pip install 'edgepack[ray]')")
    p.add_argument("--cpus-per-step", type=int, default=1, help=f"with --executor ray: CPUs each {task} reserves "
                   f"(its framework threads); {timing} always takes a whole node")
    p.add_argument("--ray-address", default=None, help="a running Ray cluster (e.g. 10.0.0.5:6379 or auto); its nodes "
                   f"need --resources '{{\"edgepack_bench\": 1}}' and {shared} on shared storage")


def _add_budget_args(p) -> None:
    from edgepack.toolkit.deploy.budgets import add_budget_args
    add_budget_args(p)


def cmd_report_merge(args) -> int:
    from edgepack.toolkit.deploy.budgets import Budgets
    from edgepack.toolkit.deploy.fleet import merge
    budgets = Budgets.from_args(args)
    merge(args.results, args.out, budgets)
    return 0


def cmd_run(args) -> int:
    from edgepack.toolkit.executors import get_executor
    from edgepack.toolkit.recipes.runner import run_recipe
    from edgepack.toolkit.recipes.schema import load_recipe
    load_recipe(args.recipe)                          # a bad recipe is refused before Ray starts
    run_recipe(args.recipe, args.out, redo=[s.strip() for s in (args.redo or "").split(",") if s.strip()],
               executor=get_executor(args.executor, args.ray_address, args.cpus_per_step))
    return 0


def cmd_demo(args) -> int:
    from edgepack.toolkit.demo import run_demo
    return run_demo(args.out)


def _add_data_args(p, required=True):
    from edgepack.toolkit.data.sources import DATASETS
    p.add_argument("--data", required=required, help=f"data set name ({', '.join(DATASETS)}) or any name with "
                                                     "--data-dir")
    p.add_argument("--data-dir", default=None, help="folder (or tarball) holding the data set; overrides $EDGEPACK_DATA")


class OneLineParser(argparse.ArgumentParser):
    """argparse's errors in one line, with where to look, instead of the usage dump (sub-commands inherit it)."""

    def error(self, message):
        if message.endswith("expected one argument"):     # e.g. --max-size -5KB: a value that starts with '-'
            message += " (a value that starts with '-' is written --flag=VALUE)"
        if "unrecognized arguments" in message and "--max-accuracy-drop" in message:
            message += (" (--max-accuracy-drop is a budget of `deploy`; the tolerance of an export's verification is "
                        "--verify-max-drop)")
        sys.stderr.write(f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="edgepack", description="Train, compress, export and benchmark small models for edge runtimes.")
    from edgepack.toolkit import __version__
    p.add_argument("--version", action="version", version=f"edgepack {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("models", help="list built-in architectures with parameter counts per framework")
    s.set_defaults(func=cmd_models)

    s = sub.add_parser("train", help="train a built-in architecture in PyTorch or Keras",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("--framework", required=True, choices=FRAMEWORKS, help="training framework")
    s.add_argument("--arch", required=True, help="built-in architecture (see `edgepack models`)")
    _add_data_args(s)
    from edgepack.toolkit.options import add_arguments
    from edgepack.toolkit.train import TrainConfig
    add_arguments(s, TrainConfig)                       # every training option, declared once in TrainConfig
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--force", action="store_true", help="replace a checkpoint already in --out")
    from edgepack.toolkit.tasks import add_task_args
    add_task_args(s)
    s.set_defaults(func=cmd_train)

    from edgepack.toolkit.compress.techniques import TECHNIQUES, describe_parameters
    s = sub.add_parser("compress", help="distill, prune, quantization-aware train, factorise a checkpoint (steps chain)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="steps (parameters with their defaults):\n" + "\n".join(
                           f"  {n}: {' '.join((c.__doc__ or '').split())}\n      {describe_parameters(c)}" for n, c in TECHNIQUES.items())
                       + "\n\nexample: --steps 'prune-structured(ratio=0.5,criterion=l1,epochs=2),qat(epochs=1)'")
    s.add_argument("checkpoint")
    s.add_argument("--steps", required=True, help="e.g. prune(sparsity=0.8,epochs=2),qat(epochs=1), or a JSON list")
    _add_data_args(s, required=False)
    s.add_argument("--batch-size", type=int, default=32, help="batch size of every fine-tuning step (default 32)")
    s.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    s.add_argument("--out", required=True, help="output folder (not the input checkpoint's own folder)")
    s.add_argument("--force", action="store_true", help="replace a checkpoint already in --out")
    s.set_defaults(func=cmd_compress)

    try:
        from edgepack.exporters.cli import add_export_parser
        add_export_parser(sub, _add_data_args, cmd_export)
    except ImportError:
        pass
    try:
        from edgepack.benchmarks.cli import add_bench_parser
        add_bench_parser(sub, cmd_bench)
    except ImportError:
        pass

    s = sub.add_parser("deploy", help="the best verified file for this machine (or a device) under your budgets",
                       description="Export every candidate (fp32, fp16, dynamic-range, int8 portable and full-range, "
                       "mixed precision with the layers found by measurement), verify and benchmark each on the full "
                       "test set, pick the best within the budgets: DIR/best.* with its manifest, deploy.md, pareto.png.")
    s.add_argument("model", help="a .pt/.keras checkpoint or an fp32 .onnx/.tflite file (with --data unless edgepack "
                   "wrote it; inputs normalised like the data set's); with --select, the bundle folder")
    _add_data_args(s, required=False)
    from edgepack.toolkit.data.dataset import add_preprocessing_args
    add_preprocessing_args(s)                           # for a model file whose input is not the data set's default
    s.add_argument("--out", required=True, help="output folder (best.*, deploy.md, candidates/)")
    from edgepack.toolkit.tasks import add_task_args
    add_task_args(s)
    _add_budget_args(s)
    s.add_argument("--threads", type=int, default=1, help="thread count the files are timed at (default 1)")
    s.add_argument("--runtime", default=None, help="runtimes the candidates are benchmarked on, comma-separated "
                   "(default: every installed runtime that runs each file, OpenVINO included; tflite-micro only when named)")
    s.add_argument("--calibration-samples", type=int, default=None, metavar="N", help="training images every int8 "
                   "candidate calibrates on (default: the task's: 200, detection 500)")
    s.add_argument("--no-mixed", action="store_true", help="skip the per-layer attribution and mixed-precision candidates")
    s.add_argument("--mixed-search", default="attribution", help="how the layers kept float are found: attribution "
                   "(default: each layer float in turn, measured), or a search of --trials trials for spaces too "
                   "large for that: exhaustive, tpe (Optuna's TPE; pip install 'edgepack[search]'), auto (exhaustive "
                   "when the space fits the trials, else tpe); its trials run through --executor")
    s.add_argument("--trials", type=int, default=32, help="with --mixed-search: most trials (default 32); the search "
                   "stops earlier when a trial meets every budget (--max-latency included) or stops improving")
    _add_executor_args(s, "the search's trials", "trial export", "a timing batch", "the output folder, model and data")
    s.add_argument("--candidates-only", action="store_true",
                   help="write a bundle for another device (files, manifests, golden vectors, accuracy measured here)")
    s.add_argument("--select", default=None, metavar="DEVICE_JSON",
                   help="pick from a bundle (MODEL) with a device's `edgepack bench BUNDLE --json` results")
    s.add_argument("--device", action="append", default=None, metavar="ssh://[user@]host[:port]",
                   help="measure on your own device over SSH (repeat for several, measured at once): the bundle made "
                        "here, benchmarked there in a runtime-only environment edgepack makes once, a pick per device "
                        "in OUT/<device>/ (with several, OUT/fleet/ side by side). Keys or an agent only; the host key "
                        "must be known (~/.ssh/known_hosts)")
    s.add_argument("--ssh-config", default=None, metavar="FILE", help="an ssh_config for --device (ssh -F): keys, "
                   "known_hosts, jump hosts")
    s.set_defaults(func=cmd_deploy)

    s = sub.add_parser("report", help="reports across runs and devices (merge: several devices' bench results)")
    rsub = s.add_subparsers(dest="report_command", metavar="merge", required=True)
    m = rsub.add_parser("merge", help="bench results of several devices side by side, the pick per device, one Pareto "
                        "plot per device", description="Merge `edgepack bench --json` results of several devices (for "
                        "a deploy bundle: `edgepack bench BUNDLE --json dev.json` on each): one column group per "
                        "device, files matched by content, the pick per device under the budgets.")
    m.add_argument("results", nargs="+", help="bench JSON files, one per device")
    m.add_argument("--out", required=True, help="output folder (fleet.md, fleet.json, pareto-device<N>.png)")
    _add_budget_args(m)
    m.set_defaults(func=cmd_report_merge)

    s = sub.add_parser("run", help="run a recipe (TOML): train, compress, export, benchmark, report in one run folder")
    s.add_argument("recipe", help="recipe file, e.g. examples/quickstart.toml")
    s.add_argument("--out", default=None, help="run folder (default runs/<recipe name>)")
    s.add_argument("--redo", default=None, metavar="STEP[,STEP]",
                   help="run these steps again even if unchanged (e.g. bench, to re-measure on a quiet machine)")
    _add_executor_args(s, "independent steps", "train/compress/export step", "a bench step",
                       "the run folder, recipe and data")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("demo", help="the quickstart on the embedded default data (no flags needed)")
    s.add_argument("--out", default="demo")
    s.set_defaults(func=cmd_demo)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    out = getattr(args, "out", None)
    fresh = Path(out) if isinstance(out, str) and out and not Path(out).exists() else None
    code = _run(args)
    if code != 0 and fresh is not None and fresh.is_dir() and not any(fresh.iterdir()):
        fresh.rmdir()                              # a command that failed before writing leaves no empty --out behind
    return code


def _run(args) -> int:
    try:
        return int(args.func(args) or 0)
    except EdgepackError as e:
        print(f"edgepack: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgepack: interrupted", file=sys.stderr)
        return 130
    except OSError as e:                          # exists, permission, no space: the user's to fix, one line
        where = f" {e.filename}" if getattr(e, "filename", None) else ""
        print(f"edgepack: error: cannot use{where}: {e.strerror or e}", file=sys.stderr)
        return 2
    except Exception as e:  # unexpected: still one line unless debugging
        if os.environ.get("EDGEPACK_DEBUG"):
            raise
        print(f"edgepack: internal error: {first_line(e, 300)} (set EDGEPACK_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""`edgepack bench`: argument parsing only; the work is benchmarks.harness.benchmark + the renderers."""
from __future__ import annotations

import sys
from pathlib import Path


def _number_list(text: str, flag: str, kind=int) -> list:
    from edgepack.toolkit.errors import OptionError
    try:
        return [kind(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise OptionError(f"{flag} expects comma-separated {'integers' if kind is int else 'numbers'}, got {text!r}") from None


def add_bench_parser(sub, func):
    p = sub.add_parser("bench", help="benchmark .tflite/.onnx/.epk files and source checkpoints in one table")
    p.add_argument("models", nargs="+", help="model files (.tflite, .onnx, .epk, .pt, .keras)")
    p.add_argument("--data", default=None,
                   help="data set for inputs and accuracy: mnist, cifar10, digits (the offline stand-in for mnist, only "
                        "when named), a name with --data-dir, or 'synthetic' (random input of each model's own shape and "
                        "dtype: latency, memory, size only). Default: the data set each file's edgepack record names, "
                        "else synthetic. A model no data set fits is timed on random input, and said so")
    p.add_argument("--data-dir", default=None, help="folder or tarball holding the data set (default: $EDGEPACK_DATA, the cache, a download)")
    from edgepack.toolkit.data.dataset import add_preprocessing_args
    add_preprocessing_args(p)
    from edgepack.toolkit.tasks import add_task_args
    add_task_args(p)
    from edgepack.runtimes import all_runtimes
    p.add_argument("--runtime", default=None,
                   help=f"runtimes to run each file on: comma-separated ({', '.join(all_runtimes())}) "
                        "or 'all' (every runtime that runs the file, but tflite-micro, which runs only when named); "
                        "default: each format's default runtime")
    p.add_argument("--threads", default="1", help="comma-separated thread counts, e.g. 1,2,4")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--runs", type=int, default=50, help="minimum timed runs (default 50)")
    p.add_argument("--min-seconds", type=float, default=1.0, help="minimum timed seconds (default 1)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--no-accuracy", action="store_true", help="skip the full-test-set accuracy pass")
    p.add_argument("--ort-graph-optimization", default="all", help="ONNX Runtime: disable|basic|extended|all")
    p.add_argument("--cpu-power-w", type=float, default=5.0, help="package power for the estimated energy (W)")
    p.add_argument("--json", default=None, help="write results as JSON")
    p.add_argument("--csv", default=None, help="write results as CSV")
    p.add_argument("--report", default=None, help="folder for report.md and plots")
    p.add_argument("--device", action="append", default=None, metavar="ssh://[user@]host[:port]",
                   help="benchmark the files on your own device over SSH (repeat for several, measured at once): the "
                        "files, their records and the test set (--data/--data-dir here, else the records' data set) "
                        "are sent, measured in a runtime-only environment edgepack makes there once, and the results "
                        "come back (--json: one file per device when several). Keys or an agent only; the host key "
                        "must be known (~/.ssh/known_hosts)")
    p.add_argument("--ssh-config", default=None, metavar="FILE", help="an ssh_config for --device (ssh -F)")
    p.add_argument("--keep-rows", default=None, metavar="DIR",
                   help="a deploy bundle: keep each file's rows in DIR as soon as it is measured, keyed by the file's "
                        "content and its golden vectors, and reuse the rows found there (an interrupted run resumes "
                        "with the files left; `deploy --device` passes it)")
    p.set_defaults(func=func)


def _settings(args, pre, runtimes, accuracy: bool):
    from edgepack.benchmarks.harness import BenchSettings
    from edgepack.toolkit.tasks import task_from_args
    return BenchSettings(threads=_number_list(args.threads, "--threads"), preprocessing=pre, runtimes=runtimes,
                         task=task_from_args(args),
                         warmup=args.warmup, runs=args.runs, min_seconds=args.min_seconds, batch=args.batch,
                         accuracy=accuracy, cpu_power_w=args.cpu_power_w,
                         runtime_options={"graph_optimization": args.ort_graph_optimization})


def run_bundle(args, bundles, pre, runtimes) -> int:
    """A deploy bundle on the device: every file's golden vectors checked, then timed, and its accuracy measured on
    the test set the bundle carries (or --data; random input and no accuracy without either);
    the JSON goes back to `edgepack deploy --select`. With --keep-rows, each file's rows are kept as soon as it is
    measured, and a later run (after an interruption, or on a re-made bundle) measures only the files without rows."""
    import json

    from edgepack.benchmarks.golden import check, measurement_key, read_bundle
    from edgepack.benchmarks.harness import benchmark
    from edgepack.benchmarks.report import print_table, rows, write_json
    from edgepack.toolkit.errors import OptionError
    from edgepack.toolkit.outputs import atomic_text
    if len(args.models) != 1:
        raise OptionError("benchmark a deploy bundle on its own (one folder, no other models)")
    bundle = read_bundle(bundles[0])
    entries = {str(bundle["_folder"] / e["file"]): e for e in bundle["candidates"]}
    data, data_dir = args.data, args.data_dir
    sent = bundle.get("test_set")
    if data is None and sent and (bundle["_folder"] / sent["folder"]).is_dir():
        data, data_dir = sent["name"], str(bundle["_folder"] / sent["folder"])    # the test set it carries
    settings = _settings(args, pre, runtimes, accuracy=not args.no_accuracy and data is not None)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    done = Path(args.keep_rows) if args.keep_rows else None
    saved = {m: done / f"{measurement_key(bundle, e)}.json" for m, e in entries.items()} if done else {}
    kept = [m for m, f in saved.items() if f.is_file()]
    if kept:
        log(f"resuming: {len(kept)} of {len(entries)} files were measured before; measuring the {len(entries) - len(kept)} left")
    results = []
    for model in entries:
        if model in kept:
            results.extend({**d, "model": model} for d in json.loads(saved[model].read_text()))
            continue
        measured = benchmark([model], data or "synthetic", data_dir, settings, progress=log)
        checked = {}
        for r in measured:
            if r.runtime not in checked:
                checked[r.runtime] = check(bundle, entries[model], r.runtime) if r.ok else None
                g = checked[r.runtime]
                if g is not None:
                    log(f"golden vectors: {Path(r.model).name} on {r.runtime}: "
                        f"{'ok' if g['passed'] else 'FAILED: ' + g['error']}")
            r.golden = checked[r.runtime]
        if done:
            done.mkdir(parents=True, exist_ok=True)
            atomic_text(saved[model], json.dumps(rows(measured)))
        results.extend(measured)
    print_table(results)
    if args.json:
        write_json(results, Path(args.json), {"command": "edgepack bench " + " ".join(sys.argv[2:]),
                                              "bundle": str(bundle["_folder"]), "settings": settings.__dict__,
                                              "resumed_files": len(kept)})
    ds = rows(results)
    for d in ds:                             # a file that misses its golden vectors is a result (deploy rejects it)
        if d["ok"] and not (d.get("golden") or {}).get("passed"):
            log(f"warning: {Path(d['model']).name} on {d['runtime']}: {(d.get('golden') or {}).get('error')}")
    failed = [d for d in ds if not d["ok"]]
    for d in failed:
        print(f"edgepack: error: {d['error']}", file=sys.stderr)
    return 2 if failed else 0


def device_args(args) -> list[str]:
    """The bench options that travel to a device (what is measured and how), not where data and results lie here."""
    out = ["--threads", args.threads, "--warmup", str(args.warmup), "--runs", str(args.runs), "--min-seconds",
           str(args.min_seconds), "--batch", str(args.batch), "--ort-graph-optimization", args.ort_graph_optimization,
           "--cpu-power-w", str(args.cpu_power_w)]
    for flag in ("runtime", "mean", "std", "scale", "task", "normal_classes"):
        if getattr(args, flag, None) is not None:
            out += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    return out + (["--no-accuracy"] if args.no_accuracy else [])


def run_on_devices(args) -> int:
    from edgepack.benchmarks.report import print_table
    from edgepack.toolkit.deploy.remote import bench_on_devices
    from edgepack.toolkit.errors import OptionError
    if args.csv or args.report or args.keep_rows:
        raise OptionError("--device writes --json (one file per device when several); --csv, --report and "
                          "--keep-rows are for files measured here")
    docs = bench_on_devices(args.models, args.device, device_args(args), args.data, args.data_dir, args.json,
                            args.ssh_config, progress=lambda m: print(m, file=sys.stderr, flush=True))
    failed = 0
    for url, doc in docs.items():
        print(f"\n{url}: {doc['results'][0]['machine'].get('cpu') if doc['results'] else ''}")
        print_table(doc["results"])
        for d in doc["results"]:
            if not d["ok"]:
                failed += 1
                print(f"edgepack: error: {url}: {d['error']}", file=sys.stderr)
    return 2 if failed else 0


def run_bench(args) -> int:
    from edgepack.benchmarks.harness import benchmark
    from edgepack.benchmarks.report import plot_all, print_table, write_csv, write_json, write_markdown
    from edgepack.toolkit.data.dataset import parse_preprocessing
    pre = parse_preprocessing(args.mean, args.std, args.scale)
    runtimes = [r.strip() for r in args.runtime.split(",") if r.strip()] if args.runtime else None
    if args.device:
        return run_on_devices(args)
    if args.ssh_config:
        from edgepack.toolkit.errors import OptionError
        raise OptionError("--ssh-config goes with --device")
    from edgepack.benchmarks.golden import is_bundle
    bundles = [m for m in args.models if is_bundle(m)]
    if bundles:
        return run_bundle(args, bundles, pre, runtimes)
    settings = _settings(args, pre, runtimes, accuracy=not args.no_accuracy)
    results = benchmark(args.models, args.data, args.data_dir, settings, progress=lambda m: print(m, file=sys.stderr, flush=True))
    command = "edgepack bench " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "edgepack bench"
    print_table(results)
    extra = {"command": command, "settings": settings.__dict__}
    if args.json:
        write_json(results, Path(args.json), extra)
    if args.csv:
        write_csv(results, Path(args.csv))
    if args.report:
        out = Path(args.report)
        plots = plot_all(results, out)
        write_json([r.to_dict(raw=True) for r in results], out / "results.json", extra)
        write_csv(results, out / "results.csv")
        write_markdown(results, out / "report.md", plots, command)
        print(f"report: {out / 'report.md'}", file=sys.stderr)
    failed = [r for r in results if not r.ok]
    for r in failed:                              # once each, after the table; the other rows are written
        print(f"edgepack: error: {r.error}", file=sys.stderr)
    return 2 if failed else 0

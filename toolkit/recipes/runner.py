"""`edgepack run RECIPE.toml`: run the steps in order into one run directory.

- Each step writes into `<out>/.<id>.partial/` and is renamed to `<out>/<id>/` only when it finished, so an
  interrupted run (Ctrl-C, kill) leaves no half-written artifact; the next run starts that step again.
- A step is skipped when its content hash (its own settings, the data set, and the sha256 of every artifact it
  reads) equals the one recorded in `<out>/.edgepack/state.json` and its outputs still exist.
- At the end: `results.json` / `results.csv` (all bench steps), `report.md`, plots.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from edgepack.toolkit import __version__
from edgepack.toolkit.errors import OptionError
from edgepack.toolkit.recipes.schema import Recipe, Step, load_recipe

STATE_VERSION = 1
CODE_REVISION = 5          # bump when a step's results would change for the same settings (part of every step hash)


def _sha(path: Path) -> str:
    from edgepack.toolkit.record import sha256_file
    return sha256_file(path)


class Runner:
    @classmethod
    def from_path(cls, recipe_path: str, out, verbose: bool = True) -> "Runner":
        """The runner of a recipe file (how an executor's worker rebuilds the driver's runner)."""
        from edgepack.toolkit.recipes.schema import load_recipe
        return cls(load_recipe(recipe_path), out, verbose)

    def __init__(self, recipe: Recipe, out: Path, verbose: bool = True, redo: tuple[str, ...] = ()):
        self.recipe, self.out, self.verbose = recipe, Path(out), verbose
        ids = [s.id for s in recipe.steps]
        unknown = [r for r in redo if r not in ids]
        if unknown:
            raise OptionError(f"--redo: no step {', '.join(map(repr, unknown))} in {recipe.name} (steps: {', '.join(ids)})")
        self.redo = set(redo)
        self.state_file = self.out / ".edgepack" / "state.json"
        self.state = self._load_state()
        self._dataset = None

    # ------------------------------------------------------------ state
    def _load_state(self) -> dict:
        try:
            st = json.loads(self.state_file.read_text())
            return st if st.get("version") == STATE_VERSION else {"version": STATE_VERSION, "steps": {}}
        except (OSError, json.JSONDecodeError):
            return {"version": STATE_VERSION, "steps": {}}

    def _save_state(self) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2, default=str))
        os.replace(tmp, self.state_file)

    def log(self, msg: str) -> None:
        if self.verbose:
            print(msg, flush=True)

    @property
    def dataset(self):
        if self._dataset is None:
            from edgepack.toolkit.data import load_dataset
            self._dataset = load_dataset(self.recipe.data["name"], self._data_dir())
        return self._dataset

    def _data_dir(self):
        d = self.recipe.data.get("dir")
        if d is None:
            return None
        p = Path(d)
        return str(p if p.is_absolute() else (self.recipe.path.parent / p).resolve())

    def primary(self, step_id: str) -> Path:
        return self.out / self.state["steps"][step_id]["primary"]

    def files(self, step_id: str) -> list[Path]:
        return [self.out / f for f in self.state["steps"][step_id]["outputs"]]

    # ------------------------------------------------------------ hashing
    def step_hash(self, step: Step) -> str:
        h = hashlib.sha256()
        # the data's content, not its name: a re-run with other data (real MNIST after the offline stand-in,
        # images moved between class folders) recomputes every step
        h.update(json.dumps({"kind": step.kind, "options": step.options, "data": self.recipe.data, "task": self.recipe.task,
                             "data_sha256": self.dataset.sha256(), "fallback": self.dataset.fallback,
                             "edgepack": __version__, "revision": CODE_REVISION}, sort_keys=True, default=str).encode())
        for ref in step.reads():
            for f in sorted(self.files(ref)):
                if f.is_file() and not f.name.endswith(".json"):
                    h.update(_sha(f).encode())
        return h.hexdigest()

    # ------------------------------------------------------------ running
    def run(self, executor=None) -> dict:
        """Run the steps with an executor (default: in this process, in order; toolkit/executors.py)."""
        from edgepack.toolkit.executors import SequentialExecutor
        self.out.mkdir(parents=True, exist_ok=True)
        t_all = time.time()
        (executor or SequentialExecutor()).run(self)
        from edgepack.toolkit.recipes.report import write_run_report
        write_run_report(self, time.time() - t_all)
        return self.state

    def needs_run(self, step: Step, i: int) -> str | None:
        """The step's content hash when it must run; None (logged) when its recorded outputs are current."""
        digest = self.step_hash(step)
        prev = self.state["steps"].get(step.id)
        if (step.id not in self.redo and prev and prev.get("hash") == digest
                and all((self.out / f).exists() for f in prev["outputs"])):
            self.log(f"[{i}/{len(self.recipe.steps)}] {step.id} ({step.kind}): unchanged, skipped")
            return None
        return digest

    def execute(self, step: Step, digest: str, i: int) -> dict:
        """Run one step into `.<id>.partial/`, rename it to `<id>/` when it finished; the state entry (not saved:
        `record` does that, in the process that owns state.json)."""
        self.log(f"[{i}/{len(self.recipe.steps)}] {step.id} ({step.kind})")
        final = self.out / step.id
        partial = self.out / f".{step.id}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        t0, started = time.time(), time.time()
        result = getattr(self, "step_" + step.kind.replace("-", "_"))(step, partial)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial, final)
        rel = lambda p: str(Path(step.id) / Path(p).relative_to(partial))  # noqa: E731
        return {"hash": digest, "kind": step.kind, "primary": rel(result["primary"]) if result.get("primary") else None,
                "outputs": [rel(p) for p in result["outputs"]], "summary": result.get("summary", {}),
                "seconds": round(time.time() - t0, 1), "started": started, "finished": time.time()}

    def record(self, step_id: str, entry: dict) -> None:
        self.state["steps"][step_id] = entry
        self._save_state()

    # ------------------------------------------------------------ step kinds
    def _train_config(self, o: dict):
        from edgepack.toolkit.options import from_recipe
        from edgepack.toolkit.train import TrainConfig
        return from_recipe(TrainConfig, o)

    def step_train(self, step: Step, d: Path) -> dict:
        from edgepack.toolkit.api import train
        o = step.options
        loss_fn, extra = None, {}
        if o.get("teacher"):
            from edgepack.toolkit.api import load_checkpoint
            from edgepack.toolkit.backends import get_backend
            from edgepack.toolkit.compress.techniques import Distill
            teacher = load_checkpoint(self.primary(o["teacher"]))
            kd = Distill(teacher=str(self.primary(o["teacher"])), alpha=o.get("alpha"), temperature=o.get("temperature"))
            loss_fn = get_backend(o["framework"]).kd_loss(teacher.model, kd.alpha, kd.temperature)
            extra = {"distilled_from": o["teacher"], "alpha": kd.alpha, "temperature": kd.temperature}
        res = train(o["framework"], o["arch"], self.dataset, out=d, config=self._train_config(o), verbose=self.verbose,
                    loss_fn=loss_fn, task=self.recipe.task)
        m = {**res.metrics, **extra}
        (d / "metrics.json").write_text(json.dumps(m, indent=2, default=str))
        return {"primary": res.checkpoint, "outputs": [res.checkpoint, res.checkpoint.with_name(res.checkpoint.name + ".json"),
                                                       d / "metrics.json", d / "history.png"], "summary": m}

    def step_compress(self, step: Step, d: Path) -> dict:
        from edgepack.toolkit.compress import compress
        from edgepack.toolkit.train import TrainConfig
        steps = []
        for s in step.options["steps"]:
            s = dict(s)
            if s["technique"] == "distill" and s.get("teacher") in self.state["steps"]:
                s["teacher"] = str(self.primary(s["teacher"]))
            steps.append(s)
        cfg = TrainConfig(batch_size=step.options.get("batch_size", 32), seed=step.options.get("seed", 0))
        ckpt = compress(self.primary(step.options["input"]), steps, d, self.dataset, None,
                        train_config=cfg, verbose=self.verbose)
        summary = json.loads((d / "metrics.json").read_text())
        return {"primary": ckpt, "outputs": [ckpt, ckpt.with_name(ckpt.name + ".json"), d / "metrics.json"], "summary": summary}

    def step_transfer(self, step: Step, d: Path) -> dict:
        from edgepack.toolkit.api import dataset_info, load_checkpoint
        from edgepack.toolkit.backends import get_backend
        from edgepack.toolkit.record import ArtifactRecord, sha256_file
        src = load_checkpoint(self.primary(step.options["input"]))
        if src.spec is None:
            raise_option(f"step {step.id}: transfer needs a model built from an architecture description")
        target = get_backend(step.options["to"])
        model = target.build(src.spec, seed=0)
        target.set_weights(model, src.backend.get_weights(src.model, src.spec), src.spec)   # the shared (spec) layout
        _, acc = target.evaluate(model, self.dataset)
        ckpt = target.save(model, d / f"model{target.SUFFIXES[0]}")
        rec = ArtifactRecord("checkpoint", ckpt.name, framework=target.NAME, format=target.NAME, arch=src.spec.to_dict(),
                             dataset=dataset_info(self.dataset), parent={"file": str(src.path), "sha256": sha256_file(src.path)},
                             steps=(src.record.steps if src.record else []) + [{"step": "transfer", "from": src.backend.NAME,
                                                                                  "to": target.NAME, "test_accuracy": acc}],
                             metrics={"test_accuracy": acc})
        rec.fill_sizes(ckpt)
        rec.save(ckpt)
        return {"primary": ckpt, "outputs": [ckpt, ckpt.with_name(ckpt.name + ".json")], "summary": {"test_accuracy": acc}}

    def step_export(self, step: Step, d: Path) -> dict:
        from edgepack.exporters.api import export_checkpoint
        from edgepack.exporters.base import ExportOptions
        from edgepack.toolkit.options import from_recipe
        o = step.options
        opts = from_recipe(ExportOptions, o)
        results = export_checkpoint(self.primary(o["input"]), o["formats"], d, self.dataset, None, opts,
                                    verbose=self.verbose)
        outs, summary = [], {}
        for r in results:
            if r.path is not None:
                outs += [r.path, r.path.with_name(r.path.name + ".json")]
            summary[r.format] = {"ok": r.ok, "error": r.error, "file": r.path.name if r.path else None,
                                 "bytes": r.record.sizes["bytes"] if r.record else None,
                                 "gzip_bytes": r.record.sizes["gzip_bytes"] if r.record else None,
                                 "verification": r.verification.to_dict() if r.verification else None}
        failed = [f for f, s in summary.items() if not s["ok"]]
        if failed:
            self.log(f"  export: {', '.join(failed)} did not pass verification (kept, flagged; see the report)")
        return {"primary": None, "outputs": outs, "summary": summary}

    def step_bench(self, step: Step, d: Path) -> dict:
        from edgepack.benchmarks.harness import BenchSettings, benchmark
        from edgepack.benchmarks.report import plot_all, write_csv, write_json
        o = step.options
        models = []
        for ref in o["inputs"]:
            for f in self.files(ref):
                if f.suffix in (".onnx", ".tflite", ".epk") and ".FAILED." not in f.name:
                    models.append(f)
                elif o.get("include_checkpoints", True) and f.suffix in (".pt", ".keras", ".h5"):
                    models.append(f)
        settings = BenchSettings(threads=o.get("threads", [1]), runs=o.get("runs", 50), min_seconds=o.get("min_seconds", 1.0),
                                 warmup=o.get("warmup", 5), runtimes=o.get("runtimes"))
        from edgepack.toolkit.data.sources import stand_in_name
        name = self.recipe.data["name"]
        if self.dataset.fallback:                  # the models were trained on the stand-in: bench on it, by name
            name = stand_in_name(name)
        results = benchmark(models, name, self._data_dir(), settings, progress=self.log)
        raw = [r.to_dict(raw=True) for r in results]
        write_json(raw, d / "results.json", {"settings": settings.__dict__})
        write_csv(results, d / "results.csv")
        plots = plot_all(raw, d)
        return {"primary": d / "results.json", "outputs": [d / "results.json", d / "results.csv", *plots],
                "summary": {"models": len(models), "failed": [r.model for r in results if not r.ok]}}

    def step_prune_curve(self, step: Step, d: Path) -> dict:
        from edgepack.toolkit.recipes.curves import pruning_curves
        o = step.options
        data = pruning_curves(self.primary(o["input"]), self.dataset, o["rates"], o["iterations"], o.get("epochs", 1),
                              o.get("lr", 1e-4), o.get("structured", True), d, verbose=self.verbose,
                              batch_size=o.get("batch_size", 32))
        return {"primary": d / "curves.json", "outputs": [d / "curves.json", d / "pruning_curves.png"], "summary": data}


def raise_option(msg: str):
    from edgepack.toolkit.errors import OptionError
    raise OptionError(msg)


def run_recipe(path: str | Path, out: str | Path | None = None, verbose: bool = True, redo=(), executor=None,
               command: str | None = None) -> Path:
    """Run (or resume) a recipe; `redo` names steps to run again even when unchanged (e.g. a benchmark on a quieter
    machine); steps reading its outputs run again only where those outputs changed. `executor`: an Executor
    (toolkit/executors.py); default in this process, in order."""
    recipe = load_recipe(path)                        # validated before any work starts
    out = Path(out) if out else Path("runs") / recipe.name
    runner = Runner(recipe, out, verbose, tuple(redo))
    runner.command = command                          # what the report says was run (`edgepack demo`, say)
    runner.run(executor)
    return out

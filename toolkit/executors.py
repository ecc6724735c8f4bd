"""Who runs independent work (a recipe's steps, the trials of a mixed-precision search): one small interface, two
implementations, used by recipes and deploy alike.

- `SequentialExecutor` (the default): in this process, in recipe order; no dependency beyond edgepack's own.
- `RayExecutor` (`edgepack run RECIPE --executor ray [--ray-address ADDR]`): every step that must run is a Ray task
  submitted as soon as the steps it reads have finished, so independent steps (the cells of a grid) run side by
  side on the CPUs Ray has: a local Ray started in this process, or a cluster at ADDR. The driver owns the run
  folder's state: a task runs its step into `.<id>.partial/`, renames it to `<id>/` when done (the same rule as the
  sequential run) and returns its state entry, which the driver records at once; so the content-hash skip and
  resume-after-interrupt hold across workers. On a cluster the run folder, the recipe and the data must be on
  storage every node sees under the same path.
- Timing is never concurrent: a bench step needs the custom resource `edgepack_bench` (1 per node) and all of the
  CPUs of a node, so nothing else runs on its node while it times; its entry records the node.

Besides recipe steps, `Executor.map(fn, jobs, bench=...)` runs independent calls (the trials of `edgepack deploy
--mixed-search`) the same way: in this process, or as Ray tasks, the timing ones under the same rule.
"""
from __future__ import annotations

import logging
import os
import socket

from edgepack.toolkit.errors import EdgepackError, OptionError

BENCH_RESOURCE = "edgepack_bench"
EXECUTORS = ("local", "ray")


class Executor:
    name = ""

    def run(self, runner) -> None:
        """Run a recipe's steps (edgepack.toolkit.recipes.runner.Runner) that need to run, recording each as it finishes."""
        raise NotImplementedError

    def parallelism(self) -> int:
        """How many non-timing calls run at once."""
        return 1

    def map(self, fn, jobs: list[tuple], bench: bool = False) -> list:
        """fn(*job) for every job, results in job order. `bench`: the calls time things, so none of them shares a
        node with any other work. fn and the jobs must be picklable (a module-level function, plain values)."""
        raise NotImplementedError


class SequentialExecutor(Executor):
    name = "local"

    def map(self, fn, jobs: list[tuple], bench: bool = False) -> list:
        return [fn(*job) for job in jobs]

    def run(self, runner) -> None:
        for i, step in enumerate(runner.recipe.steps, 1):
            digest = runner.needs_run(step, i)
            if digest is not None:
                entry = runner.execute(step, digest, i)
                entry["node"] = socket.gethostname()
                runner.record(step.id, entry)


def _run_step(runner_cls, recipe_path: str, out: str, step_id: str, digest: str, i: int, state: dict,
              verbose: bool) -> dict:
    """A Ray task: one step, with the state of the steps it reads as the driver recorded them (`runner_cls`: the
    driver's Runner class, passed in so this module does not import the runner that imports it)."""
    import ray

    runner = runner_cls.from_path(recipe_path, out, verbose)
    runner.state = state
    step = next(s for s in runner.recipe.steps if s.id == step_id)
    entry = runner.execute(step, digest, i)
    entry["node"] = f"{socket.gethostname()} ({ray.get_runtime_context().get_node_id()[:12]})"
    entry["pid"] = os.getpid()
    return entry


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """One line within seconds when nothing listens at a --ray-address HOST:PORT (ray.init would retry for about a
    quarter of an hour, naming other addresses); 'auto' and 'local' are Ray's to resolve."""
    import socket
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise OptionError(f"--ray-address {address}: expected HOST:PORT (e.g. 10.0.0.5:6379), ray://HOST:PORT or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise OptionError(f"--ray-address {address}: no Ray cluster answers there ({e.strerror or e}); start one "
                          "(ray start --head ...) or leave --ray-address out for a Ray of edgepack's own") from None


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_step: int = 1):
        try:
            import ray  # noqa: F401
        except ImportError:
            raise OptionError("--executor ray needs Ray: pip install 'edgepack[ray]' (or run without --executor: "
                              "steps run one after another in this process)") from None
        self.address, self.cpus_per_step = address, cpus_per_step
        self._bench: float | None = None             # CPUs a timing task takes: a whole node
        if address:
            check_reachable(address)

    def _start(self):
        import ray
        if ray.is_initialized():
            return ray
        env = {"env_vars": {k: v for k, v in os.environ.items()
                            if k.startswith(("EDGEPACK_", "TF_")) or k in ("PYTHONPATH",)}}
        quiet = {"log_to_driver": False, "runtime_env": env}
        if not os.environ.get("EDGEPACK_DEBUG"):           # Ray's start-up lines (token auth, dashboard) on request
            quiet["logging_level"] = logging.ERROR
        if self.address:
            ray.init(address=self.address, **quiet)
        else:
            # a Ray of its own: without "local", ray.init() joins whatever cluster RAY_ADDRESS or the last `ray start`
            # on this machine names (and then refuses num_cpus): another user's cluster, or another edgepack's
            ray.init(address="local", num_cpus=os.cpu_count(), resources={BENCH_RESOURCE: 1}, include_dashboard=False,
                     **quiet)
        return ray

    def _bench_cpus(self, ray) -> float:
        nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get(BENCH_RESOURCE)]
        if not nodes:
            raise OptionError(f"no Ray node offers the {BENCH_RESOURCE!r} resource benchmarks run on; start each node "
                              f"with: ray start ... --resources '{{\"{BENCH_RESOURCE}\": 1}}'")
        return min(n["Resources"].get("CPU", 1) for n in nodes)    # a whole node (the smallest of them)

    def _options(self, ray, bench: bool) -> dict:
        if bench:
            self._bench = self._bench or self._bench_cpus(ray)
            return {"num_cpus": self._bench, "resources": {BENCH_RESOURCE: 1}}
        return {"num_cpus": self.cpus_per_step}

    def parallelism(self) -> int:
        ray = self._start()
        return max(1, int(ray.cluster_resources().get("CPU", 1) // self.cpus_per_step))

    def map(self, fn, jobs: list[tuple], bench: bool = False) -> list:
        ray = self._start()
        task = ray.remote(fn).options(**self._options(ray, bench), max_retries=1)
        refs = [task.remote(*job) for job in jobs]
        try:
            return ray.get(refs)
        except Exception as e:  # noqa: BLE001 - Ray wraps the task's own exception
            for r in refs:
                ray.cancel(r)
            raise _one_line(e, f"{getattr(fn, '__name__', 'a task')} failed on Ray") from None

    def run(self, runner) -> None:
        ray = self._start()
        task = ray.remote(_run_step)
        steps = list(enumerate(runner.recipe.steps, 1))
        done: set[str] = set()
        running: dict = {}
        failure: BaseException | None = None
        while steps or running:
            progressed = False
            for i, step in list(steps):
                if failure is not None or not all(r in done for r in step.reads()):
                    continue
                steps.remove((i, step))
                progressed = True
                digest = runner.needs_run(step, i)
                if digest is None:
                    done.add(step.id)
                    continue
                opts = self._options(ray, step.kind == "bench")
                runner.log(f"[{i}/{len(runner.recipe.steps)}] {step.id} ({step.kind}): submitted to Ray")
                ref = task.options(**opts, max_retries=1).remote(type(runner), str(runner.recipe.path.resolve()), str(runner.out.resolve()),
                                                                 step.id, digest, i, runner.state, False)
                running[ref] = step
            if not running:
                if failure is not None:
                    break
                if not progressed:
                    raise OptionError(f"steps {', '.join(s.id for _, s in steps)} wait for steps that never ran")
                continue
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                step = running.pop(ref)
                try:
                    entry = ray.get(ref)
                except Exception as e:  # noqa: BLE001 - Ray wraps the step's own exception
                    failure = failure or _one_line(e, f"step {step.id} failed on Ray")
                    continue                       # finished steps of other tasks are still recorded below
                runner.record(step.id, entry)
                runner.log(f"    {step.id}: done on {entry.get('node')} in {entry.get('seconds')} s")
                done.add(step.id)
            if failure is not None and not running:
                break
        if failure is not None:
            raise failure


def _one_line(e: BaseException, what: str) -> EdgepackError:
    """The task's own EdgepackError (its one line), or `what` with the first line of whatever else it raised."""
    cause = getattr(e, "cause", None) or e
    if isinstance(cause, EdgepackError):
        return cause
    return EdgepackError(f"{what}: {(str(cause).splitlines() or [type(cause).__name__])[0]}")


def get_executor(name: str, address: str | None = None, cpus_per_step: int = 1) -> Executor:
    if name not in EXECUTORS:
        raise OptionError(f"unknown executor {name!r}; expected one of {', '.join(EXECUTORS)}")
    if address and name != "ray":
        raise OptionError("--ray-address needs --executor ray")
    if cpus_per_step < 1:
        raise OptionError(f"--cpus-per-step must be >= 1, got {cpus_per_step}")
    return RayExecutor(address, cpus_per_step) if name == "ray" else SequentialExecutor()

"""The samplers of the mixed-precision search: which layers to keep float, in which format and runtime, next.

`exhaustive` (every combination, fewest float layers first), `tpe` (Optuna's TPE; the `search` extra), `auto`
(exhaustive when the space fits the trial budget, else tpe). Entry point: `make_sampler`."""
from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass

from edgepack.toolkit.errors import OptionError

SAMPLERS = ("exhaustive", "tpe", "auto")
STARTUP = 8                 # TPE's random trials before it models; patience counts only after twice that many


@dataclass(frozen=True)
class Config:
    fmt: str
    float_layers: tuple[str, ...] = ()
    runtime: str = ""                    # "" : the format's default runtime

    def describe(self) -> str:
        where = f" in {self.runtime}" if self.runtime else ""
        return f"{self.fmt}{where} " + (f"({', '.join(self.float_layers)} float)" if self.float_layers else "(full int8)")


def space_size(space: dict[str, list[str]], runtimes: dict[str, list[str]] | None = None) -> int:
    """Combinations to try: every subset of each format's layers except all of them (that is the fp32 file), in each
    runtime of the format."""
    return sum((2 ** len(layers) - 1) * len((runtimes or {}).get(f) or [""]) for f, layers in space.items())


class Sampler:
    name = ""

    def ask(self) -> tuple[Config, object] | None:
        """The next configuration and a handle for tell(); None when the space is exhausted."""
        raise NotImplementedError

    def tell(self, handle, score: float) -> None:
        pass


class ExhaustiveSampler(Sampler):
    name = "exhaustive"

    def __init__(self, space: dict[str, list[str]], seed: int = 0, runtimes: dict[str, list[str]] | None = None):
        def gen():
            for k in range(max((len(v) for v in space.values()), default=0)):   # fewest float layers first
                for fmt, layers in space.items():
                    if k < len(layers):
                        for combo in itertools.combinations(layers, k):
                            for rt in (runtimes or {}).get(fmt) or [""]:
                                yield Config(fmt, combo, rt)
        self._it = gen()

    def ask(self):
        c = next(self._it, None)
        return None if c is None else (c, None)


class TPESampler(Sampler):
    """Optuna's TPE through its ask-and-tell interface: a format, its runtime, then int8/float per layer."""
    name = "tpe"

    def __init__(self, space: dict[str, list[str]], seed: int = 0, runtimes: dict[str, list[str]] | None = None,
                 startup: int = STARTUP):
        try:
            import optuna
        except ImportError:
            raise OptionError("--mixed-search tpe needs Optuna: pip install 'edgepack[search]' (or use "
                              "--mixed-search exhaustive)") from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():      # multivariate/group are marked experimental: said once here, not per run
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True, group=True)
        self.study = optuna.create_study(direction="minimize", sampler=sampler)
        self.space, self._optuna = space, optuna
        self.runtimes = {f: (runtimes or {}).get(f) or [""] for f in space}
        for fmt in space:                                 # full int8 of each (format, runtime) first: the anchors
            for rt in self.runtimes[fmt]:
                self.study.enqueue_trial({"format": fmt, f"runtime:{fmt}": rt,
                                          **{f"{fmt}:{layer}": "int8" for layer in space[fmt]}})

    def ask(self):
        t = self.study.ask()
        fmt = t.suggest_categorical("format", list(self.space))
        rt = t.suggest_categorical(f"runtime:{fmt}", self.runtimes[fmt])
        layers = tuple(layer for layer in self.space[fmt] if t.suggest_categorical(f"{fmt}:{layer}", ["int8", "float"]) == "float")
        return Config(fmt, layers, rt), t

    def tell(self, handle, score: float) -> None:
        if math.isfinite(score):
            self.study.tell(handle, score)
        else:
            self.study.tell(handle, state=self._optuna.trial.TrialState.FAIL)


def make_sampler(name: str, space: dict[str, list[str]], trials: int, seed: int = 0,
                 runtimes: dict[str, list[str]] | None = None) -> Sampler:
    if name not in SAMPLERS:
        raise OptionError(f"unknown --mixed-search {name!r}; expected attribution or one of {', '.join(SAMPLERS)}")
    if name == "auto":
        name = "exhaustive" if space_size(space, runtimes) <= trials else "tpe"
    return (ExhaustiveSampler if name == "exhaustive" else TPESampler)(space, seed, runtimes)

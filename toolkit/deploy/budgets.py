"""The user's budgets for `edgepack deploy`, `deploy --select` and `report merge`, declared once.

Each budget is one `Budget` in `BUDGETS`: its flag and help (the CLI's arguments come from them), its unit's parser
(a value in the wrong unit is an error that says which unit was expected, never a silent misreading), the measured
figure it limits and how: an upper bound (size, arena, latency) or a floor (accuracy). `violations()` judges a
measured file against all of them, for the pick and for the search alike; `excess()` is how far outside they are
(the search's score). Adding a budget: one `Budget` here, and the measurement that fills its figure.

The export option `ExportOptions.verify_max_drop` is something else: the tolerance an int8 file's verification
allows against its source, not a budget of the file you ship."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from edgepack.toolkit.errors import OptionError

_NUM = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "k": 1000, "kib": 1024, "mb": 1000 ** 2, "mib": 1024 ** 2}
TIME_UNITS = {"": 1.0, "ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3}
PREFER = ("latency", "size")


def _split(flag: str, text, units: dict, expected: str) -> float:
    m = re.fullmatch(_NUM + r"\s*([a-zA-Zµ%]*)", str(text).strip())
    if not m or m.group(2).lower() not in units:
        raise OptionError(f"{flag} expects {expected}, got {text!r}")
    return float(m.group(1)) * units[m.group(2).lower()]


def parse_size(text, flag: str = "--max-size") -> int:
    return int(_split(flag, text, SIZE_UNITS, "a file size: bytes, or with a unit B, KB, KiB, MB, MiB (e.g. 120KB)"))


def parse_latency(text, flag: str = "--max-latency") -> float:
    """Milliseconds; 'us' and 's' are converted."""
    return _split(flag, text, TIME_UNITS, "a time in ms (e.g. 0.5 or 0.5ms; 200us and 1s also work)")


def parse_drop(text, flag: str = "--max-accuracy-drop") -> float:
    if str(text).strip().endswith("%"):
        raise OptionError(f"{flag} is in percentage points of accuracy (e.g. 0.5 or 0.5pp); {text!r} could be read as "
                          "a relative drop: write pp")
    v = _split(flag, text, {"": 1.0, "pp": 1.0}, "percentage points (e.g. 0.5 or 0.5pp)")
    if not 0 <= v <= 100:
        raise OptionError(f"{flag} must be between 0 and 100 percentage points, got {text!r}")
    return v


def parse_accuracy(text, flag: str = "--min-accuracy") -> float:
    """Percent. A value <= 1 without a % sign reads like a fraction: refused, since 0.85% is no one's floor."""
    s = str(text).strip()
    v = _split(flag, s, {"": 1.0, "%": 1.0}, "an accuracy in percent (e.g. 98.5 or 98.5%)")
    if v <= 1.0 and not s.endswith("%"):
        raise OptionError(f"{flag} is in percent (e.g. 98.5); {text!r} looks like a fraction: write {v * 100:g}")
    if not 0 < v <= 100:
        raise OptionError(f"{flag} must be in (0, 100] percent, got {text!r}")
    return v


DEFAULT_MAX_ACCURACY_DROP = 1.0     # pp: the search's accuracy constraint when the user gave no accuracy budget


def _size_text(v) -> str:
    return f"{v:,} B"


@dataclass(frozen=True)
class Budget:
    """One budget, declared once."""
    name: str                     # attribute of Budgets, key in deploy.json
    flag: str                     # command-line flag (the argparse dest follows from it)
    help: str
    parse: Callable[[Any, str], Any]   # (text, flag) -> value in the budget's unit
    figure: str                   # the measured figure it limits: an attribute of the row (size, arena, p50_ms, accuracy)
    upper: bool                   # True: figure <= bound; False: figure >= bound (a floor)
    words: str                    # how describe() and a rejection name it ("size", "p50", ...)
    unit: Callable[[Any], str]    # a value in words with its unit
    relative: bool = False        # True: the bound is the reference's figure minus the value (a drop)
    over: str = ""                # a rejection's words for a file over an upper bound (default: "<words> too large")

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    def bound(self, value, reference):
        if self.relative:
            return None if reference is None else reference - value
        return value


BUDGETS = (
    Budget("max_size", "--max-size", "largest file: bytes or with a unit (120KB, 1.5MB)", parse_size,
           "size", True, "size", _size_text, over="too large"),
    Budget("max_latency_ms", "--max-latency", "largest p50: ms (0.5, 0.5ms; 200us works)", parse_latency,
           "p50_ms", True, "p50", lambda v: f"{v:g} ms", over="too slow"),
    Budget("max_arena", "--max-arena", "largest tensor arena (a microcontroller's RAM for the file's tensors), as "
           "TFLite Micro measures it: bytes or with a unit (64KiB); needs --runtime tflite-micro",
           parse_size, "arena", True, "tensor arena", _size_text),
    Budget("max_accuracy_drop", "--max-accuracy-drop", "percentage points below the fp32 file (e.g. 0.5); for "
           "another task, points of its figure x 100 (anomaly: 0.5 = 0.005 ROC AUC)", parse_drop,
           "accuracy", False, "accuracy", lambda v: f"{v:g} pp", relative=True),
    Budget("min_accuracy", "--min-accuracy", "accuracy floor in percent (e.g. 98.5); for another task, its figure "
           "x 100 (anomaly: 99 = ROC AUC 0.99)", parse_accuracy, "accuracy", False, "accuracy", lambda v: f"{v:g}%"),
)
BY_NAME = {b.name: b for b in BUDGETS}


class Budgets:
    """The budgets a user gave (None: not given) and the preference among files within all of them."""

    def __init__(self, prefer: str = "latency", **values):
        unknown = sorted(set(values) - set(BY_NAME))
        if unknown:
            raise OptionError(f"unknown budget(s) {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
        self.values = {name: values.get(name) for name in BY_NAME}
        self.prefer = prefer
        if self.max_accuracy_drop is not None and self.min_accuracy is not None:
            raise OptionError("give --max-accuracy-drop or --min-accuracy, not both")
        if self.prefer not in PREFER:
            raise OptionError(f"--prefer expects one of {', '.join(PREFER)}, got {self.prefer!r}")

    def __getattr__(self, name):
        values = self.__dict__.get("values", {})
        if name in values:
            return values[name]
        raise AttributeError(name)

    def __repr__(self) -> str:
        given = ", ".join(f"{k}={v!r}" for k, v in self.values.items() if v is not None)
        return f"Budgets({given}{', ' if given else ''}prefer={self.prefer!r})"

    def to_dict(self) -> dict:
        """As deploy.json and fleet.json write them: every budget by name (None: not given), and the preference."""
        return {**self.values, "prefer": self.prefer}

    def given(self) -> list[tuple[Budget, Any]]:
        return [(BY_NAME[n], v) for n, v in self.values.items() if v is not None]

    @classmethod
    def from_args(cls, args) -> "Budgets":
        return cls(prefer=args.prefer, **{b.name: b.parse(getattr(args, b.dest), b.flag) for b in BUDGETS
                                          if getattr(args, b.dest, None) is not None})

    def for_search(self) -> "Budgets":
        """What the mixed-precision search judges its trials by: the same budgets, accuracy as a drop from the
        source's accuracy on the search's own images (a --min-accuracy floor is for the test set: the search keeps
        the default drop instead); the tensor arena is judged on the candidates, not on the trials."""
        values = {**self.values, "min_accuracy": None, "max_arena": None}     # trials' arenas are not measured
        if values["max_accuracy_drop"] is None:
            values["max_accuracy_drop"] = DEFAULT_MAX_ACCURACY_DROP
        return Budgets(prefer=self.prefer, **values)

    def describe(self, metric: str | None = "accuracy") -> str:
        """The budgets in words; `metric`: the task's figure the accuracy budgets apply to (ROC AUC: in points x 100)."""
        plain = metric in (None, "accuracy")
        parts = []
        for b, v in self.given():
            if b.figure != "accuracy":
                parts.append(f"{b.words} <= {b.unit(v)}")
            elif b.relative:
                parts.append(f"accuracy >= fp32 - {v:g} pp" if plain else f"{metric} >= fp32 - {v / 100:g}")
            else:
                parts.append(f"accuracy >= {v:g}%" if plain else f"{metric} >= {v / 100:g}")
        return ", ".join(parts) or "none"


def add_budget_args(p) -> None:
    """The budgets' command-line flags, from the declarations."""
    for b in BUDGETS:
        p.add_argument(b.flag, default=None, help=b.help)
    p.add_argument("--prefer", default="latency", help="among files within every budget: latency (fastest) or size (smallest)")


def _figure_text(b: Budget, v, metric) -> str:
    if b.figure == "accuracy":
        return f"{v:.2f}%" if metric in (None, "accuracy") else f"{v / 100:.4f}"
    if b.figure == "p50_ms":
        return f"{v:.3f}"
    return f"{v:,}"


def violations(m, budgets: Budgets, reference: float | None) -> list[str]:
    """Why a measured file `m` (anything with the budgets' figures as attributes: a deploy row, a search trial seen
    as one) is outside the budgets; empty: inside every one. `reference`: the figure accuracy drops are measured from.
    A file over the size budget was not benchmarked, so its other figures are not asked for."""
    out = []
    too_large = budgets.max_size is not None and getattr(m, "size", None) is not None and m.size > budgets.max_size
    metric = getattr(m, "metric", "accuracy")
    for b, value in budgets.given():
        bound = b.bound(value, reference)
        if bound is None or (too_large and b.name != "max_size"):
            continue
        v = getattr(m, b.figure, None)
        if v is None:
            if b.figure == "arena":
                from edgepack.runtimes import arena_runtimes
                out.append(f"tensor arena not measured in {getattr(m, 'runtime', '?')} "
                           f"(measured in: {', '.join(arena_runtimes())})")
            elif b.figure == "accuracy":
                out.append("accuracy not measured")
            continue
        if b.upper and v > bound:
            out.append(f"{b.over or b.words + ' too large'} ({_figure_text(b, v, metric)} > {b.unit(bound)})")
        elif not b.upper and v < bound - 1e-9:
            name = "accuracy" if metric in (None, "accuracy") else metric
            out.append(f"below the {name} floor ({_figure_text(b, v, metric)} < {_figure_text(b, bound, metric)})")
    return out


def excess(m, budgets: Budgets, reference: float | None) -> float:
    """How far outside the budgets `m` is, summed over them, each relative to its bound (0: inside every one); the
    search scales its objective by it so the sampler still learns which way is better. A missing figure: infinite."""
    total = 0.0
    for b, value in budgets.given():
        bound = b.bound(value, reference)
        if bound is None:
            continue
        v = getattr(m, b.figure, None)
        if v is None:
            return math.inf
        gap = (v - bound) if b.upper else (bound - v)
        scale = max(value, 0.1) if b.relative else max(abs(bound), 1e-12)
        total += max(0.0, gap) / scale
    return total

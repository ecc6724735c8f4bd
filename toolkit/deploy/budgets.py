"""The user's budgets for `edgepack deploy`, parsed with their units (a value in the wrong unit is an error that
says which unit was expected, never a silent misreading)."""
from __future__ import annotations

import re
from dataclasses import dataclass

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


@dataclass
class Budgets:
    max_size: int | None = None              # bytes of the file as shipped
    max_arena: int | None = None             # bytes of tensor arena, as the runtime measured it (TFLite Micro)
    max_latency_ms: float | None = None      # p50 at the first thread count
    max_accuracy_drop: float | None = None   # percentage points below the fp32 reference
    min_accuracy: float | None = None        # percent
    prefer: str = "latency"                  # among files within every budget: fastest, or smallest

    def __post_init__(self):
        if self.max_accuracy_drop is not None and self.min_accuracy is not None:
            raise OptionError("give --max-accuracy-drop or --min-accuracy, not both")
        if self.prefer not in PREFER:
            raise OptionError(f"--prefer expects one of {', '.join(PREFER)}, got {self.prefer!r}")

    @classmethod
    def from_args(cls, args) -> "Budgets":
        return cls(max_size=None if args.max_size is None else parse_size(args.max_size),
                   max_arena=None if getattr(args, "max_arena", None) is None else parse_size(args.max_arena, "--max-arena"),
                   max_latency_ms=None if args.max_latency is None else parse_latency(args.max_latency),
                   max_accuracy_drop=None if args.max_accuracy_drop is None else parse_drop(args.max_accuracy_drop),
                   min_accuracy=None if args.min_accuracy is None else parse_accuracy(args.min_accuracy),
                   prefer=args.prefer)

    def describe(self, metric: str | None = "accuracy") -> str:
        """The budgets in words; `metric`: the task's figure the accuracy budgets apply to (ROC AUC: in points x 100)."""
        parts = []
        if self.max_size is not None:
            parts.append(f"size <= {self.max_size:,} B")
        if self.max_arena is not None:
            parts.append(f"tensor arena <= {self.max_arena:,} B")
        if self.max_latency_ms is not None:
            parts.append(f"p50 <= {self.max_latency_ms:g} ms")
        plain = metric in (None, "accuracy")
        if self.max_accuracy_drop is not None:
            parts.append(f"accuracy >= fp32 - {self.max_accuracy_drop:g} pp" if plain else
                         f"{metric} >= fp32 - {self.max_accuracy_drop / 100:g}")
        if self.min_accuracy is not None:
            parts.append(f"accuracy >= {self.min_accuracy:g}%" if plain else f"{metric} >= {self.min_accuracy / 100:g}")
        return ", ".join(parts) or "none"

"""Sparsity schedules as small validated objects (after TFMOT's pruning_schedule): called with the
training step, they say whether to update masks and to which sparsity; `get_config` round-trips."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from edgepack.toolkit.errors import OptionError


def _check_sparsity(name, v):
    if not 0.0 <= v < 1.0:
        raise OptionError(f"{name} must be in [0, 1), got {v}")


@dataclass(frozen=True)
class ConstantSparsity:
    target_sparsity: float
    begin_step: int = 0
    frequency: int = 100

    def __post_init__(self):
        _check_sparsity("target_sparsity", self.target_sparsity)
        if self.begin_step < 0 or self.frequency < 1:
            raise OptionError("begin_step must be >= 0 and frequency >= 1")

    def __call__(self, step: int) -> tuple[bool, float]:
        return step >= self.begin_step and (step - self.begin_step) % self.frequency == 0, self.target_sparsity

    def get_config(self) -> dict:
        return {"class": type(self).__name__, **asdict(self)}


@dataclass(frozen=True)
class PolynomialDecay:
    initial_sparsity: float
    final_sparsity: float
    begin_step: int
    end_step: int
    power: float = 3.0
    frequency: int = 100

    def __post_init__(self):
        _check_sparsity("initial_sparsity", self.initial_sparsity)
        _check_sparsity("final_sparsity", self.final_sparsity)
        if self.end_step <= self.begin_step or self.frequency < 1:
            raise OptionError("end_step must be > begin_step and frequency >= 1")

    def sparsity(self, step: int) -> float:
        t = min(max((step - self.begin_step) / (self.end_step - self.begin_step), 0.0), 1.0)
        return self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * (1 - t) ** self.power

    def __call__(self, step: int) -> tuple[bool, float]:
        due = self.begin_step <= step <= self.end_step and ((step - self.begin_step) % self.frequency == 0 or step == self.end_step)
        return due, self.sparsity(step)

    def get_config(self) -> dict:
        return {"class": type(self).__name__, **asdict(self)}


def schedule_from_config(cfg: dict):
    cfg = dict(cfg)
    cls = {"ConstantSparsity": ConstantSparsity, "PolynomialDecay": PolynomialDecay}.get(cfg.pop("class", None))
    if cls is None:
        raise OptionError("schedule class must be ConstantSparsity or PolynomialDecay")
    return cls(**cfg)

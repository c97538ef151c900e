"""Early stopping, chosen by name (`EARLY_STOPPING`): Optuna's pruners do not work in multi-objective
studies, so the study stops trials on its own rungs.

`ParetoRungs`: at fixed fractions of a trial's planned schedule (its "rungs") the trial's validation
score is stored; a trial stops when at least `dominators` other trials that are no larger (parameters)
already scored higher at the same rung by more than `margin`. Comparing at the same fraction of each
trial's own schedule keeps cosine schedules of different lengths comparable, and comparing only with
no-larger trials keeps small models (the cheap end of the Pareto front) from being judged against big
ones. A stopped trial ends PRUNED with its partial curve kept.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

from search.study.record import TrialRecord


class EarlyStopping(Protocol):
    """When a trial is compared with its peers, and whether it stops there."""

    def rung_epochs(self, planned_epochs: int) -> list[int]:
        """Epochs (1-based) after which a trial planned for `planned_epochs` is compared; rung i is the i-th."""

    def should_stop(self, rung: int, score: float, params: int, peers: Sequence[TrialRecord]) -> bool:
        """True when a trial of `params` parameters scoring `score` at `rung` should stop."""


@dataclass(frozen=True)
class ParetoRungs:
    """Stop a trial beaten at its rung by at least `dominators` no-larger peers, each by more than `margin`."""

    fractions: tuple[float, ...] = (0.25, 0.5)
    dominators: int = 3
    margin: float = 0.01

    def rung_epochs(self, planned_epochs: int) -> list[int]:
        rungs = sorted({max(1, round(f * planned_epochs)) for f in self.fractions})
        return [r for r in rungs if r < planned_epochs]

    def should_stop(self, rung: int, score: float, params: int, peers: Sequence[TrialRecord]) -> bool:
        better = sum(1 for p in peers if rung in p.rungs and p.params is not None and p.params <= params
                     and p.rungs[rung] > score + self.margin)
        return better >= self.dominators


class NoEarlyStopping:
    """Every trial runs its whole schedule."""

    def rung_epochs(self, planned_epochs: int) -> list[int]:
        return []

    def should_stop(self, rung: int, score: float, params: int, peers: Sequence[TrialRecord]) -> bool:
        return False


def early_stopping(name: str, fractions: Sequence[float], dominators: int, margin: float) -> EarlyStopping:
    """The early-stopping rule called `name` (a key of `EARLY_STOPPING`) with these settings."""
    return ParetoRungs(tuple(fractions), dominators, margin) if name == "rungs" else NoEarlyStopping()


EARLY_STOPPING = ("rungs", "none")
"""The names `early_stopping` knows."""

"""`TrialRecord`: what a trial stores, read and written by name instead of by `user_attrs` strings.

The storage keys are the field names (`rungs` is stored as `rung0`, `rung1`, ...), unchanged from the
studies made before this record existed, so old studies read as they are.
"""
from __future__ import annotations

import json
import re
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.train.recipe import Recipe
from search.train.recipe import TrainConfig
from space import ArchSpec

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
"""States of a trial that ran to its end: complete, or stopped (early, over the caps, diverged, duplicate)."""
_RUNG = re.compile(r"rung(\d+)")
_FROM_TRIAL = ("number", "state", "values")


@dataclass
class TrialRecord:
    number: int
    state: TrialState
    values: list[float] | None = None
    worker: str | None = None
    """`host:pid` of the process that ran the trial (recorded first, so a dead worker's trial is known)."""
    recipe: dict | None = None
    """`Recipe.to_dict()` of what the trial trains (its planned epochs and pretraining epochs included):
    the one record of it. Studies stored before it existed kept `spec` and `train_config`, read into it."""
    summary: str | None = None
    params: int | None = None
    """Parameter count of the model (not Optuna's sampled parameters)."""
    flops: int | None = None
    epochs_planned: int | None = None
    t4_s_planned: float | None = None
    val_fingerprint: str | None = None
    duplicate_of: int | None = None
    """Proposed the same architecture and recipe as that trial, so it was not trained (and does not count)."""
    curve: list[float] = field(default_factory=list)
    """The profile's validation score after each epoch."""
    rungs: dict[int, float] = field(default_factory=dict)
    """Validation score at each early-stopping rung reached."""
    metrics: dict[str, float] | None = None
    target_metrics: dict[str, dict[str, float]] | None = None
    epochs_run: int | None = None
    wall_s: float | None = None
    t4_s: float | None = None
    stopped_early: bool | None = None
    test_metrics: dict[str, dict[str, float]] | None = None
    test_score: float | None = None
    checkpoint: str | None = None
    """Path of the trial's checkpoint, relative to the run directory."""
    bytes: int | None = None
    over_cap: str | None = None
    over_budget: str | None = None
    """Why the proposal was not trained: not even its narrowest version trains `min_epochs` in the budget."""
    shrunk: str | None = None
    """How the proposal's widths were shrunk so that `min_epochs` epochs fit its budget."""
    time_limit: bool | None = None
    """Stopped by the study's time limit: it does not count, and a resume queues it again (`rerun_of`)."""
    rerun_of: int | None = None
    """The trial the time limit cut that this one runs again, with the same sampled parameters."""
    known_recipe: str | None = None
    """The name of the known recipe (`search.study.known`) this trial was enqueued as."""
    diverged: str | None = None

    @classmethod
    def from_trial(cls, trial: FrozenTrial) -> TrialRecord:
        attrs = trial.user_attrs
        stored = {f.name: attrs[f.name] for f in fields(cls) if f.name in attrs and f.name not in _FROM_TRIAL}
        rungs = {int(m.group(1)): v for k, v in attrs.items() if (m := _RUNG.fullmatch(k))}
        if "recipe" not in stored and "spec" in attrs and "train_config" in attrs:  # stored before `recipe`
            stored["recipe"] = Recipe(ArchSpec.from_dict(attrs["spec"]),
                                      TrainConfig.from_dict(attrs["train_config"])).to_dict()
        return cls(number=trial.number, state=trial.state, values=None if trial.values is None else list(trial.values),
                   **stored, rungs=rungs)

    def to_attrs(self) -> dict[str, Any]:
        """The user attributes this record stores (fields left at their defaults are left out)."""
        return _attrs({k: getattr(self, k) for k, empty in _DEFAULTS.items() if getattr(self, k) != empty})

    @staticmethod
    def store(trial: optuna.Trial, **values: Any) -> None:
        """Write the named fields to a running trial, as they become known."""
        for key, value in _attrs(values).items():
            trial.set_user_attr(key, value)

    def trained(self) -> Recipe:
        """What the trial trains, as a `Recipe` (a new object each call: the caller may change it)."""
        if self.recipe is None:
            raise ValueError(f"trial {self.number} has no recipe: it was never trained ({self.state.name})")
        return Recipe.from_dict(self.recipe)

    @property
    def spec(self) -> dict | None:
        """The architecture spec (`ArchSpec.to_dict()`) the trial trains, if it got as far as planning."""
        return None if self.recipe is None else self.recipe["spec"]

    @property
    def recipe_key(self) -> str | None:
        """Equal for trials that train the same architecture the same way (the per-trial seed aside)."""
        if self.recipe is None:
            return None
        train = {k: v for k, v in self.recipe["train"].items() if k != "seed"}
        return json.dumps({"spec": self.recipe["spec"], "train": train}, sort_keys=True)

    @property
    def trained_at_all(self) -> bool:
        """False for a proposal that was never trained: over the caps or the budget, or a duplicate."""
        return self.duplicate_of is None and self.over_cap is None and self.over_budget is None

    @property
    def counts(self) -> bool:
        """Whether the trial counts towards the study's target: finished, and trained to its end or its
        early-stopping rung (not cut by the time limit)."""
        return self.state in FINISHED and self.trained_at_all and not self.time_limit


_DEFAULTS = {f.name: f.default if f.default is not MISSING else f.default_factory()
             for f in fields(TrialRecord) if f.name not in _FROM_TRIAL}


def _attrs(values: dict[str, Any]) -> dict[str, Any]:
    """User attributes of the named fields (`rungs` as `rung0`, `rung1`, ...)."""
    unknown = sorted(set(values) - set(_DEFAULTS))
    if unknown:
        raise TypeError(f"not stored fields of a trial record: {', '.join(unknown)}")
    attrs = {k: v for k, v in values.items() if k != "rungs"}
    attrs.update({f"rung{rung}": score for rung, score in values.get("rungs", {}).items()})
    return attrs


def tally(records: list[TrialRecord]) -> dict[str, int]:
    """How a study's proposals ended: complete, stopped (early at a rung, or by the time limit), and not
    trained by reason (a repeat of a trained trial, over the caps, over the budget); and how many were
    shrunk to fit the budget. What the command line, the report and the paper say about a search."""
    return {
        "complete": sum(r.state == TrialState.COMPLETE for r in records),
        "stopped": sum(r.state == TrialState.PRUNED and r.trained_at_all for r in records),
        "duplicate": sum(r.duplicate_of is not None for r in records),
        "over the caps": sum(r.over_cap is not None for r in records),
        "over the budget": sum(r.over_budget is not None for r in records),
        "shrunk to fit the budget": sum(r.shrunk is not None for r in records),
    }


UNTRAINED = ("duplicate", "over the caps", "over the budget")
"""The `tally` keys of proposals that were never trained."""


def untrained_text(counts: dict[str, int]) -> str:
    """E.g. "2 duplicate, 1 over the budget" (the untrained proposals of a `tally`), or "none"."""
    return ", ".join(f"{counts[k]} {k}" for k in UNTRAINED if counts[k]) or "none"

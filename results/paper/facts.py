"""The facts a paper states, read from the study: the exported model and the trial counts (its per-part
costs are `space.count.part_costs`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import TrialState

from results.candidates import candidate_recipe
from results.export import EXPORT_JSON, read_export
from search.study import TrialRecord
from search.study.front import pareto_front
from search.train.recipe import Recipe


@dataclass(frozen=True)
class Exported:
    """The model the paper describes: the candidate export takes and the recipe that trains it."""

    trial: int
    """The trial whose architecture it is (a scratch variant's parent trial)."""
    recipe: Recipe
    retrained: bool
    """True: the recipe export retrained (from `export/export.json`); False: the candidate's search recipe."""
    teacher_trial: int | None = None
    """The trial whose architecture taught the exported model (export's `--teacher`), if any."""
    candidate: str = ""
    """The ranking's id of the candidate ("trial 3" or a variant id)."""
    export: dict | None = None
    """`export/export.json` as written by the export (final retrain: images, epochs, times), if any."""


def exported_model(study: optuna.Study, run_dir: Path, ranked: pd.DataFrame,
                   variants: pd.DataFrame | None = None) -> Exported:
    """The candidate in `run_dir/export/export.json` with its recipe, else the one `ranked` (the ranking of
    `results.candidates.ranked_candidates`, what `run_search.py export` takes from) marks for export."""
    path, data = Path(run_dir) / EXPORT_JSON, read_export(run_dir)
    if data is not None:
        if data.get("study", study.study_name) != study.study_name:
            raise ValueError(f"{path} exports study {data['study']!r}, not {study.study_name!r}")
        if "recipe" not in data:
            raise ValueError(f"{path} holds no recipe: rerun `run_search.py export`")
        number = data.get("trial")
        if not (isinstance(number, int) and 0 <= number < len(study.trials)
                and study.trials[number].state == TrialState.COMPLETE):
            raise ValueError(f"{path} names trial {number!r}, not a completed trial of study {study.study_name!r}")
        teacher = (data.get("teacher") or {}).get("trial")
        return Exported(number, Recipe.from_dict(data["recipe"]), True, teacher,
                        data.get("candidate", f"trial {number}"), data)
    chosen = ranked[ranked["export"]]
    if chosen.empty:
        raise ValueError(f"study {study.study_name!r} has no exportable candidate within the caps to describe")
    row = chosen.iloc[0]
    return Exported(int(row["trial"]), candidate_recipe(row, study, variants), False, candidate=str(row["id"]))


def exported_row(ranked: pd.DataFrame, exp: Exported) -> pd.Series:
    """The ranking's row of the exported candidate (its validation and confirmed scores)."""
    found = ranked[ranked["id"] == exp.candidate]
    if found.empty:
        raise ValueError(f"the exported candidate {exp.candidate!r} is not in the ranking (over the caps?)")
    return found.iloc[0]


def front_trials(frame: pd.DataFrame) -> pd.DataFrame:
    """The Pareto-optimal trials (score against parameters among the trials alone), sorted by parameters:
    the one source of every "Pareto-optimal trials" the paper states, counts and draws."""
    return pareto_front(frame[frame["kind"] == "trial"])


def trial_counts(study: optuna.Study) -> dict[str, int]:
    """Trials by outcome: completed, stopped early, other pruned (over the caps, diverged, duplicates), failed."""
    counts = dict.fromkeys(("completed", "stopped early", "other pruned", "failed"), 0)
    for r in map(TrialRecord.from_trial, study.get_trials(deepcopy=False)):
        if r.state == TrialState.COMPLETE:
            counts["completed"] += 1
        elif r.state == TrialState.PRUNED:
            counts["stopped early" if r.stopped_early else "other pruned"] += 1
        elif r.state == TrialState.FAIL:
            counts["failed"] += 1
    return counts


def wall_hours(study: optuna.Study) -> float:
    """Hours from the first trial's start to the last trial's end (idle time between resumes included)."""
    trials = study.get_trials(deepcopy=False)
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    return (max(ends) - min(starts)).total_seconds() / 3600 if starts and ends else 0.0

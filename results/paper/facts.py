"""The facts a paper states, read from the study: the exported model, its per-part costs, the trial counts."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import TrialState

from results.candidates import candidate_recipe
from results.report import pareto_front
from search.train.recipe import Recipe
from search.study import TrialRecord
from space import ArchSpec, count_flops, count_params
from space.count import backbone_views
from space.layers import BLOCK_FAMILIES
from space.layers.conv import stem_flops, stem_out, stem_params
from space.spec import block_plan


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
    path = Path(run_dir) / "export" / "export.json"
    if path.exists():
        data = json.loads(path.read_text())
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


@dataclass(frozen=True)
class PartCost:
    """Exact parameters and FLOPs of one part of the model (stem, a stage, the head)."""

    name: str
    params: int
    flops: int


def part_costs(spec: ArchSpec) -> list[PartCost]:
    """Parameters and FLOPs (per scored image: every view the backbone runs on, `backbone_views`) of
    the stem, each stage and the head (pooling and regressor: the rest); they add up to
    `count_params` and `count_flops`."""
    views, mscn = backbone_views(spec), spec.input.mscn
    parts = [PartCost("stem", stem_params(spec.stem.kind, spec.stem.width, spec.stem.kernel, mscn),
                      sum(n * stem_flops(spec.stem.kind, spec.stem.width, spec.stem.kernel, size, mscn)
                          for size, n in views))]
    sides = [stem_out(spec.stem.kind, spec.stem.kernel, size) for size, _ in views]
    for i, blocks in enumerate(block_plan(spec), 1):
        params = flops = 0
        for b in blocks:
            _, params_fn, flops_fn = BLOCK_FAMILIES[b.block]
            params += params_fn(b.cin, b.cout, b.stride, b.kernel, b.hidden, b.se_hidden)
            for v, (_, n) in enumerate(views):
                f, sides[v] = flops_fn(b.cin, b.cout, b.stride, b.kernel, b.hidden, b.se_hidden, sides[v])
                flops += n * f
        parts.append(PartCost(f"stage {i}", params, flops))
    parts.append(PartCost("head", count_params(spec) - sum(p.params for p in parts),
                          count_flops(spec) - sum(p.flops for p in parts)))
    return parts


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

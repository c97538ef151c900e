"""Export: choose the candidate, retrain it from scratch on all labelled data, write the submission.

The candidate is what the report ranks first among the kinds a from-scratch notebook can reproduce
(search trials and "scratch" variants: a pruned architecture trained from scratch), or the one named.
Writes under `runs/NAME/export/`: `TEAM_DATE_model.pth` (DATE as YYYYMMDD, the challenge's
`TeamName_DATE_model.pth`), `TEAM_DATE.ipynb` (the self-contained notebook that reproduces the
retrain on Kaggle, timing itself against its deadline), `requirements.txt` and `HOW_TO_RUN.md` (what
shortlisted teams must send), and `export.json` (the choice, its recipe, estimates and retrain time).

The final retrain (`search.train.retrain`) follows a schedule chosen from the candidate's validation curve
(`results.schedule`): "fill" (train until the deadline) when the score was still rising at the end of
its trial, else twice the epoch where it stopped rising (twice the trial's epochs without a curve), or
what `--epochs` names; the T4 budget model turns it into epochs within the profile's export budget
(fewer, down to the trial's, where it must). With "fill" the retrain here also ends at the profile's
deadline (`Deadline`, refitting its epochs to this machine's pace as the notebook does), so an export on
a slow machine takes at most the notebook's time, not the T4 epochs at this machine's pace. They follow
the recipe's own self-supervised pretraining epochs (if any) and, with `--teacher TRIAL`, the training
of that trial's architecture as a distillation teacher (counted in the budget, not saved); a candidate or
teacher over the caps, or a retrain that would not fit at the trial's epochs, is refused. The notebook's
Settings say the schedule and why.

What differs between task kinds is the study's kind's (`StudyConfig.task`, `search.study.kinds`): a pairs
study retrains from all its preference pairs (`search.train.pairs.train_pairs`, no teacher) and writes a pairs
notebook, which trains from a CSV of pairs and writes the chosen image of every test pair.
"""
from __future__ import annotations

import datetime
import errno
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import optuna
import pandas as pd
from torch import nn

from results.candidates import candidate_recipe, export_choice, ranked_candidates
from results.notebook import write_notebook, write_run_files
from results.schedule import Schedule, candidate_schedule
from results.score import size_standing
from search.budget import BudgetModel
from search.checkpoint import save_checkpoint
from search.device import resolve_device
from search.files import atomic_write
from search.names import check_date, check_name
from search.profiles import Profile, get_profile
from search.train.recipe import Recipe
from results.submission import trained_line, trained_summary
from search.train.retrain import (
    FILL, FINALS, Deadline, RetrainPlan, StepCosts, check_final, duration, plan_retrain,
    planned, wanted_epochs,
)
from search.study import Kind, StudyConfig, StudyData, kind_named
from space import CapError, count_flops, count_params, spec_summary


@dataclass
class ExportOptions:
    """What export is asked to do: the `export` command's options (`run_search.py export --help`)."""

    team: str
    trial: int | None = None
    """The trial to export; None: the best exportable candidate of the ranking (or `variant`)."""
    variant: str | None = None
    """A compressed variant's id to export (its scratch variant); not with `trial`."""
    epochs: int | str | None = None
    """A number, or "fill"; None: the schedule the candidate's validation curve chooses."""
    date: str | None = None
    """YYYYMMDD of the file names; None: today."""
    smoke: bool = False
    """Tiny and quick: one epoch, one member, no clock, no progress (tests and the demo)."""
    teacher: int | None = None
    """A trial whose architecture is trained first, as a distillation teacher."""
    distill_weight: float = 1.0
    reference_sizes_m: Sequence[float] | None = None
    """Competitors' model sizes in millions of parameters (the size percentile); None: the profile's."""
    final: str | None = None
    """How the scored training ends (`search.train.retrain.FINALS`); None: the task kind's."""
    time_limit: Deadline | None = None
    """The retrain here ends by it (the notebook's schedule is unchanged)."""
    members: int | str = "auto"
    """Networks of the candidate trained and averaged (`choose_members`)."""


@dataclass
class ExportResult:
    candidate: str
    """"trial N" or a variant id."""
    weights: Path
    notebook: Path
    summary: dict
    model: nn.Module
    """The retrained model, as it was before being saved."""


def choose_candidate(study: optuna.Study, profile: Profile, variants: pd.DataFrame | None = None,
                     candidate: int | str | None = None,
                     reference_sizes_m: Sequence[float] | None = None) -> tuple[pd.Series | None, Recipe]:
    """(its ranked row, if ranked; the recipe to retrain) of `candidate` (a trial number or a variant
    id), or of the best exportable candidate by estimated composite score: trials and scratch variants
    ranked together (ties: RMSE, size), as the report ranks them."""
    ranked = ranked_candidates(study, profile, variants, reference_sizes_m)
    if candidate is None:
        row = export_choice(ranked)
        if row is None:
            raise ValueError(f"study {study.study_name!r} has no completed trial within the cap to export")
        return row, candidate_recipe(row, study, variants)
    recipe = candidate_recipe(candidate, study, variants)
    key = f"trial {candidate}" if isinstance(candidate, int) else candidate
    found = ranked[ranked["id"] == key]
    return (found.iloc[0] if len(found) else None), recipe


def export_recipe(study: optuna.Study, profile: Profile, variants: pd.DataFrame | None, candidate: int | str | None,
                  teacher: int | None, distill_weight: float,
                  reference_sizes_m: Sequence[float] | None = None) -> tuple[pd.Series | None, str, Recipe]:
    """The chosen candidate's ranked row, its id, and the recipe export retrains: its own, distilled from
    trial `teacher`'s architecture when given; refused (CapError) when either model is over the caps."""
    row, recipe = choose_candidate(study, profile, variants, candidate, reference_sizes_m)
    name = row["id"] if row is not None else (f"trial {candidate}" if isinstance(candidate, int) else candidate)
    if teacher is not None:
        recipe = recipe.with_teacher(candidate_recipe(teacher, study, variants), distill_weight)
    try:
        profile.caps.check(recipe.spec, name)
        if recipe.teacher is not None:
            profile.caps.check(recipe.teacher.spec, f"teacher trial {teacher}")
    except CapError as err:
        raise CapError(f"{err} of {profile.name}: refusing to export it") from None
    return row, name, recipe


def export_plan(recipe: Recipe, name: str, profile: Profile, budget: BudgetModel, n_images: int,
                schedule: Schedule, smoke: bool, kind: Kind | None = None, n_items: int | None = None) -> RetrainPlan:
    """The retrain's epochs by the T4 budget model: the `schedule`'s (for "fill", all that fit), fewer,
    down to `schedule.least`, where that would pass the profile's export budget. The test set is taken
    to be as large as the training set. An epoch is one pass over `n_items` items of the task `kind` (default:
    `n_images` MOS images; e.g. preference pairs, two images scored per pair)."""
    wanted, least = (1, 1) if smoke else (wanted_epochs(schedule.epochs), schedule.least)
    costs = (kind or kind_named("mos")).budget_costs(budget, recipe)
    try:
        return plan_retrain(recipe, n_images if n_items is None else n_items, n_images, costs, profile.export_budget_s,
                            wanted, least)
    except ValueError as err:
        raise ValueError(f"{name}: retraining is over the {profile.name} export budget: {err}") from None


AUTO_MEMBERS = 2
"""The most members `members="auto"` takes: the ensemble size measured (bench/NOTES.md, "The training that is
scored, at length": two members beat one at every length, most at the longest)."""


def choose_members(recipe: Recipe, name: str, profile: Profile, members: int | str,
                   plan_for: Callable[[Recipe], RetrainPlan], fill: bool,
                   reference_sizes_m: Sequence[float] | None = None) -> tuple[Recipe, str]:
    """(`recipe` as an ensemble of `members` networks, why that many). A number is taken as it is, refused
    (CapError) when all of them pass the parameter cap. "auto" takes the most, up to `AUTO_MEMBERS`, that earn
    the same size points as one network (so the composite estimate loses nothing, and the ranking that chose
    the candidate still holds), stay within the cap, and whose plan (`plan_for`) fits the export budget with the
    epochs one network would train (with "fill", `fill`, they share the deadline instead)."""
    def as_ensemble(n: int) -> Recipe:
        return replace(recipe, spec=replace(recipe.spec, members=n))

    one = count_params(recipe.spec)
    if members != "auto":
        ensemble = as_ensemble(int(members))
        try:
            profile.caps.check(ensemble.spec, f"{name} as an ensemble of {members}")
        except CapError as err:
            raise CapError(f"{err} of {profile.name}: refusing to export it") from None
        return ensemble, f"{members} member{'' if members == 1 else 's'}, as asked"
    points = lambda n: size_standing(n * one, profile, reference_sizes_m)[1]  # noqa: E731
    alone = plan_for(recipe).epochs
    for n in range(AUTO_MEMBERS, 1, -1):
        if n * one > profile.caps.params or points(n) < points(1) - 1e-9:
            continue
        try:
            fits = plan_for(as_ensemble(n)).epochs >= alone or fill
        except ValueError:
            fits = False
        if fits:
            return as_ensemble(n), (f"auto: {n} members ({n * one:,} parameters) earn the size points of one "
                                    f"({points(n):.1f}) and fit the T4 budget")
    return recipe, (f"auto: one network; {AUTO_MEMBERS} members would cost size points, pass the cap or not fit "
                    "the T4 budget with the same epochs")


def export_submission(study: optuna.Study, cfg: StudyConfig, run_dir: Path, options: ExportOptions,
                      variants: pd.DataFrame | None = None, log: Callable[[str], None] = print) -> ExportResult:
    """Retrain the chosen candidate from scratch on all labelled data and write the submission files, as
    `options` (`ExportOptions`) say. The candidate is `trial`, or compressed `variant` (its scratch variant:
    the pruned architecture trained from scratch), or by default the best exportable one of the study and
    its `variants`; for `epochs` (a number or "fill"), or by default the schedule its validation curve
    chooses; ending as the strategy `final` says (`search.train.retrain.FINALS`; default: the task kind's).
    With `teacher` (a trial number), that trial's architecture is first trained from scratch on the same
    data and the candidate learns from its scores as well (`distill_weight`); only the candidate is saved.
    Before training, `log` gets what will happen (the schedule on the T4, the pace measured here); with
    `time_limit`, the retrain here ends by it (the notebook's schedule is unchanged). `members` networks of the
    candidate are trained and averaged (`choose_members`: "auto" takes an ensemble where it costs no size points)."""
    o = options
    if o.trial is not None and o.variant is not None:
        raise ValueError("give a trial or a variant to export, not both")
    if o.teacher is not None:
        cfg.task.require("distillable", study.study_name)
    date = o.date or datetime.date.today().strftime("%Y%m%d")
    check_name(o.team, "team name"), check_date(date)
    profile = get_profile(cfg.profile)
    row, name, recipe = export_recipe(study, profile, variants, o.trial if o.variant is None else o.variant, o.teacher,
                                      o.distill_weight, o.reference_sizes_m)
    schedule = candidate_schedule(study, name, recipe, o.epochs)
    data = StudyData(cfg, progress=not o.smoke).all(recipe.spec.input.resize)
    task = cfg.task
    images = task.images(data)
    plan_for = partial(export_plan, name=name, profile=profile, budget=BudgetModel(efficiency=cfg.t4_efficiency),
                       n_images=len(images), schedule=schedule, smoke=o.smoke, kind=task, n_items=len(data))
    recipe, why_members = choose_members(recipe, name, profile, 1 if o.smoke else o.members, plan_for, schedule.fill,
                                         o.reference_sizes_m)
    plan = plan_for(recipe)
    note = schedule.describe(plan.epochs, plan.seconds)
    recipe = planned(recipe, plan)
    final = check_final(o.final or task.default_final)
    device = resolve_device(cfg.device)
    out = Path(run_dir) / "export"
    _check_writable(out)
    deadline = retrain_deadline(profile, schedule, o.smoke, o.time_limit)
    if not o.smoke:
        log(outlook(recipe, name, schedule, plan, final, task.measure(recipe, data, device), len(data), deadline))
    start = time.perf_counter()
    model, result = task.retrain(recipe, data, cfg.seed, device, deadline=deadline, progress=not o.smoke, final=final)
    retrain_s = time.perf_counter() - start
    trained = {**trained_summary(result), "line": trained_line(result, plan.epochs), "final": final,
               "time_limit_s": None if o.time_limit is None else o.time_limit.seconds}
    targets = task.target_names(data)
    weights, notebook = out / f"{o.team}_{date}_model.pth", out / f"{o.team}_{date}.ipynb"
    summary = {
        "study": study.study_name, "candidate": name, "kind": "trial" if row is None else row["kind"],
        "trial": None if row is None else int(row["trial"]), "summary": spec_summary(recipe.spec),
        "params": count_params(recipe.spec), "flops": count_flops(recipe.spec), "planned_epochs": plan.epochs,
        "members": {"count": recipe.spec.members, "why": why_members},
        "schedule": {"epochs": schedule.epochs, "reason": schedule.reason}, "trained": trained,
        **task.counts(data), "pretrain_epochs": plan.pretrain_epochs,
        "teacher": None if recipe.teacher is None else {"trial": o.teacher,
                                                        "params": count_params(recipe.teacher.spec)},
        "validation_score": None if row is None else float(row["score"]),
        "confirmed": None if row is None or not row.get("finalist", False) else {
            "mean": float(row["confirm_mean"]), "sd": float(row["confirm_sd"]), "runs": int(row["confirm_n"]),
            "protocol": row["confirm_protocol"]},
        "estimated_composite": None if row is None else float(row["composite"]) + _size_change(recipe.spec, profile,
                                                                                               o.reference_sizes_m),
        "estimated_t4_s": plan.seconds, "estimate_source": plan.costs.source, "measured_retrain_s": retrain_s,
        "device": str(device), "weights": weights.name, "notebook": notebook.name, "recipe": recipe.to_dict(),
    }

    def write(folder: Path) -> None:
        save_checkpoint(folder / weights.name, model.cpu(), recipe.spec, target_names=targets,
                        train_config=recipe.train.to_dict(), candidate=name)
        write_notebook(folder / notebook.name, o.team, date, recipe, targets, cfg.seed, profile.export_budget_s,
                       profile.caps.params, task=cfg.kind, epochs=FILL if schedule.fill else plan.epochs, why=note,
                       final=final, **task.notebook_values(cfg))
        write_run_files(folder, notebook.name, weights.name, plan, profile.export_budget_s, note,
                        cfg.kind, trained=f"{trained['line']}, in {duration(retrain_s)} on {device}")
        with atomic_write(folder / EXPORT_JSON.name) as tmp:
            tmp.write_text(json.dumps(summary, indent=2))

    write_all_or_none(out, write)
    return ExportResult(name, weights, notebook, summary, model)


def _size_change(spec, profile: Profile, reference_sizes_m: Sequence[float] | None) -> float:
    """Size points an ensemble `spec` earns more than one of its members (<= 0): what its composite estimate
    loses against the member's, which the ranking scored."""
    return (size_standing(count_params(spec), profile, reference_sizes_m)[1]
            - size_standing(count_params(spec.member()), profile, reference_sizes_m)[1])


EXPORT_JSON = Path("export") / "export.json"
"""Where in a run directory export records what it chose, planned and trained."""


def read_export(run_dir: Path) -> dict | None:
    """The run's `export.json` (the last export), or None when it has not exported; ValueError naming the file
    when it is not a JSON object."""
    path = Path(run_dir) / EXPORT_JSON
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}): rerun `run_search.py export`") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not an export record: rerun `run_search.py export`")
    return data


def export_line(export: dict) -> str:
    """The last export in one line: what it took, the notebook's schedule, and what its own retrain trained."""
    trained = (export.get("trained") or {}).get("line",
                                                f"{export.get('epochs', '?')} epochs planned (trained: not recorded)")
    schedule = (export.get("schedule") or {}).get("epochs", "?")
    return f"last export: {export.get('candidate', '?')}, notebook schedule {schedule}; its retrain here {trained}"


def retrain_deadline(profile: Profile, schedule: Schedule, smoke: bool, time_limit: Deadline | None) -> Deadline | None:
    """The clock of the retrain here: the notebook's deadline (the profile's export budget) for "fill", and
    the end of `time_limit` when that comes first; None when neither applies."""
    ends = [d for d in (None if smoke or not schedule.fill else Deadline(profile.export_budget_s), time_limit) if d]
    return min(ends, key=lambda d: d.left()) if ends else None


def outlook(recipe: Recipe, name: str, schedule: Schedule, plan: RetrainPlan, final: str, here: StepCosts,
            n_items: int, deadline: Deadline | None) -> str:
    """What the retrain will do, said before it starts: the schedule, what it means on the T4 (by the budget
    model) and here (the same epochs planned at the pace `here` measured on this machine), and what ends it here."""
    local = plan_retrain(recipe, n_items, n_items, here, math.inf, plan.epochs, plan.epochs)
    ends = ("no clock: it runs its planned epochs" if deadline is None else
            f"it ends by {duration(deadline.left())} from now (--time-limit, or the notebook's deadline for fill)")
    return (f"export retrains {name}: schedule {schedule.what}; on a T4: {plan.epochs} epochs, "
            f"{duration(plan.seconds)} by the budget model; here: {local.epoch_s:.1f} s/epoch ({here.source}), so "
            f"{duration(local.seconds)} for those epochs, and {ends}; final training: {final}, {FINALS[final]}")


def _check_writable(out: Path) -> None:
    """The export folder can take files: checked before the retrain, which may take hours."""
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "cannot write the export to this folder (read-only)", str(out))


def write_all_or_none(out: Path, write: Callable[[Path], None]) -> None:
    """Run `write(folder)` on a temporary folder beside `out`, then move each file it wrote into `out`: a
    writer that fails (a full disk) leaves `out` as it was, and the error names the file in `out`."""
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    try:
        write(staging)
        for path in staging.iterdir():
            os.replace(path, out / path.name)
    except OSError as err:
        if err.filename and Path(err.filename).parent == staging:
            raise OSError(err.errno, err.strerror, str(out / Path(err.filename).name)) from err
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)

"""What optuna-dashboard cannot read from the study by itself, stored where it looks.

optuna-dashboard shows a study's objectives, parameters and importances from the storage, but the
learning curves are a list in each trial's user attributes and the compressed variants a table beside
the study. `publish` stores, through optuna-dashboard's own API: a plotly figure of the learning curves
(`save_plotly_graph_object`, graph id `CURVES_ID`), a note per finished trial with its architecture
summary and training recipe, and a study note listing the compressed variants (`save_note`). A note is
rewritten only when its text changed. `run_search.py report` calls `dashboard_line`, which publishes when
optuna-dashboard is installed and otherwise says how to get it.
"""
from __future__ import annotations

import importlib.util
import json

import optuna
import pandas as pd
from optuna.samplers import RandomSampler

from results.candidates import trials_frame
from results.report import curves_figure
from search.profiles import Profile
from search.study import FINISHED, TrialRecord

CURVES_ID = "learning-curves"
"""Graph id of the learning curves in the dashboard's Plots; saving again replaces the figure."""
INSTALL_HINT = ("optuna-dashboard is not installed: `pip install optuna-dashboard`, rerun report to store the "
                "learning curves and notes, then `optuna-dashboard {url}`")


def trial_note(record: TrialRecord, profile: Profile) -> str:
    """Markdown: the trial's architecture summary, counts, score and training recipe."""
    facts = [f"{record.params:,} parameters" if record.params is not None else None,
             f"{record.flops:,} FLOPs" if record.flops is not None else None,
             f"validation {profile.score_name} {record.values[0]:.3f}" if record.values else record.state.name.lower(),
             f"epochs {record.epochs_run} of {record.epochs_planned}" if record.epochs_run is not None else None,
             f"estimated T4 time {record.t4_s:.1f} s" if record.t4_s is not None else None]
    lines = [f"## trial {record.number}: `{record.summary}`", "", " · ".join(f for f in facts if f)]
    if record.recipe:
        lines += ["", "Training settings (`TrainConfig`):", "", "```json",
                  json.dumps(record.recipe["train"], indent=1, sort_keys=True), "```"]
    return "\n".join(lines)


def study_note(study: optuna.Study, variants: pd.DataFrame | None) -> str:
    """Markdown: the compressed variants of the study beside what they were made from."""
    lines = [f"## {study.study_name}: compressed variants", "",
             f"Written by `run_search.py report`; the learning curves are the Plots graph `{CURVES_ID}`.", ""]
    if variants is None or variants.empty:
        return "\n".join(lines + [f"None yet: `run_search.py compress --study {study.study_name}`."])
    lines += ["| id | kind | made from | params | file bytes | score | change in score |",
              "|---|---|---|---:|---:|---:|---:|"]
    for _, v in variants.sort_values(["trial", "id"]).iterrows():
        parent = v["parent"] if isinstance(v.get("parent"), str) else f"trial {int(v['trial'])}"
        change = f"{v['d_score']:+.3f}" if pd.notna(v.get("d_score")) else "-"
        lines.append(f"| {v['id']} | {v['kind']} | {parent} | {int(v['params']):,} | {int(v['bytes']):,} | "
                     f"{v['score']:.3f} | {change} |")
    return "\n".join(lines)


def publish(study: optuna.Study, storage_url: str, profile: Profile, variants: pd.DataFrame | None = None) -> None:
    """Store the learning curves, the trial notes and the study note of `study` for optuna-dashboard."""
    from optuna_dashboard import get_note, save_note, save_plotly_graph_object

    save_plotly_graph_object(study, curves_figure(trials_frame(study, profile), profile), graph_object_id=CURVES_ID)
    # notes of finished trials go through optuna.Trial handles; a random sampler's handle changes nothing
    plain = optuna.load_study(study_name=study.study_name, storage=storage_url, sampler=RandomSampler())
    notes = [(plain, study_note(study, variants))]
    for trial in plain.get_trials(deepcopy=False, states=FINISHED):
        record = TrialRecord.from_trial(trial)
        if record.counts and record.summary is not None:
            notes.append((optuna.Trial(plain, trial._trial_id), trial_note(record, profile)))
    for target, body in notes:
        if get_note(target) != body:
            save_note(target, body)


def dashboard_line(study: optuna.Study, storage_url: str, profile: Profile,
                   variants: pd.DataFrame | None = None) -> str:
    """Publish for optuna-dashboard when it is installed; one line saying what was stored or how to get it."""
    if importlib.util.find_spec("optuna_dashboard") is None:
        return INSTALL_HINT.format(url=storage_url)
    publish(study, storage_url, profile, variants)
    return (f"optuna-dashboard {storage_url}: learning curves (Plots: {CURVES_ID}), a note per trial (architecture, "
            "recipe) and the compressed variants (study note)")

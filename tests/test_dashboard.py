"""The learning curves, trial notes and variant list stored for optuna-dashboard, read back through
optuna-dashboard's own functions (what its server reads)."""
from __future__ import annotations

import json
import sys

import optuna
import pandas as pd
import pytest

from results.dashboard import CURVES_ID, dashboard_line, publish
from search.profiles import get_profile
from search.study import TrialRecord, default_storage_url

optuna_dashboard = pytest.importorskip("optuna_dashboard")
from optuna_dashboard import get_note  # noqa: E402
from optuna_dashboard._custom_plot_data import get_plotly_graph_objects  # noqa: E402


def test_curves_notes_and_variants_are_readable_by_optuna_dashboard(tiny_study):
    study, cfg, run_dir = tiny_study
    url = default_storage_url(run_dir)
    variants = pd.DataFrame([dict(id="t0-int8", kind="int8", trial=0, parent=None, params=1234, bytes=999, score=0.5,
                                  d_score=-0.01)])
    publish(study, url, get_profile(cfg.profile), variants)
    attrs = study._storage.get_study_system_attrs(study._study_id)
    figure = json.loads(get_plotly_graph_objects(attrs)[CURVES_ID])
    curves = {t["name"]: t["y"] for t in figure["data"]}
    for trial in study.trials:
        record = TrialRecord.from_trial(trial)
        assert curves[f"trial {trial.number}"] == pytest.approx(record.curve)
        note = get_note(optuna.Trial(study, trial._trial_id))
        assert record.summary in note and f'"lr": {record.recipe["train"]["lr"]}' in note
    study_note = get_note(study)
    assert "| t0-int8 | int8 | trial 0 | 1,234 | 999 | 0.500 | -0.010 |" in study_note
    version = attrs["dashboard:note_ver"]
    publish(study, url, get_profile(cfg.profile), variants)  # unchanged notes are not rewritten
    assert study._storage.get_study_system_attrs(study._study_id)["dashboard:note_ver"] == version


def test_without_optuna_dashboard_one_line_says_how_to_get_it(tiny_study, monkeypatch):
    study, cfg, run_dir = tiny_study
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)  # import fails
    line = dashboard_line(study, "sqlite:///x.db", get_profile(cfg.profile))
    assert "\n" not in line and "pip install optuna-dashboard" in line and "optuna-dashboard sqlite:///x.db" in line

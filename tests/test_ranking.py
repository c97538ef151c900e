"""One fair ranking: finalists (the top K by single-run composite) are confirmed under one protocol and
compared only with each other; single runs are listed apart; the choice settles; and every place that
names "the best" names the same model."""
from __future__ import annotations

import copy

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState, create_trial

from results import confirm as confirm_module
from results.candidates import (
    CONFIRM_ATTR, PROTOCOL_ATTR, candidate_recipe, export_choice, finalists, ranked_candidates, ranked_trials,
)
from results.confirm import confirm, fold_score, needs_confirming
from results.export import export_recipe
from results.report import format_ranking
from run_search import print_best
from search.profiles import get_profile
from search.study import StudyData
from search.train.retrain import Deadline


def _study(tiny_study, singles: list[float]) -> tuple[optuna.Study, list[int]]:
    """An in-memory copy of the tiny study's completed trials, the i-th given single score `singles[i]` (as
    many as there are scores): (study, trial numbers in the order of `singles`)."""
    study, _, _ = tiny_study
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) >= len(singles)
    twin = optuna.create_study(directions=["maximize", "minimize"])
    twin.set_user_attr("config", study.user_attrs["config"])
    for t, score in zip(complete, singles):
        twin.add_trial(create_trial(state=TrialState.COMPLETE, values=[score, t.values[1]], params=t.params,
                                    distributions=t.distributions, user_attrs=t.user_attrs))
    return twin, [t.number for t in twin.trials]


def _add_trial(tiny_study, study: optuna.Study, score: float) -> int:
    """A new completed trial (the tiny study's first, another seed) with single score `score`; its number."""
    t = tiny_study[0].get_trials(states=(TrialState.COMPLETE,))[0]
    attrs = copy.deepcopy(t.user_attrs)
    attrs["recipe"]["train"]["seed"] += 1000
    study.add_trial(create_trial(state=TrialState.COMPLETE, values=[score, t.values[1]], params=t.params,
                                 distributions=t.distributions, user_attrs=attrs))
    return study.trials[-1].number


@pytest.fixture
def folds(monkeypatch):
    """Fake fold trainings: `folds.scores[trial number]` is the list of its fold scores (on the fold-mean
    scale, below the single scores, as trained on less data); `folds.calls` records (trial, fold)."""
    class Folds:
        scores: dict[int, list[float]] = {}
        calls: list[tuple[int, int]] = []
    recipes: dict[str, int] = {}

    def fake(recipe, cfg, data, k, fold, time_limit=None):
        number = recipes[str(recipe.to_dict())]
        Folds.calls.append((number, fold))
        return Folds.scores[number][fold]

    def register(study):
        recipes.clear()
        for t in study.get_trials(states=(TrialState.COMPLETE,)):
            recipes.setdefault(str(candidate_recipe(t.number, study).to_dict()), t.number)
    Folds.register = staticmethod(register)
    monkeypatch.setattr(confirm_module, "fold_score", fake)
    return Folds


def _export_id(study, cfg) -> str:
    return export_choice(ranked_candidates(study, get_profile(cfg.profile)))["id"]


def test_a_finalist_whose_folds_are_better_wins_over_a_better_single_score(tiny_study, folds):
    _, cfg, _ = tiny_study
    study, (a, b, c) = _study(tiny_study, [0.80, 0.76, 0.70])
    folds.register(study)
    folds.scores = {a: [0.66, 0.68, 0.67], b: [0.70, 0.71, 0.72]}
    assert _export_id(study, cfg) == f"trial {a}"  # before confirming: the best single run
    ranked = confirm(study, cfg, top=2, folds=3, progress=False)
    assert export_choice(ranked)["id"] == f"trial {b}" and list(ranked["id"][:2]) == [f"trial {b}", f"trial {a}"]
    assert list(ranked["finalist"][:3]) == [True, True, False] and study.user_attrs[PROTOCOL_ATTR] == {"folds": 3}


def test_a_lucky_single_run_does_not_beat_finalists_it_was_never_compared_with(tiny_study, folds):
    _, cfg, _ = tiny_study
    study, (a, b, _) = _study(tiny_study, [0.80, 0.76, 0.70])
    folds.register(study)
    folds.scores = {a: [0.66, 0.68, 0.67], b: [0.70, 0.71, 0.72]}
    confirm(study, cfg, top=2, folds=3, progress=False)
    lucky = _add_trial(tiny_study, study, 0.95)  # one draw, far above the finalists' fold means
    ranked = ranked_candidates(study, get_profile(cfg.profile))
    assert export_choice(ranked)["id"] == f"trial {b}", "a single run never outranks a finalist"
    assert ranked.index[ranked["id"] == f"trial {lucky}"][0] > ranked.index[ranked["id"] == f"trial {a}"][0]
    assert f"trial {lucky}" in finalists(ranked, 2)  # it entered the top 2 by single score: the next confirm takes it
    folds.register(study)
    folds.scores[lucky] = [0.64, 0.65, 0.66]
    folds.calls.clear()
    ranked = confirm(study, cfg, top=2, folds=3, progress=False)
    assert sorted(folds.calls) == [(lucky, 0), (lucky, 1), (lucky, 2)], "only the new finalist trains"
    assert export_choice(ranked)["id"] == f"trial {b}"  # its folds are worse: it joins the finalists below b


def test_a_second_export_confirms_nothing(tiny_study, folds):
    _, cfg, _ = tiny_study
    study, (a, b, _) = _study(tiny_study, [0.80, 0.76, 0.70])
    folds.register(study)
    folds.scores = {a: [0.60, 0.61, 0.62], b: [0.70, 0.71, 0.72]}  # the old rule then confirmed the third trial too
    assert needs_confirming(study, cfg, 2, 3)
    confirm(study, cfg, top=2, folds=3, progress=False)
    folds.calls.clear()
    assert not needs_confirming(study, cfg, 2, 3)
    confirm(study, cfg, top=2, folds=3, progress=False)
    assert folds.calls == []


def test_fold_counts_never_mix_and_a_partial_confirm_does_not_count(tiny_study):
    _, cfg, _ = tiny_study
    study, (a, b, c) = _study(tiny_study, [0.80, 0.76, 0.70])
    study.set_user_attr(CONFIRM_ATTR, {
        f"trial {a}": {"folds": 3, "scores": {"0": 0.60, "1": 0.61, "2": 0.62}},
        f"trial {b}": {"folds": 2, "scores": {"0": 0.90, "1": 0.91}},  # another protocol: left out
        f"trial {c}": {"folds": 3, "scores": {"0": 0.95, "1": 0.96}}})  # part-way: shown, not counted
    study.set_user_attr(PROTOCOL_ATTR, {"folds": 3})
    ranked = ranked_candidates(study, get_profile(cfg.profile)).set_index("id")
    assert ranked.loc[f"trial {a}", "finalist"] and export_choice(ranked.reset_index())["id"] == f"trial {a}"
    assert not ranked.loc[f"trial {b}", "finalist"] and np.isnan(ranked.loc[f"trial {b}", "confirm_mean"])
    assert not ranked.loc[f"trial {c}", "finalist"] and ranked.loc[f"trial {c}", "confirm_n"] == 2
    terminal = format_ranking(ranked.reset_index(), get_profile(cfg.profile))
    assert "single run (2 folds stored, not counted)" in terminal and "0.610 +- 0.010 (3 folds)" in terminal
    assert needs_confirming(study, cfg, 3, 3)  # b and c are resumed or redone on the protocol's folds


def test_the_summary_compress_report_and_export_name_the_same_model(tiny_study, folds, capsys):
    _, cfg, _ = tiny_study
    study, (a, b, _) = _study(tiny_study, [0.80, 0.76, 0.70])
    folds.register(study)
    folds.scores = {a: [0.60, 0.61, 0.62], b: [0.70, 0.71, 0.72]}
    ranked = confirm(study, cfg, top=2, folds=3, progress=False)
    named = f"trial {b}"
    print_best(study, cfg, "sqlite://")
    assert f"first in the ranking (what export takes): {named}:" in capsys.readouterr().out
    assert ranked_trials(ranked, 1) == [b]  # compress --top 1
    terminal = format_ranking(ranked, get_profile(cfg.profile)).splitlines()
    export_line = next(line for line in terminal if "<- export" in line)
    assert f" {named} " in export_line
    row, name, _ = export_recipe(study, get_profile(cfg.profile), None, None, None, 1.0)
    assert name == named and row["id"] == named


def test_a_time_limited_confirm_stores_no_shortened_fold(tiny_study, folds):
    """`export --time-limit` gives confirm a deadline: no fold starts that its trial's time says would end
    after it, and a fold the clock cuts short is not stored (it is not the protocol's)."""
    _, cfg, _ = tiny_study
    study, (a, b, _) = _study(tiny_study, [0.80, 0.76, 0.70])
    folds.register(study)
    folds.scores = {a: [0.60, 0.61, 0.62], b: [0.70, 0.71, 0.72]}
    confirm(study, cfg, top=2, folds=3, progress=False, time_limit=Deadline(1e-3))
    assert folds.calls == [] and study.user_attrs.get(CONFIRM_ATTR, {}) == {}
    data = StudyData(cfg, progress=False)
    recipe = candidate_recipe(a, study)
    assert fold_score(recipe, cfg, data, 3, 0, time_limit=Deadline(0.05)) is None  # real training, cut by the clock

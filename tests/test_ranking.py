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
    CONFIRM_ATTR, PROTOCOL_ATTR, Protocol, candidate_recipe, export_choice, finalists, ranked_candidates, ranked_trials,
)
from results.confirm import chosen_protocol, chosen_top, confirm, confirm_seconds, fold_score
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
    scale, below the single scores, as trained on less data); `folds.calls` records (trial, fold) and
    `folds.protocols` the protocol of each call."""
    class Folds:
        scores: dict[int, list[float]] = {}
        calls: list[tuple[int, int]] = []
        protocols: list[Protocol] = []
    recipes: dict[str, int] = {}

    def fake(recipe, cfg, data, protocol, fold, time_limit=None):
        number = recipes[str(recipe.to_dict())]
        Folds.calls.append((number, fold))
        Folds.protocols.append(protocol)
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
    ranked = confirm(study, cfg, top=2, k=3, progress=False)
    assert export_choice(ranked)["id"] == f"trial {b}" and list(ranked["id"][:2]) == [f"trial {b}", f"trial {a}"]
    assert (list(ranked["finalist"][:3]) == [True, True, False]
            and study.user_attrs[PROTOCOL_ATTR] == {"protocol": "folds", "k": 3, "top": 2})


def test_a_lucky_single_run_does_not_beat_finalists_it_was_never_compared_with(tiny_study, folds):
    _, cfg, _ = tiny_study
    study, (a, b, _) = _study(tiny_study, [0.80, 0.76, 0.70])
    folds.register(study)
    folds.scores = {a: [0.66, 0.68, 0.67], b: [0.70, 0.71, 0.72]}
    confirm(study, cfg, top=2, k=3, progress=False)
    lucky = _add_trial(tiny_study, study, 0.95)  # one draw, far above the finalists' fold means
    ranked = ranked_candidates(study, get_profile(cfg.profile))
    assert export_choice(ranked)["id"] == f"trial {b}", "a single run never outranks a finalist"
    assert ranked.index[ranked["id"] == f"trial {lucky}"][0] > ranked.index[ranked["id"] == f"trial {a}"][0]
    assert f"trial {lucky}" in finalists(ranked, 2)  # it entered the top 2 by single score: the next confirm takes it
    folds.register(study)
    folds.scores[lucky] = [0.64, 0.65, 0.66]
    folds.calls.clear()
    ranked = confirm(study, cfg, top=2, k=3, progress=False)
    assert sorted(folds.calls) == [(lucky, 0), (lucky, 1), (lucky, 2)], "only the new finalist trains"
    assert export_choice(ranked)["id"] == f"trial {b}"  # its folds are worse: it joins the finalists below b


def test_a_second_export_confirms_nothing(tiny_study, folds):
    _, cfg, _ = tiny_study
    study, (a, b, _) = _study(tiny_study, [0.80, 0.76, 0.70])
    folds.register(study)
    folds.scores = {a: [0.60, 0.61, 0.62], b: [0.70, 0.71, 0.72]}  # the old rule then confirmed the third trial too
    assert confirm_seconds(study, cfg, 2, 3)[0]
    confirm(study, cfg, top=2, k=3, progress=False)
    folds.calls.clear()
    assert not confirm_seconds(study, cfg, 2, 3)[0]
    confirm(study, cfg, top=2, k=3, progress=False)
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
    assert confirm_seconds(study, cfg, 3, 3)[0]  # b and c are resumed or redone on the protocol's folds


def test_the_summary_compress_report_and_export_name_the_same_model(tiny_study, folds, capsys):
    _, cfg, _ = tiny_study
    study, (a, b, _) = _study(tiny_study, [0.80, 0.76, 0.70])
    folds.register(study)
    folds.scores = {a: [0.60, 0.61, 0.62], b: [0.70, 0.71, 0.72]}
    ranked = confirm(study, cfg, top=2, k=3, progress=False)
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
    confirm(study, cfg, top=2, k=3, progress=False, time_limit=Deadline(1e-3))
    assert folds.calls == [] and study.user_attrs.get(CONFIRM_ATTR, {}) == {}
    data = StudyData(cfg, progress=False)
    recipe = candidate_recipe(a, study)
    # real training, cut by the clock
    assert fold_score(recipe, cfg, data, Protocol("folds", 3), 0, time_limit=Deadline(0.05)) is None


def test_a_seeds_confirm_stores_its_runs_under_its_own_protocol_and_resumes(tiny_study, folds):
    _, cfg, _ = tiny_study
    study, (a, b, _) = _study(tiny_study, [0.80, 0.76, 0.70])
    folds.register(study)
    folds.scores = {a: [0.70, 0.71, 0.72], b: [0.66, 0.67, 0.68]}
    ranked = confirm(study, cfg, top=2, k=3, progress=False, protocol="seeds")
    assert set(folds.protocols) == {Protocol("seeds", 3)} and len(folds.calls) == 6
    assert study.user_attrs[PROTOCOL_ATTR] == {"protocol": "seeds", "k": 3, "top": 2}
    assert study.user_attrs[CONFIRM_ATTR][f"trial {a}"] == {"protocol": "seeds", "k": 3,
                                                           "scores": {"0": 0.70, "1": 0.71, "2": 0.72}}
    assert export_choice(ranked)["id"] == f"trial {a}" and list(ranked["finalist"][:2]) == [True, True]
    folds.calls.clear()
    assert not confirm_seconds(study, cfg, 2, 3, protocol="seeds")[0]
    confirm(study, cfg, top=2, k=3, progress=False, protocol="seeds")  # resumed: every run is stored
    assert folds.calls == []
    assert confirm_seconds(study, cfg, 2, 3, protocol="folds")[0]  # the folds protocol has none of them


def test_a_later_confirm_or_export_keeps_the_studys_protocol_unless_told_another(tiny_study, folds):
    """The finalists settle: after `confirm --top 2 --protocol seeds --runs 2`, a plain confirm (or export's)
    resumes with 2 finalists under seeds with 2 runs instead of starting 3 on folds; the report names the
    protocol."""
    _, cfg, _ = tiny_study
    study, (a, b, _) = _study(tiny_study, [0.80, 0.76, 0.70])
    folds.register(study)
    folds.scores = {a: [0.70, 0.71], b: [0.66, 0.67]}
    confirm(study, cfg, top=2, k=2, progress=False, protocol="seeds")
    assert chosen_protocol(study) == Protocol("seeds", 2) and confirm_seconds(study, cfg, 2)[0] == 0
    folds.calls.clear()
    assert chosen_top(study) == 2 and confirm_seconds(study, cfg)[0] == 0  # neither top, k nor protocol given
    ranked = confirm(study, cfg, progress=False)
    assert folds.calls == [] and study.user_attrs[PROTOCOL_ATTR] == {"protocol": "seeds", "k": 2, "top": 2}
    assert "0.705 +- 0.007 (2 seeds)" in format_ranking(ranked, get_profile(cfg.profile))
    assert chosen_protocol(study, "folds") == Protocol("folds", 2)  # told another: that one, with the study's k
    assert confirm_seconds(study, cfg, 2, 3)[0] == 6  # another k is another protocol: every run is missing
    with pytest.raises(ValueError, match="at least 1 finalist"):
        confirm_seconds(study, cfg, 0)  # 0 is refused, not read as "the study's"


def test_a_part_way_seeds_confirm_resumes_only_its_missing_runs(tiny_study, folds):
    _, cfg, _ = tiny_study
    study, (a, b, _) = _study(tiny_study, [0.80, 0.76, 0.70])
    folds.register(study)
    folds.scores = {a: [0.70, 0.71, 0.72], b: [0.66, 0.67, 0.68]}
    study.set_user_attr(CONFIRM_ATTR, {
        f"trial {a}": {"protocol": "seeds", "k": 3, "scores": {"0": 0.70, "2": 0.72}},  # run 1 missing
        f"trial {b}": {"folds": 3, "scores": {"0": 0.9, "1": 0.9, "2": 0.9}}})  # another protocol: redone
    confirm(study, cfg, top=2, k=3, progress=False, protocol="seeds")
    assert sorted(folds.calls) == [(a, 1), (b, 0), (b, 1), (b, 2)]
    assert study.user_attrs[CONFIRM_ATTR][f"trial {b}"]["scores"] == {"0": 0.66, "1": 0.67, "2": 0.68}


def test_rows_of_another_protocol_are_not_finalists(tiny_study):
    """Scores under folds are never compared with scores under seeds, nor k = 3 with k = 2; a study confirmed
    before protocols had names ({"folds": k}) still reads as folds."""
    _, cfg, _ = tiny_study
    study, (a, b, c) = _study(tiny_study, [0.80, 0.76, 0.70])
    study.set_user_attr(CONFIRM_ATTR, {
        f"trial {a}": {"protocol": "seeds", "k": 3, "scores": {"0": 0.60, "1": 0.61, "2": 0.62}},
        f"trial {b}": {"folds": 3, "scores": {"0": 0.90, "1": 0.91, "2": 0.92}},  # folds, the older form
        f"trial {c}": {"protocol": "seeds", "k": 2, "scores": {"0": 0.95, "1": 0.96}}})
    study.set_user_attr(PROTOCOL_ATTR, {"protocol": "seeds", "k": 3})
    ranked = ranked_candidates(study, get_profile(cfg.profile)).set_index("id")
    assert ranked.loc[f"trial {a}", "finalist"] and ranked.loc[f"trial {a}", "confirm_mean"] == pytest.approx(0.61)
    for other in (b, c):
        assert not ranked.loc[f"trial {other}", "finalist"] and np.isnan(ranked.loc[f"trial {other}", "confirm_mean"])
    assert export_choice(ranked.reset_index())["id"] == f"trial {a}"
    study.set_user_attr(PROTOCOL_ATTR, {"folds": 3})  # the older form of folds
    ranked = ranked_candidates(study, get_profile(cfg.profile)).set_index("id")
    assert list(ranked.index[ranked["finalist"]]) == [f"trial {b}"]
    with pytest.raises(ValueError, match="confirm protocol"):
        confirm(study, cfg, top=2, k=3, progress=False, protocol="bootstrap")


def test_the_protocols_train_and_score_on_their_parts(tiny_study):
    """Seeds: every run trains on the study's training part and scores its validation part; folds: run i
    scores fold i of the training and validation images, each of them scored by exactly one run; the test
    prompts stay out of both."""
    _, cfg, _ = tiny_study
    data = StudyData(cfg, progress=False)
    size = 64
    train, val, test = data.split(size)
    for i in range(3):
        fit, held = confirm_module.protocol_parts(Protocol("seeds", 3), cfg, data, size, i)
        assert np.array_equal(fit, train) and np.array_equal(held, val)
    held_out = []
    for i in range(3):
        fit, held = confirm_module.protocol_parts(Protocol("folds", 3), cfg, data, size, i)
        assert not set(fit) & set(held) and set(fit) | set(held) == set(train) | set(val)
        held_out += list(held)
    assert sorted(held_out) == sorted(np.concatenate([train, val])) and not set(held_out) & set(test)

"""What a study does with the time a user gives it: no trial planned below `min_epochs` (shrunk or not
trained), a time limit that holds, known recipes enqueued first, and the top of the ranking confirmed
on folds before export."""
from __future__ import annotations

import time

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState, create_trial

from results import confirm as confirm_module
from results.candidates import CONFIRM_ATTR, Protocol, ranked_candidates
from results.confirm import confirm, confirm_seconds, fold_score
from search.budget import BudgetModel
from search.profiles import get_profile
from search.study import StudyConfig, StudyData, TrialRecord, run_search
from search.study.known import enqueue_known, known_recipes, rebuild
from search.study.objective import plan_trial, sample_trial
from space import CapError, count_flops, count_params

AGIQA3K_TRAIN = 1916
"""Training images of a study on the AGIQA-3K dev part (80 % of 2,396 by prompt)."""


@pytest.mark.parametrize("space", ["small", "default"])
def test_no_trial_is_planned_below_min_epochs(space):
    """200 random proposals of a 20 T4-second study: each is planned for at least 4 epochs, shrunk to
    get them (fewer FLOPs than drawn), or refused; a 4.6 GFLOP draw is never planned for one epoch."""
    cfg = StudyConfig(dataset="synthetic", space=space, trial_budget_s=20.0, max_epochs=60)
    budget, sampler = BudgetModel(), optuna.samplers.RandomSampler(seed=0)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    planned = shrunk = refused = 0
    for _ in range(200):
        trial = study.ask()
        try:
            recipe, share = sample_trial(trial, cfg, cfg.search_space())
        except CapError:
            continue
        try:
            out, why = plan_trial(recipe, share, cfg, budget, AGIQA3K_TRAIN)
        except CapError as err:
            assert "4 epochs in the trial budget of 20 T4 s" in str(err)
            refused += 1
            continue
        assert out.train.epochs >= 4, (out.spec, out.train.epochs)
        if why is not None:
            shrunk += 1
            assert count_params(out.spec) < count_params(recipe.spec) and "shrunk" in why
        else:
            assert out.spec == recipe.spec
        planned += 1
    assert planned > 100 and shrunk > 0  # the budget did bind, and most draws still train


def test_a_proposal_over_the_budget_is_not_trained_and_does_not_count(tmp_path, capfd):
    """With a budget no model of the space fits at min_epochs, every proposal is refused with its
    reason recorded, none counts, and the worker stops instead of looping."""
    cfg = StudyConfig(space="tiny", n_synthetic=48, trial_budget_s=0.05, min_epochs=50, max_epochs=60,
                      device="cpu", cache_dir=str(tmp_path / "cache"))
    study = run_search(cfg, "b", 2, tmp_path / "runs" / "b", progress=False)
    records = [TrialRecord.from_trial(t) for t in study.trials]
    assert len(records) >= 10 and all(r.state == TrialState.PRUNED and r.over_budget for r in records)
    assert not any(r.counts for r in records) and "50 epochs" in records[0].over_budget
    assert "not trained" in capfd.readouterr().err


def test_time_limit_holds_within_one_trial_and_keeps_what_finished(tmp_path):
    cfg = StudyConfig(space="tiny", n_synthetic=120, trial_budget_s=1000.0, max_epochs=6, early_stop="none",
                      device="cpu", cache_dir=str(tmp_path / "cache"))
    run_dir = tmp_path / "runs" / "t"
    first = run_search(cfg, "t", 1, run_dir, progress=False)  # one trial without a limit: its length here
    limit = 1.5 * TrialRecord.from_trial(first.trials[0]).wall_s
    start = time.time()
    study = run_search(cfg, "t", 1000, run_dir, progress=False, time_limit_s=limit)
    elapsed = time.time() - start
    records = [TrialRecord.from_trial(t) for t in study.trials]
    longest = max(r.wall_s for r in records if r.wall_s)
    assert len(records) >= 2 and elapsed < limit + longest + 10  # data loading and saving on top of training
    assert records[0].state == TrialState.COMPLETE and (run_dir / records[0].checkpoint).exists()  # kept
    assert all(r.state in (TrialState.COMPLETE, TrialState.PRUNED) for r in records)  # nothing left running
    assert all(r.state == TrialState.PRUNED and r.curve for r in records if r.time_limit)
    assert records[-1].time_limit or elapsed >= limit  # it stopped because of the limit, not the target


@pytest.mark.parametrize("space", ["small", "default"])
def test_known_recipes_round_trip_through_the_space(space):
    """The stored sampler parameters rebuild the same spec and training settings (FixedTrial), in every
    space that offers their input (a fragment recipe's grid: the default space's 7, not the small one's 5)."""
    cfg = StudyConfig(dataset="synthetic", space=space)
    for known in known_recipes():
        rebuilt = rebuild(known, cfg)
        offered = known.params.get("fragments", 0) in cfg.search_space().fragments
        assert (rebuilt is not None) == offered, known.name
        if not offered:
            continue
        recipe, share = rebuilt
        again = sample_trial(optuna.trial.FixedTrial(known.params), cfg, cfg.search_space())[0]
        assert again.to_dict() == recipe.to_dict() and share == known.params["pretrain_share"]
        assert recipe.spec.input.patch == known.params["patch"] and recipe.train.lr == known.params["lr"]
        assert recipe.spec.input.fragments == known.params.get("fragments", 0)
    assert any(k.params.get("fragments") for k in known_recipes())  # the second rung's fragments are known
    best = known_recipes()[0]
    assert best.cv["score"] == max(k.cv["score"] for k in known_recipes())


def test_known_recipes_do_not_fit_a_space_without_patches_or_fragments():
    cfg = StudyConfig(dataset="synthetic", space="small", patches=[0], fragments=[0])
    assert all(rebuild(k, cfg) is None for k in known_recipes())


def test_a_fresh_study_starts_with_the_best_known_recipe_its_space_offers(tmp_path):
    cfg = StudyConfig(dataset="synthetic", space="small", n_synthetic=40, device="cpu", cache_dir=str(tmp_path))
    study = optuna.create_study(directions=["maximize", "minimize"])
    enqueued = enqueue_known(study, cfg, StudyData(cfg))
    offered = [k for k in known_recipes() if rebuild(k, cfg) is not None]
    assert [k.name for k in enqueued] == [k.name for k in offered] and len(offered) < len(known_recipes())
    first = study.ask()
    assert first.user_attrs["known_recipe"] == offered[0].name
    recipe, _ = sample_trial(first, cfg, cfg.search_space())
    assert recipe.to_dict() == rebuild(offered[0], cfg)[0].to_dict()
    assert count_flops(recipe.spec) > 0


# ------------------------------------------------------------------------------------------ confirm
def _lucky_copy(tiny_study, name: str) -> tuple[optuna.Study, int, int]:
    """A copy of the tiny study whose second-best trial got a lucky single run (0.99): (study, lucky, other)."""
    study, cfg, run_dir = tiny_study
    complete = sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: -t.values[0])
    copy = optuna.create_study(study_name=name, directions=["maximize", "minimize"])
    copy.set_user_attr("config", study.user_attrs["config"])
    lucky = complete[1].number
    for t in study.trials:
        values = [0.99, t.values[1]] if t.number == lucky else t.values
        copy.add_trial(create_trial(state=t.state, values=values if t.state == TrialState.COMPLETE else None,
                                    params=t.params, distributions=t.distributions, user_attrs=t.user_attrs))
    return copy, lucky, complete[0].number


def test_a_lucky_single_run_loses_its_place_when_its_folds_say_so(tiny_study, monkeypatch):
    _, cfg, _ = tiny_study
    study, lucky, other = _lucky_copy(tiny_study, "lucky")
    profile = get_profile(cfg.profile)
    before = ranked_candidates(study, profile)
    assert before.loc[before["export"], "id"].item() == f"trial {lucky}"
    folds_score = {f"trial {lucky}": [0.30, 0.36, 0.33], f"trial {other}": [0.55, 0.60, 0.58]}
    calls = []

    def fake_fold_score(recipe, cfg_, data, protocol, fold, time_limit=None):
        cid = next(c for c, r in recipes.items() if r == recipe.to_dict())
        calls.append((cid, fold))
        return folds_score.get(cid, [0.1] * protocol.k)[fold]

    from results.candidates import candidate_recipe
    recipes = {f"trial {t.number}": candidate_recipe(t.number, study).to_dict()
               for t in study.get_trials(states=(TrialState.COMPLETE,))}
    monkeypatch.setattr(confirm_module, "fold_score", fake_fold_score)
    assert confirm_seconds(study, cfg, 2, 3)[0]
    ranked = confirm(study, cfg, top=2, k=3, progress=False)
    assert ranked.loc[ranked["export"], "id"].item() == f"trial {other}"
    row = ranked.set_index("id").loc[f"trial {lucky}"]
    assert row["confirm_mean"] == pytest.approx(0.33) and row["confirm_sd"] == pytest.approx(0.03)
    assert row["confirm_n"] == 3 and len(calls) == 6
    assert not confirm_seconds(study, cfg, 2, 3)[0]
    confirm(study, cfg, top=2, k=3, progress=False)  # resumed: every fold is stored, nothing retrains
    assert len(calls) == 6 and set(study.user_attrs[CONFIRM_ATTR]) == {f"trial {lucky}", f"trial {other}"}


def test_a_fold_trains_from_scratch_on_the_other_folds(tiny_study):
    study, cfg, _ = tiny_study
    from results.candidates import candidate_recipe
    best = max(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.values[0])
    data = StudyData(cfg)
    score = fold_score(candidate_recipe(best.number, study), cfg, data, Protocol("folds", 2), 0)
    again = fold_score(candidate_recipe(best.number, study), cfg, data, Protocol("folds", 2), 0)
    assert np.isfinite(score) and score == again  # seeded: the same fold gives the same score

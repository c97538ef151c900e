"""The Optuna study: learning on the synthetic set, resuming, early stopping, workers, storages."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from search.budget import BudgetModel
from search.profiles import get_profile
from search.study import (
    FINISHED, LOSS_PRESETS, Objective, StudyConfig, create_study, default_storage_url, plan_schedule, rung_epochs,
    run_search, should_stop,
)

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(space="tiny", n_synthetic=240, max_epochs=3, trial_budget_s=1000.0, early_stop=False, device="cpu")


def _cfg(tmp_path: Path, **kw) -> StudyConfig:
    return StudyConfig(cache_dir=str(tmp_path / "cache"), **{**FAST, **kw})


def test_rung_epochs_are_fractions_of_the_schedule():
    assert rung_epochs(20, [0.25, 0.5]) == [5, 10]
    assert rung_epochs(2, [0.25, 0.5]) == [1]
    assert rung_epochs(1, [0.25, 0.5]) == []


def test_should_stop_counts_only_no_larger_better_peers():
    def peer(params, score):
        return create_trial(state=TrialState.COMPLETE, values=[score, params], user_attrs={"params": params, "rung0": score})

    strong_small = [peer(1_000, 0.8) for _ in range(3)]
    strong_big = [peer(100_000, 0.8) for _ in range(3)]
    assert should_stop(0.5, 10_000, 0, strong_small, dominators=3, margin=0.01)
    assert not should_stop(0.5, 10_000, 0, strong_big, dominators=3, margin=0.01)
    assert not should_stop(0.795, 10_000, 0, strong_small, dominators=3, margin=0.01)
    assert not should_stop(0.5, 10_000, 1, strong_small, dominators=3, margin=0.01)


@pytest.mark.slow
def test_search_learns_synthetic_and_resumes(tmp_path):
    cfg = StudyConfig(space="tiny", n_synthetic=1200, max_epochs=12, trial_budget_s=1000.0, device="cpu",
                      cache_dir=str(tmp_path / "cache"))
    run_dir = tmp_path / "runs" / "s"
    study = run_search(cfg, "s", 3, run_dir, progress=False)
    first = {t.number: t.values for t in study.get_trials(states=(TrialState.COMPLETE,))}
    assert len(study.get_trials(states=FINISHED)) == 3
    best = max(t.user_attrs["metrics"]["srcc"] for t in study.get_trials(states=(TrialState.COMPLETE,)))
    assert best > 0.6, f"best synthetic validation SRCC {best:.3f}"
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        assert t.user_attrs["params"] <= get_profile(cfg.profile).caps.params
        assert (run_dir / t.user_attrs["checkpoint"]).is_file()
        assert len(t.user_attrs["curve"]) == t.user_attrs["epochs_run"]

    resumed = run_search(cfg, "s", 4, run_dir, progress=False)
    trials = resumed.get_trials(states=FINISHED)
    assert len(trials) == 4
    assert {t.number: t.values for t in trials if t.number in first} == first


def test_resume_with_other_settings_names_them(tmp_path):
    url = default_storage_url(tmp_path)
    create_study(_cfg(tmp_path), "s", url)
    with pytest.raises(ValueError, match="max_epochs"):
        create_study(_cfg(tmp_path, max_epochs=5), "s", url)


def _study_with_peers(tmp_path: Path, cfg: StudyConfig, peer_score: float) -> optuna.Study:
    study = create_study(cfg, "es", default_storage_url(tmp_path))
    for _ in range(3):
        study.add_trial(create_trial(
            state=TrialState.COMPLETE, values=[peer_score, 100.0], params={"lr": 1e-3},
            distributions={"lr": FloatDistribution(5e-4, 5e-3, log=True)},
            user_attrs={"params": 100, "rung0": peer_score, "rung1": peer_score},
        ))
    return study


@pytest.mark.parametrize("peer_score, expect", [(0.99, TrialState.PRUNED), (-1.0, TrialState.COMPLETE)])
def test_hopeless_trials_stop_early_and_promising_ones_run_on(tmp_path, peer_score, expect):
    cfg = _cfg(tmp_path, early_stop=True, max_epochs=8)
    study = _study_with_peers(tmp_path, cfg, peer_score)
    study.optimize(Objective(cfg, tmp_path), n_trials=1)
    trial = study.trials[-1]
    assert trial.state == expect
    planned = trial.user_attrs["epochs_planned"]
    if expect == TrialState.PRUNED:
        assert trial.user_attrs["epochs_run"] == rung_epochs(planned, cfg.rung_fractions)[0] < planned
    else:
        assert trial.user_attrs["epochs_run"] == planned


def _worker(url: str, name: str, trials: int, runs: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "run_search.py"), "worker", "--storage", url, "--study", name,
         "--trials", str(trials), "--runs-dir", str(runs), "--quiet"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait(procs: list[subprocess.Popen], timeout: float) -> list[str]:
    errors = []
    for p in procs:
        _, err = p.communicate(timeout=timeout)
        errors.append(err)
    return errors


def _freeze_a_running_trial(study: optuna.Study, deadline: float) -> tuple[optuna.trial.FrozenTrial, int]:
    """Stop (SIGSTOP) the worker of a running trial once another trial has completed.

    The trial is re-read after the worker is frozen, so it cannot finish between the choice and the kill.
    """
    while time.time() < deadline:
        running = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if "worker" in t.user_attrs]
        if running and study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            pid = int(running[0].user_attrs["worker"].rsplit(":", 1)[1])
            os.kill(pid, signal.SIGSTOP)
            victim = study.get_trials(deepcopy=False)[running[0].number]
            if victim.state == TrialState.RUNNING:
                return victim, pid
            os.kill(pid, signal.SIGCONT)
        time.sleep(0.2)
    raise AssertionError("no trial was running")


@pytest.mark.slow
def test_killed_worker_trial_fails_and_is_retried(tmp_path):
    cfg = _cfg(tmp_path, heartbeat_interval=1, grace_period=3, max_epochs=6)
    url = default_storage_url(tmp_path / "runs" / "k")
    study = create_study(cfg, "k", url)
    procs = [_worker(url, "k", 6, tmp_path / "runs") for _ in range(3)]
    victim, pid = _freeze_a_running_trial(study, deadline=time.time() + 240)
    complete_before = {t.number: t.values for t in study.get_trials(states=(TrialState.COMPLETE,))}
    os.kill(pid, signal.SIGKILL)
    errors = _wait(procs, timeout=300)

    trials = study.get_trials()
    assert trials[victim.number].state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert retries and retries[0].state in FINISHED
    assert retries[0].params == victim.params
    assert {n: trials[n].values for n in complete_before} == complete_before
    assert len([t for t in trials if t.state in FINISHED]) >= 6
    assert not any("database is locked" in e for e in errors), errors
    killed = [p for p in procs if p.returncode == -signal.SIGKILL]
    assert len(killed) == 1 and all(p.returncode == 0 for p in procs if p not in killed)


@pytest.mark.slow
def test_two_workers_on_postgresql(tmp_path):
    url = os.environ.get("LIQA_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("no PostgreSQL server: LIQA_TEST_POSTGRES_URL unset (.ci/run starts one with .ci/postgres.sh)")
    try:
        import sqlalchemy

        with sqlalchemy.create_engine(url).connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
    except Exception as err:  # the server could not be reached: skip with the reason
        pytest.skip(f"PostgreSQL at {url} unreachable: {err}")
    name = f"pg-{os.getpid()}-{int(time.time())}"
    study = create_study(_cfg(tmp_path), name, url)
    errors = _wait([_worker(url, name, 4, tmp_path / "runs") for _ in range(2)], timeout=300)
    finished = study.get_trials(states=FINISHED)
    assert len(finished) >= 4, errors
    assert len({t.user_attrs["worker"] for t in finished}) == 2, "both workers should have run trials"


def test_two_way_split_is_the_plain_grouped_holdout_and_recorded(tmp_path):
    """Later stages recompute the split: it must stay exactly the one the trials were validated on."""
    from search.data import grouped_holdout

    cfg = _cfg(tmp_path)
    objective = Objective(cfg, tmp_path)
    groups = np.repeat([f"p{i}" for i in range(30)], 4)
    train, val, test = objective.split(groups)
    expected = grouped_holdout(groups, cfg.val_fraction, seed=cfg.seed)
    assert (train == expected[0]).all() and (val == expected[1]).all() and len(test) == 0
    study = create_study(cfg, "fp", default_storage_url(tmp_path))
    study.optimize(objective, n_trials=1)
    assert study.trials[0].user_attrs["val_fingerprint"] == objective.val_fingerprint(64)


def test_every_loss_preset_keeps_predictions_on_the_mos_scale():
    """Correlation losses alone leave the scale free (RMSE, the first tie-break, then suffers)."""
    assert all(weights.get("mse", 0) > 0 for weights in LOSS_PRESETS.values())


def test_pretraining_takes_its_share_of_the_trial_budget_and_the_rest_goes_to_mos_epochs():
    budget, flops, n, bs = BudgetModel(), 50_000_000, 2000, 32
    per_epoch, per_pretrain = budget.epoch_seconds(flops, n, bs), budget.pretrain_seconds(flops, n, 1, bs)
    assert per_epoch < per_pretrain < 3 * per_epoch  # three crops per image, but no more steps (overheads)
    total = 100 * per_epoch
    pre, mos = plan_schedule(budget, total, 0.3, 1000, flops, n, bs)
    assert pre >= 1 and budget.pretrain_seconds(flops, n, pre, bs) <= 0.3 * total
    spent = budget.pretrain_seconds(flops, n, pre, bs) + budget.train_seconds(flops, n, mos, bs)
    assert spent <= total < spent + per_epoch  # the rest is filled with whole MOS epochs
    assert plan_schedule(budget, total, 0.0, 1000, flops, n, bs)[0] == 0
    assert plan_schedule(budget, 2 * per_epoch, 0.3, 1000, flops, n, bs)[0] == 0  # not one epoch fits
    # a schedule capped by max_epochs: pretraining takes its share of what the trial would have spent
    pre, mos = plan_schedule(budget, total, 0.5, 10, flops, n, bs)
    assert pre >= 1 and budget.pretrain_seconds(flops, n, pre, bs) + budget.train_seconds(flops, n, mos, bs) \
        <= budget.train_seconds(flops, n, 10, bs) + 1e-9
    with pytest.raises(ValueError, match="pretrain_shares"):
        StudyConfig(pretrain_shares=[1.0])


def test_trials_record_their_pretraining_and_weight_averaging(tmp_path):
    cfg = _cfg(tmp_path, pretrain_shares=[0.5], ema_decays=[0.9], trial_budget_s=5.0, max_epochs=6)
    objective = Objective(cfg, tmp_path)
    study = create_study(cfg, "pt", default_storage_url(tmp_path))
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    train_cfg, flops = trial.user_attrs["train_config"], trial.user_attrs["flops"]
    assert trial.params["pretrain_share"] == 0.5 and train_cfg["ema_decay"] == 0.9
    assert train_cfg["pretrain_epochs"] >= 1, train_cfg
    n = len(objective.data(64)[0])
    budget = BudgetModel()
    assert trial.user_attrs["t4_s_planned"] == pytest.approx(
        budget.pretrain_seconds(flops, n, train_cfg["pretrain_epochs"], cfg.batch_size)
        + budget.train_seconds(flops, n, train_cfg["epochs"], cfg.batch_size))
    assert trial.state == TrialState.COMPLETE and trial.user_attrs["t4_s_planned"] <= cfg.trial_budget_s

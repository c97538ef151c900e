"""The Optuna study: learning on the synthetic set, resuming, early stopping, workers, storages."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from search.budget import BudgetModel
from search.data import make_synthetic
from search.train.recipe import Recipe, TrainConfig
from search.profiles import get_profile
from search.study import (
    FINISHED, LOSS_PRESETS, Objective, ParetoRungs, StudyConfig, StudyData, TrialRecord, check_split, create_study,
    default_storage_url, load_study, plan_schedule, run_search, run_worker, sample_trial, space_config, study_split,
)
from search.study import workers as workers_module
from search.train.loop import predict, seed_everything, train_model
from space import ArchSpec, Caps, InputSpec, SpaceConfig, StageSpec, StemSpec, build_model, sample_spec

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(space="tiny", n_synthetic=240, max_epochs=3, trial_budget_s=1000.0, early_stop=False, device="cpu")


def _cfg(tmp_path: Path, **kw) -> StudyConfig:
    return StudyConfig(cache_dir=str(tmp_path / "cache"), **{**FAST, **kw})


def test_rung_epochs_are_fractions_of_the_schedule():
    rungs = ParetoRungs((0.25, 0.5))
    assert rungs.rung_epochs(20) == [5, 10]
    assert rungs.rung_epochs(2) == [1]
    assert rungs.rung_epochs(1) == []
    assert Objective(_cfg(Path("/nonexistent")), Path("/nonexistent")).early_stopping.rung_epochs(20) == []


def test_should_stop_counts_only_no_larger_better_peers():
    def peer(params, score):  # stored as studies always stored them
        trial = create_trial(state=TrialState.COMPLETE, values=[score, params],
                             user_attrs={"params": params, "rung0": score})
        return TrialRecord.from_trial(trial)

    rungs = ParetoRungs(dominators=3, margin=0.01)
    strong_small = [peer(1_000, 0.8) for _ in range(3)]
    strong_big = [peer(100_000, 0.8) for _ in range(3)]
    assert rungs.should_stop(0, 0.5, 10_000, strong_small)
    assert not rungs.should_stop(0, 0.5, 10_000, strong_big)
    assert not rungs.should_stop(0, 0.795, 10_000, strong_small)
    assert not rungs.should_stop(1, 0.5, 10_000, strong_small)


@pytest.mark.slow
def test_search_learns_synthetic_and_resumes(tmp_path):
    cfg = StudyConfig(space="tiny", n_synthetic=1200, max_epochs=12, trial_budget_s=1000.0, device="cpu",
                      cache_dir=str(tmp_path / "cache"))
    run_dir = tmp_path / "runs" / "s"
    study = run_search(cfg, "s", 3, run_dir, progress=False)
    first = {t.number: t.values for t in study.get_trials(states=(TrialState.COMPLETE,))}
    assert len(study.get_trials(states=FINISHED)) == 3
    complete = [TrialRecord.from_trial(t) for t in study.get_trials(states=(TrialState.COMPLETE,))]
    best = max(r.metrics["srcc"] for r in complete)
    assert best > 0.6, f"best synthetic validation SRCC {best:.3f}"
    for r in complete:
        assert r.params <= get_profile(cfg.profile).caps.params
        assert (run_dir / r.checkpoint).is_file()
        assert len(r.curve) == r.epochs_run

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
    trial = TrialRecord.from_trial(study.trials[-1])
    assert trial.state == expect
    planned = trial.epochs_planned
    if expect == TrialState.PRUNED:
        assert trial.epochs_run == ParetoRungs(tuple(cfg.rung_fractions)).rung_epochs(planned)[0] < planned
        assert trial.rungs.keys() == {0}
    else:
        assert trial.epochs_run == planned


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
        running = [r for r in map(TrialRecord.from_trial,
                                  study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
                   if r.worker]
        if running and study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            pid = int(running[0].worker.rsplit(":", 1)[1])
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
    assert len({TrialRecord.from_trial(t).worker for t in finished}) == 2, "both workers should have run trials"


def test_two_way_split_is_the_plain_grouped_holdout_and_recorded(tmp_path):
    """Later stages recompute the split: it must stay exactly the one the trials were validated on."""
    from search.data import grouped_holdout

    cfg = _cfg(tmp_path)
    objective = Objective(cfg, tmp_path)
    groups = np.repeat([f"p{i}" for i in range(30)], 4)
    train, val, test = study_split(groups, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    expected = grouped_holdout(groups, cfg.val_fraction, seed=cfg.seed)
    assert (train == expected[0]).all() and (val == expected[1]).all() and len(test) == 0
    study = create_study(cfg, "fp", default_storage_url(tmp_path))
    study.optimize(objective, n_trials=1)
    assert TrialRecord.from_trial(study.trials[0]).val_fingerprint == objective.data.val_fingerprint()


def _mos_offset(loss_weights: dict[str, float]) -> float:
    """How far, in MOS standard deviations, the mean prediction of a tiny model that starts 0.6 of one
    off the MOS scale ends from the training MOS mean after a few epochs with `loss_weights`."""
    data = make_synthetic(n_images=48, size=32, seed=0)
    seed_everything(0)
    model = build_model(ArchSpec(InputSpec(32, 32), StemSpec("conv", 8), [StageSpec("mbconv", 16, 1, 2, 3, 2.0)]))
    with torch.no_grad():
        model.output_linear().bias.fill_(0.6)  # in target units: 0.6 MOS standard deviations too high
    train_model(model, data, None, TrainConfig(epochs=4, lr=5e-2, batch_size=8, loss_weights=loss_weights, crop=32))
    mos = data.targets.numpy()
    return abs(float(predict(model, data.images).mean() - mos.mean())) / float(mos.std())


def test_every_loss_preset_brings_predictions_to_the_mos_scale():
    """Correlation losses alone leave the scale free (RMSE, the first tie-break, then suffers): every
    preset must pull an off-scale model back to the MOS mean, which PLCC + rank alone do not."""
    assert _mos_offset({"plcc": 1.0, "rank": 1.0}) > 0.4
    for name, weights in LOSS_PRESETS.items():
        assert _mos_offset(weights) < 0.15, name


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
    trial = TrialRecord.from_trial(study.trials[0])
    train_cfg, flops = trial.recipe["train"], trial.flops
    assert study.trials[0].params["pretrain_share"] == 0.5 and train_cfg["ema_decay"] == 0.9
    assert train_cfg["pretrain_epochs"] >= 1, train_cfg
    n = len(objective.data.train_val(64)[0])
    budget = BudgetModel()
    assert trial.t4_s_planned == pytest.approx(
        budget.pretrain_seconds(flops, n, train_cfg["pretrain_epochs"], cfg.batch_size)
        + budget.train_seconds(flops, n, train_cfg["epochs"], cfg.batch_size))
    assert trial.state == TrialState.COMPLETE and trial.t4_s_planned <= cfg.trial_budget_s


# ------------------------------------------------------------------------ settings and trial records
@pytest.mark.parametrize("setting, value", [
    ("dataset", "imagenet"), ("trial_budget_s", 0.0), ("max_epochs", 0), ("batch_size", 0), ("n_synthetic", 5),
    ("sampler", "grid"), ("early_stop", "median"),
])
def test_bad_settings_are_refused_naming_the_setting_and_value(setting, value):
    with pytest.raises(ValueError, match=f"{setting.split('_')[0]}.*{value}") as err:
        StudyConfig(**{setting: value})
    assert "\n" not in str(err.value)


def test_older_studies_settings_still_resume(tmp_path):
    """Studies stored `early_stop` as a bool: the same settings in today's spelling resume them."""
    url = default_storage_url(tmp_path)
    study = create_study(_cfg(tmp_path), "old", url)
    study.set_user_attr("config", {**study.user_attrs["config"], "early_stop": False})
    create_study(_cfg(tmp_path, early_stop="none"), "old", url)
    assert load_study("old", url)[1].early_stop == "none"


def test_trial_record_round_trips_through_the_storage():
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(1))
    spec = sample_spec(study.ask(), SpaceConfig.tiny(), Caps())
    recipe = Recipe(spec, TrainConfig(lr=0.001, epochs=3, seed=7))
    record = TrialRecord(
        number=0, state=TrialState.COMPLETE, values=[0.5, 1234.0], worker="host:12", recipe=recipe.to_dict(),
        summary="s", params=1234, flops=99, epochs_planned=3,
        t4_s_planned=1.5, val_fingerprint="abc", curve=[0.1, 0.3, 0.5], rungs={0: 0.1, 1: 0.3},
        metrics={"srcc": 0.5}, target_metrics={"mos": {"srcc": 0.5}}, epochs_run=3, wall_s=2.0, t4_s=1.5,
        stopped_early=False, test_metrics={"mos": {"srcc": 0.4}}, test_score=0.4, checkpoint="trials/00000.pt",
        bytes=10)
    fresh = optuna.create_study(directions=["maximize", "minimize"])
    fresh.add_trial(create_trial(state=record.state, values=record.values, user_attrs=record.to_attrs()))
    assert TrialRecord.from_trial(fresh.trials[0]) == record
    assert {"params", "rung0", "rung1", "recipe", "checkpoint"} <= fresh.trials[0].user_attrs.keys()
    trained = record.trained()
    assert trained.spec == spec and trained.train.lr == 0.001 and trained.train.crop == spec.input.crop
    reseeded = Recipe(spec, TrainConfig(lr=0.001, epochs=3, seed=8)).to_dict()
    faster = Recipe(spec, TrainConfig(lr=0.002, epochs=3, seed=7)).to_dict()
    assert record.recipe_key == dataclasses.replace(record, recipe=reseeded).recipe_key
    assert record.recipe_key != dataclasses.replace(record, recipe=faster).recipe_key
    with pytest.raises(TypeError, match="nope"):
        TrialRecord.store(study.ask(), nope=1)


def test_trials_stored_before_recipes_read_as_recipes():
    """Studies stored a trial's spec and TrainConfig apart: they read back as the same recipe."""
    spec = sample_spec(optuna.create_study().ask(), SpaceConfig.tiny(), Caps())
    old = {"spec": spec.to_dict(), "train_config": TrainConfig(lr=0.003, epochs=5).to_dict(), "params": 10}
    study = optuna.create_study()
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=0.5, user_attrs=old))
    record = TrialRecord.from_trial(study.trials[0])
    assert record.spec == spec.to_dict() and record.trained().train.lr == 0.003 and record.trained().train.epochs == 5


# --------------------------------------------------------------------------- every trial counts
def _propose(cfg: StudyConfig):
    """An objective that samples exactly as the study's does but trains nothing (a fast stand-in)."""
    space = space_config(cfg.space)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        recipe, share = sample_trial(trial, cfg, space)
        return recipe.train.lr * 100 + share, float(recipe.spec.stem.width)

    return objective


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_four_workers_propose_distinct_trials(tmp_path, sampler):
    """Four workers (each loads the study and builds its own sampler, as worker processes do) taking
    turns for 8 trials each: 32 distinct parameter sets (seeded alike, they proposed 8 x 4 copies)."""
    cfg = _cfg(tmp_path, sampler=sampler)
    url = default_storage_url(tmp_path)
    create_study(cfg, "w", url)
    workers = [load_study("w", url)[0] for _ in range(4)]
    for _ in range(8):
        for study in workers:
            study.optimize(_propose(cfg), n_trials=1)
    params = {json.dumps(t.params, sort_keys=True) for t in workers[0].trials}
    assert len(workers[0].trials) == 32 and len(params) == 32


def _params(study: optuna.Study) -> list[str]:
    return [json.dumps(t.params, sort_keys=True) for t in study.trials]


TINY = dict(n_synthetic=48, max_epochs=1)


def test_resumed_study_continues_the_sequence_instead_of_repeating_it(tmp_path):
    cfg = _cfg(tmp_path, **TINY)
    run_dir = tmp_path / "runs" / "r"
    first = _params(run_search(cfg, "r", 2, run_dir, progress=False))
    study = run_search(cfg, "r", 4, run_dir, progress=False)
    assert _params(study)[:2] == first and len(set(_params(study))) == 4
    assert [TrialRecord.from_trial(t).counts for t in study.trials] == [True] * 4  # no duplicate to resample


def test_a_duplicate_proposal_is_not_trained_again(tmp_path, monkeypatch, capfd):
    cfg = _cfg(tmp_path, **TINY)
    run_dir = tmp_path / "runs" / "d"
    study = run_search(cfg, "d", 1, run_dir, progress=False)
    study.enqueue_trial(study.trials[0].params)  # as a second worker seeded alike would propose it
    run_search(cfg, "d", 2, run_dir, progress=False)
    records = [TrialRecord.from_trial(t) for t in study.trials]
    assert [r.duplicate_of for r in records] == [None, 0, None]
    assert records[1].state == TrialState.PRUNED and records[1].epochs_run is None and records[1].checkpoint is None
    assert not (run_dir / "trials" / "00001.pt").exists() and records[2].counts

    # a sampler that keeps repeating trained trials: the worker stops instead of looping
    monkeypatch.setattr(workers_module, "MAX_UNTRAINED_IN_A_ROW", 2)
    for _ in range(3):
        study.enqueue_trial(study.trials[2].params)
    run_search(cfg, "d", 3, run_dir, progress=False)
    assert [TrialRecord.from_trial(t).duplicate_of for t in study.trials[3:5]] == [2, 2]
    assert study.trials[5].state == TrialState.WAITING  # the third copy was never taken
    assert "looks exhausted" in capfd.readouterr().err


def test_resume_right_after_a_kill_runs_the_killed_trial_again(tmp_path):
    """The killed worker's trial is failed at once (its process is gone) and retried, instead of
    counting as running until its heartbeat grace period ends (the resume then ran nothing)."""
    cfg = _cfg(tmp_path, **TINY, grace_period=120)
    run_dir = tmp_path / "runs" / "k"
    code = ("import json, sys; from pathlib import Path; from search.study import StudyConfig, run_search; "
            "run_search(StudyConfig(**json.loads(sys.argv[1])), 'k', 20, Path(sys.argv[2]), progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(cfg.to_dict()), str(run_dir)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.DEVNULL)
    victim = _kill_during_a_trial(proc, run_dir, deadline=time.time() + 120)
    start = time.time()
    study = run_search(cfg, "k", victim + 1, run_dir, progress=False)
    assert time.time() - start < cfg.grace_period
    killed, retry = study.trials[victim], study.trials[-1]
    assert killed.state == TrialState.FAIL and retry.state == TrialState.COMPLETE
    assert retry.system_attrs["failed_trial"] == victim
    assert killed.params.items() <= retry.params.items()  # what it had drawn before the kill


def _kill_during_a_trial(proc: subprocess.Popen, run_dir: Path, deadline: float) -> int:
    """SIGKILL `proc` while it runs a trial (stopped first, so the trial cannot finish meanwhile); its number."""
    while time.time() < deadline and proc.poll() is None:
        if (run_dir / "config.json").exists():  # written once the study exists
            study = optuna.load_study(study_name="k", storage=default_storage_url(run_dir))
            if any(TrialRecord.from_trial(t).worker for t in study.get_trials(states=(TrialState.RUNNING,))):
                proc.send_signal(signal.SIGSTOP)
                running = [t for t in study.get_trials(states=(TrialState.RUNNING,))
                           if TrialRecord.from_trial(t).worker]
                if running:
                    proc.kill()
                    proc.wait()
                    return running[0].number
                proc.send_signal(signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError("the worker never ran a trial")


def _agiqa3k(root: Path, prompts: list[str]) -> None:
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(len(prompts)):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / f"img{i}.png")
    rows = [f"img{i}.png,{p},{1 + i % 5}" for i, p in enumerate(prompts)]
    (root / "labels.csv").write_text("\n".join(["name,prompt,mos_quality", *rows]) + "\n")


def test_resuming_with_changed_labels_is_refused(tmp_path):
    root = tmp_path / "agiqa3k"
    _agiqa3k(root, [f"p{i // 4}" for i in range(32)])
    cfg = _cfg(tmp_path, dataset="agiqa3k", root=str(root), max_epochs=1)
    run_dir = tmp_path / "runs" / "lab"
    run_search(cfg, "lab", 1, run_dir, progress=False)
    _agiqa3k(root, [f"p{i % 8}" for i in range(32)])  # the same images, other prompts: another split
    with pytest.raises(ValueError, match="study 'lab' was validated on another split"):
        run_search(cfg, "lab", 2, run_dir, progress=False)
    with pytest.raises(ValueError, match="another split"):
        run_worker(default_storage_url(run_dir), "lab", 2, run_dir, progress=False)


def test_resuming_with_inverted_scores_is_refused(tmp_path):
    """The same images and prompts (so the same split and validation names), every MOS inverted."""
    root = tmp_path / "agiqa3k"
    _agiqa3k(root, [f"p{i // 4}" for i in range(32)])
    cfg = _cfg(tmp_path, dataset="agiqa3k", root=str(root))
    url = default_storage_url(tmp_path / "runs" / "inv")
    check_split(create_study(cfg, "inv", url), StudyData(cfg))
    labels = pd.read_csv(root / "labels.csv")
    labels.assign(mos_quality=6 - labels["mos_quality"]).to_csv(root / "labels.csv", index=False)
    with pytest.raises(ValueError, match=r"study 'inv' was validated on another split \(fingerprint v3:"):
        run_search(cfg, "inv", 1, tmp_path / "runs" / "inv", progress=False)


def test_an_older_studys_unversioned_fingerprint_is_compared_in_its_own_form_then_upgraded(tmp_path):
    root = tmp_path / "agiqa3k"
    _agiqa3k(root, [f"p{i // 4}" for i in range(32)])
    cfg = _cfg(tmp_path, dataset="agiqa3k", root=str(root))
    data, url = StudyData(cfg), default_storage_url(tmp_path)
    old = create_study(cfg, "old", url)
    old.set_user_attr("val_fingerprint", data.val_fingerprint(version=""))
    other = create_study(cfg, "other", url)
    other.set_user_attr("val_fingerprint", "0123456789abcdef")
    check_split(old, data)
    assert load_study("old", url)[0].user_attrs["val_fingerprint"] == data.val_fingerprint()
    assert data.val_fingerprint().startswith("v3:") and data.val_fingerprint(version="") != data.val_fingerprint()
    with pytest.raises(ValueError, match="fingerprint 0123456789abcdef"):
        check_split(other, data)


@pytest.mark.slow
def test_four_worker_processes_train_distinct_trials(tmp_path):
    cfg = _cfg(tmp_path, **TINY)
    study = run_search(cfg, "w4", 8, tmp_path / "runs" / "w4", workers=4, progress=False)
    records = [TrialRecord.from_trial(t) for t in study.get_trials(states=FINISHED)]
    assert len(records) >= 8 and all(r.counts for r in records)
    assert len({r.recipe_key for r in records}) == len(records)

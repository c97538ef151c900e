"""The objective: sample a from-scratch architecture and recipe under the caps, train it on a T4-sized
budget (stopping hopeless trials early), and record everything needed to rebuild it.

Objectives: maximise the profile's validation score, minimise parameters (and optionally FLOPs). Every
trial stores a `TrialRecord`; finished trials also leave a checkpoint in `runs/NAME/trials/`. A proposal
that repeats a finished or running trial's architecture and recipe is not trained again: it ends PRUNED
with `duplicate_of` and does not count, so the worker samples anew; so do proposals over the caps
(`over_cap`) and those that would not train `min_epochs` epochs in the budget even at the narrowest
widths (`over_budget`). A proposal that would get fewer epochs is shrunk (its widths) until they fit,
as the caps shrink one over them (`shrunk` says so). With a time limit (`stop_at`) a running trial
stops after the epoch that passes it, PRUNED with its curve kept and `time_limit` set: it does not count,
and a resume runs it again (`search.study.workers.requeue_cut`).

The study's task kind (`StudyConfig.task`, `search.study.kinds`) trains and scores each trial and says what a
trial samples of its loss: a pairs study trains with `search.train.pairs.train_pairs` (Bradley-Terry on the
training pairs; the score is pair accuracy on the validation pairs), samples no loss preset and plans no
pretraining, since neither applies to pairs.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import optuna
from optuna.trial import TrialState

from search.budget import BudgetModel
from search.checkpoint import save_checkpoint
from search.device import resolve_device
from search.profiles import get_profile
from search.study.data import StudyData
from search.study.early_stop import early_stopping
from search.study.kinds import Data
from search.study.record import FINISHED, TrialRecord
from search.study.settings import StudyConfig
from search.study.stale import worker_id
from search.train.loop import EpochRecord, TrainResult, seed_everything
from search.train.recipe import Recipe, TrainConfig
from search.train.retrain import duration
from search.train.step import TrainingDiverged
from space import (ArchSpec, CapError, Caps, IQANet, SpaceConfig, build_model, count_flops, count_params, sample_spec,
                   shrink_to_fit, spec_summary, train_flops)


def sample_train_config(trial: optuna.Trial, cfg: StudyConfig) -> TrainConfig:
    """The training knobs the search tunes alongside the architecture."""
    return TrainConfig(
        batch_size=cfg.batch_size,
        lr=trial.suggest_float("lr", 5e-4, 5e-3, log=True),
        weight_decay=trial.suggest_float("weight_decay", 1e-3, 1e-1, log=True),
        **cfg.task.sampled_loss(trial),
        ema_decay=trial.suggest_categorical("ema_decay", list(cfg.ema_decays)),
        eval_views=cfg.eval_views,
        seed=cfg.seed + trial.number,
    )


def sample_trial(trial: optuna.Trial, cfg: StudyConfig, space: SpaceConfig,
                 caps: Caps | None = None) -> tuple[Recipe, float]:
    """Everything the sampler chooses for a trial: the recipe (its spec within `caps`, by default the
    profile's, else CapError; its training settings before the schedule is planned) and the pretraining
    share of the budget."""
    caps = caps or get_profile(cfg.profile).caps
    spec = sample_spec(trial, space, caps, num_outputs=len(cfg.targets) if cfg.targets else 1)
    caps.check(spec, "sampled spec")
    train_cfg = sample_train_config(trial, cfg)
    return Recipe(spec, train_cfg), trial.suggest_categorical("pretrain_share", list(cfg.pretrain_shares))


def plan_schedule(budget: BudgetModel, budget_s: float, pretrain_share: float, max_epochs: int, flops: int,
                  n_images: int, batch_size: int) -> tuple[int, int]:
    """(pretraining epochs, MOS epochs) for a trial of `budget_s` T4 seconds. The trial would spend
    `budget_s`, or less when `max_epochs` MOS epochs cost less; `pretrain_share` of that, in whole
    pretraining epochs (none when not even one fits), goes to pretraining and the rest to MOS epochs,
    so pretraining never makes a trial longer."""
    spend = min(budget_s, budget.train_seconds(flops, n_images, max_epochs, batch_size))
    pretrain_epochs = int(pretrain_share * spend // budget.pretrain_seconds(flops, n_images, 1, batch_size))
    left = spend - budget.pretrain_seconds(flops, n_images, pretrain_epochs, batch_size)
    return pretrain_epochs, min(max_epochs, budget.epochs_for(left, flops, n_images, batch_size))


def plan_trial(recipe: Recipe, pretrain_share: float, cfg: StudyConfig, budget: BudgetModel,
               n_train: int) -> tuple[Recipe, str | None]:
    """(`recipe` with its schedule planned from the study's trial budget, what was shrunk or None). A
    proposal whose budget buys fewer than `min_epochs` epochs (or `max_epochs`, if fewer) over `n_train`
    items has its widths shrunk until it buys them, as the caps shrink one over them; CapError when not
    even the narrowest version does (it is not trained). A pretraining share is then taken from those
    epochs as `plan_schedule` says (with shares up to 0.2, at least `min_epochs` MOS epochs remain)."""
    floor = min(cfg.min_epochs, cfg.max_epochs)
    per_item = cfg.task.images_per_item
    n_images, batch_size = per_item * n_train, per_item * recipe.train.batch_size

    def schedule(spec: ArchSpec) -> tuple[int, int]:
        return plan_schedule(budget, cfg.trial_budget_s, pretrain_share, cfg.max_epochs, train_flops(spec),
                             n_images, batch_size)

    def affords(spec: ArchSpec) -> bool:  # the budget itself, before a pretraining share takes some of it
        return budget.epochs_for(cfg.trial_budget_s, train_flops(spec), n_images, batch_size) >= floor

    what = f"{floor} epochs in the trial budget of {cfg.trial_budget_s:g} T4 s"
    spec = shrink_to_fit(recipe.spec, affords, what)
    shrunk = None if spec == recipe.spec else (f"widths shrunk from {count_params(recipe.spec):,} to "
                                               f"{count_params(spec):,} params to fit {what}")
    pretrain_epochs, epochs = schedule(spec)
    return Recipe(spec, replace(recipe.train, pretrain_epochs=pretrain_epochs, epochs=epochs)), shrunk


def duplicate_of(trial: optuna.Trial, record: TrialRecord) -> int | None:
    """The earliest finished or running trial numbered below `trial` that trains what `record` plans (one the
    time limit cut is not: it is run again)."""
    for other in trial.study.get_trials(deepcopy=False, states=FINISHED + (TrialState.RUNNING,)):
        earlier = TrialRecord.from_trial(other)
        if (other.number < trial.number and earlier.duplicate_of is None and not earlier.time_limit
                and earlier.recipe_key == record.recipe_key):
            return other.number
    return None


class Objective:
    """Trains one sampled architecture per call and returns (score, params[, flops])."""

    def __init__(self, cfg: StudyConfig, run_dir: Path, data: StudyData | None = None, stop_at: float | None = None,
                 progress: bool = False):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.profile = get_profile(cfg.profile)
        self.space = cfg.search_space()
        self.budget = BudgetModel(efficiency=cfg.t4_efficiency)
        self.device = resolve_device(cfg.device)
        self.data = data or StudyData(cfg, progress=progress)
        self.status: Callable[[str], None] = lambda text: None
        """Where the running trial says how its training goes, as it starts and after each epoch (the
        worker's progress bar)."""
        self.early_stopping = early_stopping(cfg.early_stop, cfg.rung_fractions, cfg.dominators, cfg.margin)
        self.task = cfg.task
        self.stop_at = stop_at
        """`time.time()` after which no epoch starts (the study's time limit); None: no limit."""
        self.last_trial: int | None = None
        """The number of the trial this objective ran last."""
        self.untrained_in_a_row = 0
        """Consecutive proposals of this worker that were not trained (over the caps or the budget, or
        repeating an earlier trial): the worker stops at a bound."""

    def __call__(self, trial: optuna.Trial) -> tuple[float, ...]:
        self.last_trial = trial.number
        TrialRecord.store(trial, worker=worker_id())
        try:
            recipe, pretrain_share = sample_trial(trial, self.cfg, self.space)
        except CapError as err:  # nothing was built: record why and move on
            return self._untrained(trial, over_cap=str(err))
        train_set, val_set = self.data.train_val(recipe.spec.input.resize)
        try:
            plan = self._plan(trial, recipe, pretrain_share, len(train_set))
        except CapError as err:
            return self._untrained(trial, over_budget=str(err))
        TrialRecord.store(trial, **plan.to_attrs())
        original = duplicate_of(trial, plan)
        if original is not None:
            return self._untrained(trial, duplicate_of=original)
        self.untrained_in_a_row = 0
        recipe = plan.trained()
        model, result = self._train(trial, recipe, plan, train_set, val_set)
        self._finish(trial, model, recipe, result.metrics, self.task.target_names(train_set))
        score = self.profile.score(result.target_metrics)
        return (score, float(plan.params)) + ((float(plan.flops),) if self.cfg.flops_objective else ())

    def _untrained(self, trial: optuna.Trial, **why) -> tuple[float, ...]:
        """Record why a proposal is not trained (over the caps, over the budget, a duplicate) and end it
        PRUNED; it does not count towards the study's target."""
        self.untrained_in_a_row += 1
        TrialRecord.store(trial, **why)
        reason = next(iter(why.values()))
        raise optuna.TrialPruned(f"same architecture and recipe as trial {reason}: not trained again"
                                 if "duplicate_of" in why else str(reason))

    def _plan(self, trial: optuna.Trial, recipe: Recipe, pretrain_share: float, n_train: int) -> TrialRecord:
        """The record of what the trial will train: `recipe` planned by `plan_trial` (CapError when not
        even its narrowest version fits the budget)."""
        planned, shrunk = plan_trial(recipe, pretrain_share, self.cfg, self.budget, n_train)
        spec = planned.spec
        return TrialRecord(
            number=trial.number, state=TrialState.RUNNING, recipe=planned.to_dict(), summary=spec_summary(spec),
            params=count_params(spec), flops=count_flops(spec), epochs_planned=planned.train.epochs,
            t4_s_planned=self._t4_seconds(spec, n_train, planned.train, planned.train.epochs),
            val_fingerprint=self.data.val_fingerprint(), shrunk=shrunk)

    def _t4_seconds(self, spec: ArchSpec, n_train: int, train_cfg: TrainConfig, epochs: int) -> float:
        """T4 seconds of `epochs` epochs over `n_train` items (a pair step scores both images of its pairs)."""
        per_item = self.task.images_per_item
        return self.budget.train_seconds(train_flops(spec), per_item * n_train, epochs, per_item * train_cfg.batch_size,
                                         train_cfg.pretrain_epochs)

    def _train(self, trial: optuna.Trial, recipe: Recipe, plan: TrialRecord, train_set: Data,
               val_set: Data) -> tuple[IQANet, TrainResult]:
        """Train from scratch (seeded: same seed, same trial) and record the results; PRUNED when training
        diverged, or the trial was stopped early or by the study's time limit."""
        seed_everything(recipe.train.seed)  # the initial weights too
        model = build_model(recipe.spec)
        self.status(f"trial {trial.number}: training, {recipe.train.epochs} epochs planned")
        try:
            result = self.task.train(model, train_set, val_set, recipe.train, device=self.device,
                                     on_epoch=self._on_epoch(trial, plan.params, recipe.train.epochs))
        except TrainingDiverged as err:  # a recipe that blows up is a finished, hopeless trial
            TrialRecord.store(trial, diverged=str(err))
            raise optuna.TrialPruned(f"training diverged: {err}") from None
        TrialRecord.store(trial, metrics={k: float(v) for k, v in result.metrics.items()},
                          target_metrics=result.target_metrics, epochs_run=result.epochs_run, wall_s=result.seconds,
                          t4_s=self._t4_seconds(recipe.spec, len(train_set), recipe.train, result.epochs_run),
                          stopped_early=result.stopped_early,
                          time_limit=(result.stopped_early and self.time_up()) or None)
        if result.stopped_early:
            raise optuna.TrialPruned(f"stopped at epoch {result.epochs_run}: " + (
                "the study's time limit" if self.time_up() else "dominated at its rung"))
        return model, result

    def _finish(self, trial: optuna.Trial, model: IQANet, recipe: Recipe, metrics: dict[str, float],
                target_names: list[str]) -> None:
        """Score the held-out test prompts (if any) once, and save the checkpoint."""
        test_set = self.data.test(recipe.spec.input.resize)
        if test_set is not None:
            test = self.task.evaluate(model, test_set, recipe.spec.input.crop, recipe.train.eval_views, self.device)
            TrialRecord.store(trial, test_metrics=test, test_score=self.profile.score(test))
        ckpt = save_checkpoint(self.run_dir / "trials" / f"{trial.number:05d}.pt", model.cpu(), recipe.spec,
                               target_names=target_names, metrics=metrics, train_config=recipe.train.to_dict(),
                               trial=trial.number)
        TrialRecord.store(trial, checkpoint=str(ckpt.relative_to(self.run_dir)), bytes=ckpt.stat().st_size)

    def time_up(self) -> bool:
        """Whether the study's time limit (`stop_at`) has passed."""
        return self.stop_at is not None and time.time() >= self.stop_at

    def _epoch_status(self, number: int, epoch: int, planned: int, score: float, started: float) -> str:
        """E.g. "trial 3: epoch 5/20, score 0.512, ~2 min left": the epochs to go at the pace so far since
        `started` (`time.time()`), or the time until the study's time limit when that comes first."""
        now = time.time()
        left = (now - started) / epoch * (planned - epoch)
        if self.stop_at is not None:
            left = max(0.0, min(left, self.stop_at - now))
        return f"trial {number}: epoch {epoch}/{planned}, score {score:.3f}, ~{duration(left)} left"

    def _on_epoch(self, trial: optuna.Trial, params: int, planned: int) -> Callable[[EpochRecord], bool]:
        rungs = self.early_stopping.rung_epochs(planned)
        curve: list[float] = []
        started = time.time()

        def on_epoch(record: EpochRecord) -> bool:
            score = self.profile.score(record.target_metrics)
            curve.append(score)
            TrialRecord.store(trial, curve=curve)
            self.status(self._epoch_status(trial.number, record.epoch, planned, score, started))
            if self.time_up():
                return True
            if record.epoch not in rungs:
                return False
            rung = rungs.index(record.epoch)
            TrialRecord.store(trial, rungs={rung: score})
            peers = [TrialRecord.from_trial(t) for t in trial.study.get_trials(
                deepcopy=False, states=FINISHED + (TrialState.RUNNING,)) if t.number != trial.number]
            return self.early_stopping.should_stop(rung, score, params, peers)

        return on_epoch

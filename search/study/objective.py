"""The objective: sample a from-scratch architecture and recipe under the caps, train it on a T4-sized
budget (stopping hopeless trials early), and record everything needed to rebuild it.

Objectives: maximise the profile's validation score, minimise parameters (and optionally FLOPs). Every
trial stores a `TrialRecord`; finished trials also leave a checkpoint in `runs/NAME/trials/`. A proposal
that repeats a finished or running trial's architecture and recipe is not trained again: it ends PRUNED
with `duplicate_of` and does not count, so the worker samples anew.

A pairs study (`StudyConfig.pairs`) trains each trial with `search.train.pairs.train_pairs` (Bradley-Terry on
the training pairs; the score is pair accuracy on the validation pairs): no loss preset is sampled and
no pretraining is planned, since neither applies to pairs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import optuna
from optuna.trial import TrialState

from search.budget import BudgetModel
from search.checkpoint import save_checkpoint
from search.data import ImageSet
from search.data.pairs import PairSet
from search.device import resolve_device
from search.train.pairs import PREFERENCE, evaluate_pairs, train_pairs
from search.profiles import get_profile
from search.study.data import StudyData
from search.study.early_stop import early_stopping
from search.study.record import FINISHED, TrialRecord
from search.study.settings import LOSS_PRESETS, StudyConfig
from search.study.stale import worker_id
from search.train.recipe import TrainConfig
from search.train.step import TrainingDiverged
from search.train.loop import EpochRecord, TrainResult, evaluate, seed_everything, train_model
from space import ArchSpec, CapError, IQANet, SpaceConfig, build_model, count_flops, count_params, sample_spec, spec_summary, train_flops


def sample_train_config(trial: optuna.Trial, cfg: StudyConfig) -> TrainConfig:
    """The training knobs the search tunes alongside the architecture."""
    return TrainConfig(
        batch_size=cfg.batch_size,
        lr=trial.suggest_float("lr", 5e-4, 5e-3, log=True),
        weight_decay=trial.suggest_float("weight_decay", 1e-3, 1e-1, log=True),
        **_sampled_loss(trial, cfg),
        ema_decay=trial.suggest_categorical("ema_decay", list(cfg.ema_decays)),
        eval_views=cfg.eval_views,
        seed=cfg.seed + trial.number,
    )


def _sampled_loss(trial: optuna.Trial, cfg: StudyConfig) -> dict:
    """A MOS trial's loss preset. A pairs trial samples none: it trains with the Bradley-Terry loss
    (`search.train.pairs`), and `loss_weights` keeps its default, which pair training does not read."""
    if cfg.pairs:
        return {}
    return {"loss_weights": dict(LOSS_PRESETS[trial.suggest_categorical("loss", list(LOSS_PRESETS))])}


def sample_trial(trial: optuna.Trial, cfg: StudyConfig, space: SpaceConfig) -> tuple[ArchSpec, TrainConfig, float]:
    """Everything the sampler chooses for a trial: the spec (within the profile's caps, else CapError),
    the training settings and the pretraining share of the budget."""
    caps = get_profile(cfg.profile).caps
    spec = sample_spec(trial, space, caps, num_outputs=len(cfg.targets) if cfg.targets else 1)
    caps.check(spec, "sampled spec")
    train_cfg = sample_train_config(trial, cfg)
    return spec, train_cfg, trial.suggest_categorical("pretrain_share", list(cfg.pretrain_shares))


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


def duplicate_of(trial: optuna.Trial, record: TrialRecord) -> int | None:
    """The earliest finished or running trial numbered below `trial` that trains what `record` plans."""
    for other in trial.study.get_trials(deepcopy=False, states=FINISHED + (TrialState.RUNNING,)):
        earlier = TrialRecord.from_trial(other)
        if other.number < trial.number and earlier.duplicate_of is None and earlier.recipe_key == record.recipe_key:
            return other.number
    return None


class Objective:
    """Trains one sampled architecture per call and returns (score, params[, flops])."""

    def __init__(self, cfg: StudyConfig, run_dir: Path, data: StudyData | None = None):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.profile = get_profile(cfg.profile)
        self.space = cfg.search_space()
        self.budget = BudgetModel(efficiency=cfg.t4_efficiency)
        self.device = resolve_device(cfg.device)
        self.data = data or StudyData(cfg)
        self.early_stopping = early_stopping(cfg.early_stop, cfg.rung_fractions, cfg.dominators, cfg.margin)
        self.duplicates_in_a_row = 0
        """Consecutive proposals of this worker that repeated an earlier trial (the worker stops at a bound)."""

    def __call__(self, trial: optuna.Trial) -> tuple[float, ...]:
        TrialRecord.store(trial, worker=worker_id())
        try:
            spec, train_cfg, pretrain_share = sample_trial(trial, self.cfg, self.space)
        except CapError as err:  # nothing was built: record why and move on
            TrialRecord.store(trial, over_cap=str(err))
            raise optuna.TrialPruned(str(err)) from None
        train_set, val_set = self.data.train_val(spec.input.resize)
        plan = self._plan(trial, spec, train_cfg, pretrain_share, len(train_set))
        TrialRecord.store(trial, **plan.to_attrs())
        original = duplicate_of(trial, plan)
        self.duplicates_in_a_row = 0 if original is None else self.duplicates_in_a_row + 1
        if original is not None:
            TrialRecord.store(trial, duplicate_of=original)
            raise optuna.TrialPruned(f"same architecture and recipe as trial {original}: not trained again")
        model, result = self._train(trial, spec, train_cfg, plan, train_set, val_set)
        self._finish(trial, model, spec, train_cfg, result.metrics,
                     [PREFERENCE] if isinstance(train_set, PairSet) else train_set.target_names)
        score = self.profile.score(result.target_metrics)
        return (score, float(plan.params)) + ((float(plan.flops),) if self.cfg.flops_objective else ())

    def _plan(self, trial: optuna.Trial, spec: ArchSpec, train_cfg: TrainConfig, pretrain_share: float,
              n_train: int) -> TrialRecord:
        """Fill in `train_cfg`'s schedule from the budget; the record of what the trial will train."""
        flops, step_flops = count_flops(spec), train_flops(spec)
        train_cfg.pretrain_epochs, train_cfg.epochs = plan_schedule(
            self.budget, self.cfg.trial_budget_s, pretrain_share, self.cfg.max_epochs, step_flops,
            *self._load(n_train, train_cfg.batch_size))
        train_cfg.crop = spec.input.crop
        return TrialRecord(
            number=trial.number, state=TrialState.RUNNING, spec=spec.to_dict(), summary=spec_summary(spec),
            params=count_params(spec), flops=flops, train_config=train_cfg.to_dict(), epochs_planned=train_cfg.epochs,
            t4_s_planned=self._t4_seconds(step_flops, n_train, train_cfg, train_cfg.epochs),
            val_fingerprint=self.data.val_fingerprint())

    def _t4_seconds(self, flops: int, n_train: int, train_cfg: TrainConfig, epochs: int) -> float:
        n_images, batch_size = self._load(n_train, train_cfg.batch_size)
        return self.budget.train_seconds(flops, n_images, epochs, batch_size, train_cfg.pretrain_epochs)

    def _load(self, n_train: int, batch_size: int) -> tuple[int, int]:
        """(images per epoch, images per step) as the budget model counts them for `n_train` training
        items: a pair step scores both images of each of its pairs."""
        return (2 * n_train, 2 * batch_size) if self.cfg.pairs else (n_train, batch_size)

    def _train(self, trial: optuna.Trial, spec: ArchSpec, train_cfg: TrainConfig, plan: TrialRecord,
               train_set: ImageSet | PairSet, val_set: ImageSet | PairSet) -> tuple[IQANet, TrainResult]:
        """Train from scratch (seeded: same seed, same trial) and record the results; PRUNED when training
        diverged or the trial was stopped early."""
        seed_everything(train_cfg.seed)  # the initial weights too
        model = build_model(spec)
        train = train_pairs if isinstance(train_set, PairSet) else train_model
        try:
            result = train(model, train_set, val_set, train_cfg, device=self.device,
                           on_epoch=self._on_epoch(trial, plan.params, train_cfg.epochs))
        except TrainingDiverged as err:  # a recipe that blows up is a finished, hopeless trial
            TrialRecord.store(trial, diverged=str(err))
            raise optuna.TrialPruned(f"training diverged: {err}") from None
        TrialRecord.store(trial, metrics={k: float(v) for k, v in result.metrics.items()},
                          target_metrics=result.target_metrics, epochs_run=result.epochs_run, wall_s=result.seconds,
                          t4_s=self._t4_seconds(train_flops(spec), len(train_set), train_cfg, result.epochs_run),
                          stopped_early=result.stopped_early)
        if result.stopped_early:
            raise optuna.TrialPruned(f"stopped at epoch {result.epochs_run}: dominated at its rung")
        return model, result

    def _finish(self, trial: optuna.Trial, model: IQANet, spec: ArchSpec, train_cfg: TrainConfig,
                metrics: dict[str, float], target_names: list[str]) -> None:
        """Score the held-out test prompts (if any) once, and save the checkpoint."""
        test_set = self.data.test(spec.input.resize)
        if test_set is not None:
            score = evaluate_pairs if isinstance(test_set, PairSet) else evaluate
            test = score(model, test_set, spec.input.crop, train_cfg.eval_views, device=self.device)
            TrialRecord.store(trial, test_metrics=test, test_score=self.profile.score(test))
        ckpt = save_checkpoint(self.run_dir / "trials" / f"{trial.number:05d}.pt", model.cpu(), spec,
                               target_names=target_names, metrics=metrics, train_config=train_cfg.to_dict(),
                               trial=trial.number)
        TrialRecord.store(trial, checkpoint=str(ckpt.relative_to(self.run_dir)), bytes=ckpt.stat().st_size)

    def _on_epoch(self, trial: optuna.Trial, params: int, planned: int) -> Callable[[EpochRecord], bool]:
        rungs = self.early_stopping.rung_epochs(planned)
        curve: list[float] = []

        def on_epoch(record: EpochRecord) -> bool:
            score = self.profile.score(record.target_metrics)
            curve.append(score)
            TrialRecord.store(trial, curve=curve)
            if record.epoch not in rungs:
                return False
            rung = rungs.index(record.epoch)
            TrialRecord.store(trial, rungs={rung: score})
            peers = [TrialRecord.from_trial(t) for t in trial.study.get_trials(
                deepcopy=False, states=FINISHED + (TrialState.RUNNING,)) if t.number != trial.number]
            return self.early_stopping.should_stop(rung, score, params, peers)

        return on_epoch

"""The Optuna study: sample a from-scratch architecture under the cap, train it on a T4-sized budget,
stop hopeless trials early, and record everything needed to rebuild it.

Objectives: maximise the profile's validation score, minimise parameters (and optionally FLOPs).
Every trial stores its spec, train config, counts, per-epoch curve, wall time and estimated T4 time as
user attributes; finished trials also leave a checkpoint in `runs/NAME/trials/`.

Early stopping: Optuna's pruners do not work in multi-objective studies, so the study prunes on its
own rungs. At fixed fractions of a trial's planned schedule (its "rungs") the trial's validation score
is stored; a trial stops when at least `dominators` other trials that are no larger (parameters) already
scored higher at the same rung by more than `margin`. Comparing at the same fraction of each trial's
own schedule keeps cosine schedules of different lengths comparable, and comparing only with
no-larger trials keeps small models (the cheap end of the Pareto front) from being judged against
big ones. A stopped trial ends PRUNED with its partial curve kept.
"""
from __future__ import annotations

import gc
import hashlib
import json
import multiprocessing
import os
import socket
import sqlite3
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
import optuna
import torch
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm

from search.budget import BudgetModel
from search.checkpoint import save_checkpoint
from search.data import ImageSet, grouped_holdout, load_imageset
from search.device import default_workers, resolve_device, worker_device
from search.profiles import get_profile
from search.train import EpochRecord, TrainConfig, TrainingDiverged, evaluate, seed_everything, train_model
from space import CapError, SpaceConfig, build_model, count_flops, count_params, sample_spec, spec_summary

LOSS_PRESETS: dict[str, dict[str, float]] = {
    "mse": {"mse": 1.0},
    "mse+plcc": {"mse": 1.0, "plcc": 1.0},
    "mse+rank": {"mse": 1.0, "rank": 1.0},
    "mse+plcc+rank": {"mse": 1.0, "plcc": 1.0, "rank": 1.0},
    "mse+nin": {"mse": 1.0, "nin": 1.0},
}
"""Every preset keeps an MSE term: PLCC and rank losses ignore the scale and offset of predictions, and
without it trials scored well on correlation but predicted MOS off by 1.4-1.7 RMSE (the challenge breaks
ties on RMSE)."""
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# Settings that may differ between the command that created a study and one that resumes or joins it.
LOCAL_SETTINGS = ("root", "device", "cache_dir")


@dataclass
class StudyConfig:
    """Everything a worker needs to run trials of a study; stored in the study so workers can join."""

    dataset: str = "synthetic"
    root: str | None = None
    targets: list[str] | None = None
    n_synthetic: int = 1200
    profile: str = "icme2026-aigc"
    """Challenge rules (search.profiles); its targets and split fill the settings left as None."""
    space: str = "default"
    """Search-space preset: "default" (224-384 px), "small" (128-160 px) or "tiny" (64 px synthetic demo, tests)."""
    val_fraction: float | None = None
    test_fraction: float | None = None
    """Prompts held out of the search entirely; each finished trial is scored on them once."""
    seed: int = 0
    trial_budget_s: float = 300.0
    """Training budget of one trial, in T4 seconds (see search.budget)."""
    max_epochs: int = 60
    batch_size: int = 32
    pretrain_shares: list[float] = field(default_factory=lambda: [0.0, 0.2])
    """Shares of a trial's training time that may go to self-supervised pretraining
    (`TrainConfig.pretrain_epochs`, see `plan_schedule`); the sampler picks one per trial."""
    ema_decays: list[float] = field(default_factory=lambda: [0.0, 0.998])
    """Weight-averaging decays the sampler picks from (0 = off)."""
    eval_views: int = 1
    sampler: str = "tpe"
    flops_objective: bool = False
    early_stop: bool = True
    rung_fractions: list[float] = field(default_factory=lambda: [0.25, 0.5])
    dominators: int = 3
    margin: float = 0.01
    t4_efficiency: float = BudgetModel.efficiency
    heartbeat_interval: int = 20
    grace_period: int = 60
    max_retry: int = 2
    device: str = "auto"
    cache_dir: str = ".cache/images"

    def __post_init__(self) -> None:
        profile = get_profile(self.profile)
        if self.targets is None and profile.targets is not None:
            self.targets = list(profile.targets)
        self.val_fraction = profile.val_fraction if self.val_fraction is None else self.val_fraction
        self.test_fraction = profile.test_fraction if self.test_fraction is None else self.test_fraction
        space_config(self.space)
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose from {', '.join(SAMPLERS)}")
        if not (0 < self.val_fraction < 1 and 0 <= self.test_fraction < 1 and self.val_fraction + self.test_fraction < 1):
            raise ValueError(f"need 0 < val_fraction, 0 <= test_fraction and their sum < 1; "
                             f"got {self.val_fraction} and {self.test_fraction}")
        if not self.pretrain_shares or any(not 0 <= f < 1 for f in self.pretrain_shares):
            raise ValueError(f"pretrain_shares must be a non-empty list of values in [0, 1), got {self.pretrain_shares}")
        if not self.ema_decays or any(not 0 <= d < 1 for d in self.ema_decays):
            raise ValueError(f"ema_decays must be a non-empty list of values in [0, 1), got {self.ema_decays}")
        if any(not 0 < f < 1 for f in self.rung_fractions):
            raise ValueError(f"rung_fractions must lie in (0, 1), got {self.rung_fractions}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "StudyConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown study settings: {', '.join(unknown)}")
        return cls(**data)


SPACE_PRESETS: dict[str, Callable[[], SpaceConfig]] = {
    "default": SpaceConfig, "small": SpaceConfig.small, "tiny": SpaceConfig.tiny,
}


def space_config(name: str) -> SpaceConfig:
    """The search-space preset called `name`."""
    if name not in SPACE_PRESETS:
        raise ValueError(f"unknown space preset {name!r}; choose from {', '.join(SPACE_PRESETS)}")
    return SPACE_PRESETS[name]()


SAMPLERS: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed, n_startup_trials=8, multivariate=True, group=True),
    "nsga2": lambda seed: optuna.samplers.NSGAIISampler(seed=seed, population_size=16),
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
}


# ----------------------------------------------------------------------------------------- storage
def default_storage_url(run_dir: Path) -> str:
    return f"sqlite:///{(run_dir / 'study.db').resolve()}"


def open_storage(url: str, cfg: StudyConfig | None = None) -> RDBStorage:
    """An RDB storage with heartbeats (a killed worker's trial turns FAIL and is retried).

    SQLite copes with several local worker processes once it is in WAL mode with a long busy timeout:
    writers then wait for each other instead of failing with "database is locked".
    """
    cfg = cfg or StudyConfig()
    engine_kwargs: dict = {}
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path, timeout=300) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
        engine_kwargs = {"connect_args": {"timeout": 300}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    return RDBStorage(
        url,
        engine_kwargs=engine_kwargs,
        heartbeat_interval=cfg.heartbeat_interval,
        grace_period=cfg.grace_period,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=cfg.max_retry),
    )


def create_study(cfg: StudyConfig, name: str, storage_url: str) -> optuna.Study:
    """Create the study, or load it when it exists and was made with the same settings."""
    storage = open_storage(storage_url, cfg)
    directions = ["maximize", "minimize"] + (["minimize"] if cfg.flops_objective else [])
    study = optuna.create_study(
        study_name=name, storage=storage, directions=directions,
        sampler=SAMPLERS[cfg.sampler](cfg.seed), load_if_exists=True,
    )
    stored = study.user_attrs.get("config")
    if stored is None:
        study.set_user_attr("config", cfg.to_dict())
        study.set_metric_names([get_profile(cfg.profile).score_name, "params"] + (["flops"] if cfg.flops_objective else []))
        return study
    differing = [k for k, v in cfg.to_dict().items() if k not in LOCAL_SETTINGS and stored.get(k) != v]
    if differing:
        detail = ", ".join(f"{k}: stored {stored.get(k)!r}, given {getattr(cfg, k)!r}" for k in differing)
        raise ValueError(f"study {name!r} exists with other settings ({detail}); "
                         "resume with the same settings or choose a new --study name")
    return study


def load_study(name: str, storage_url: str, overrides: dict | None = None) -> tuple[optuna.Study, StudyConfig]:
    """Join an existing study: its settings come from the storage (local paths may be overridden)."""
    probe = optuna.load_study(study_name=name, storage=storage_url)
    if "config" not in probe.user_attrs:
        raise ValueError(f"study {name!r} in {storage_url} was not created by run_search.py (no stored config)")
    data = dict(probe.user_attrs["config"])
    data.update({k: v for k, v in (overrides or {}).items() if k in LOCAL_SETTINGS and v is not None})
    cfg = StudyConfig.from_dict(data)
    study = optuna.load_study(study_name=name, storage=open_storage(storage_url, cfg), sampler=SAMPLERS[cfg.sampler](cfg.seed))
    return study, cfg


# ---------------------------------------------------------------------------------- early stopping
def rung_epochs(planned_epochs: int, fractions: list[float]) -> list[int]:
    """Epochs (1-based) at which a trial planned for `planned_epochs` is compared with its peers."""
    rungs = sorted({max(1, round(f * planned_epochs)) for f in fractions})
    return [r for r in rungs if r < planned_epochs]


def should_stop(score: float, params: int, rung: int, peers: list[FrozenTrial], dominators: int, margin: float) -> bool:
    """True when at least `dominators` no-larger peers beat `score` at the same rung by `margin`."""
    key = f"rung{rung}"
    better = sum(
        1 for t in peers
        if key in t.user_attrs and t.user_attrs.get("params", float("inf")) <= params
        and t.user_attrs[key] > score + margin
    )
    return better >= dominators


# -------------------------------------------------------------------------------------- objective
def sample_train_config(trial: optuna.Trial, cfg: StudyConfig) -> TrainConfig:
    """The training knobs the search tunes alongside the architecture."""
    return TrainConfig(
        batch_size=cfg.batch_size,
        lr=trial.suggest_float("lr", 5e-4, 5e-3, log=True),
        weight_decay=trial.suggest_float("weight_decay", 1e-3, 1e-1, log=True),
        loss_weights=dict(LOSS_PRESETS[trial.suggest_categorical("loss", list(LOSS_PRESETS))]),
        ema_decay=trial.suggest_categorical("ema_decay", list(cfg.ema_decays)),
        eval_views=cfg.eval_views,
        seed=cfg.seed + trial.number,
    )


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


class Objective:
    """Trains one sampled architecture per call and returns (score, params[, flops])."""

    def __init__(self, cfg: StudyConfig, run_dir: Path):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.profile = get_profile(cfg.profile)
        self.space = space_config(cfg.space)
        self.budget = BudgetModel(efficiency=cfg.t4_efficiency)
        self.device = resolve_device(cfg.device)
        self.num_outputs = len(cfg.targets) if cfg.targets else 1
        self._data: dict[int, ImageSet] = {}
        self._split: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def split(self, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(train, val, test) indices by prompt group; test is empty unless test_fraction > 0."""
        cfg = self.cfg
        if not cfg.test_fraction:
            train, val = grouped_holdout(groups, cfg.val_fraction, seed=cfg.seed)
            return train, val, np.zeros(0, dtype=np.int64)
        rest, test = grouped_holdout(groups, cfg.test_fraction, seed=cfg.seed)
        train, val = grouped_holdout(groups[rest], cfg.val_fraction / (1 - cfg.test_fraction), seed=cfg.seed + 1)
        return rest[train], rest[val], test

    def val_fingerprint(self, size: int) -> str:
        """A short hash of the validation images' names: later stages check they score on the same split."""
        _, val = self.data(size)
        return hashlib.sha256("\n".join(sorted(val.names)).encode()).hexdigest()[:16]

    def test_set(self, size: int) -> ImageSet | None:
        """The held-out test prompts at `size` (None without a test share)."""
        self.data(size)
        return self._data[size].subset(self._split[2]) if len(self._split[2]) else None

    def data(self, size: int) -> tuple[ImageSet, ImageSet]:
        """Train and validation sets at `size`, decoded once per process and split by group."""
        if size not in self._data:
            self._data[size] = load_imageset(
                self.cfg.dataset, self.cfg.root, size=size, cache_dir=Path(self.cfg.cache_dir),
                targets=self.cfg.targets, seed=self.cfg.seed, n_images=self.cfg.n_synthetic, progress=False,
            )
        images = self._data[size]
        if self._split is None:
            self._split = self.split(images.groups)
        train_idx, val_idx, _ = self._split
        return images.subset(train_idx), images.subset(val_idx)

    def __call__(self, trial: optuna.Trial) -> tuple[float, ...]:
        cfg, caps = self.cfg, self.profile.caps
        try:
            spec = sample_spec(trial, self.space, caps, num_outputs=self.num_outputs)
        except CapError as err:  # nothing was built: record why and move on
            trial.set_user_attr("over_cap", str(err))
            raise optuna.TrialPruned(str(err)) from None
        train_cfg = sample_train_config(trial, cfg)
        params, flops = count_params(spec), count_flops(spec)
        if params > caps.params or (caps.flops is not None and flops > caps.flops):
            raise RuntimeError(f"sampler returned an over-cap spec ({params} params, {flops} FLOPs): refusing to train")
        train_set, val_set = self.data(spec.input.resize)
        train_cfg.pretrain_epochs, train_cfg.epochs = plan_schedule(
            self.budget, cfg.trial_budget_s, trial.suggest_categorical("pretrain_share", list(cfg.pretrain_shares)),
            cfg.max_epochs, flops, len(train_set), train_cfg.batch_size)

        def t4_seconds(epochs: int) -> float:
            return self.budget.train_seconds(flops, len(train_set), epochs, train_cfg.batch_size,
                                             train_cfg.pretrain_epochs)

        train_cfg.crop = spec.input.crop
        for key, value in {
            "spec": spec.to_dict(), "summary": spec_summary(spec), "params": params, "flops": flops,
            "train_config": train_cfg.to_dict(), "epochs_planned": train_cfg.epochs,
            "t4_s_planned": t4_seconds(train_cfg.epochs), "worker": f"{socket.gethostname()}:{os.getpid()}",
            "val_fingerprint": self.val_fingerprint(spec.input.resize),
        }.items():
            trial.set_user_attr(key, value)

        seed_everything(train_cfg.seed)  # the initial weights too: same seed, same trial
        model = build_model(spec)
        try:
            result = train_model(model, train_set, val_set, train_cfg, device=self.device,
                                 on_epoch=self._on_epoch(trial, params, train_cfg.epochs))
        except TrainingDiverged as err:  # a recipe that blows up is a finished, hopeless trial
            trial.set_user_attr("diverged", str(err))
            raise optuna.TrialPruned(f"training diverged: {err}") from None
        score = self.profile.score(result.target_metrics)
        trial.set_user_attr("metrics", {k: float(v) for k, v in result.metrics.items()})
        trial.set_user_attr("target_metrics", result.target_metrics)
        trial.set_user_attr("epochs_run", result.epochs_run)
        trial.set_user_attr("wall_s", result.seconds)
        trial.set_user_attr("t4_s", t4_seconds(result.epochs_run))
        trial.set_user_attr("stopped_early", result.stopped_early)
        if result.stopped_early:
            raise optuna.TrialPruned(f"stopped at epoch {result.epochs_run}: dominated at its rung")
        test_set = self.test_set(spec.input.resize)
        if test_set is not None:
            test = evaluate(model, test_set, spec.input.crop, train_cfg.eval_views, device=self.device)
            trial.set_user_attr("test_metrics", test)
            trial.set_user_attr("test_score", self.profile.score(test))
        ckpt = save_checkpoint(self.run_dir / "trials" / f"{trial.number:05d}.pt", model.cpu(), spec,
                               target_names=train_set.target_names, metrics=result.metrics,
                               train_config=train_cfg.to_dict(), trial=trial.number)
        trial.set_user_attr("checkpoint", str(ckpt.relative_to(self.run_dir)))
        trial.set_user_attr("bytes", ckpt.stat().st_size)
        return (score, float(params)) + ((float(flops),) if cfg.flops_objective else ())

    def _on_epoch(self, trial: optuna.Trial, params: int, planned: int) -> Callable[[EpochRecord], bool]:
        rungs = rung_epochs(planned, self.cfg.rung_fractions) if self.cfg.early_stop else []
        curve: list[float] = []

        def on_epoch(record: EpochRecord) -> bool:
            score = self.profile.score(record.target_metrics)
            curve.append(score)
            trial.set_user_attr("curve", curve)
            if record.epoch not in rungs:
                return False
            rung = rungs.index(record.epoch)
            trial.set_user_attr(f"rung{rung}", score)
            peers = [t for t in trial.study.get_trials(deepcopy=False, states=FINISHED + (TrialState.RUNNING,))
                     if t.number != trial.number]
            return should_stop(score, params, rung, peers, self.cfg.dominators, self.cfg.margin)

        return on_epoch


# ---------------------------------------------------------------------------------------- workers
def quiet_optuna() -> None:
    """Keep Optuna's per-trial log lines and experimental-feature warnings out of the progress bars."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

def count_trials(study: optuna.Study, states: tuple[TrialState, ...]) -> int:
    return len(study.get_trials(deepcopy=False, states=states))


def run_worker(storage_url: str, study_name: str, n_trials: int, run_dir: Path,
               overrides: dict | None = None, progress: bool = True, threads: int | None = None) -> None:
    """Run trials until the study holds `n_trials` finished ones (complete or pruned).

    Each trial is one `optimize(n_trials=1)` call, preceded by failing stale trials (a killed worker's
    RUNNING trial becomes FAIL and its retry is queued), so workers stop at the target instead of
    each running a fixed number.
    """
    if threads:
        torch.set_num_threads(threads)
    quiet_optuna()
    study, cfg = load_study(study_name, storage_url, overrides)
    objective = Objective(cfg, run_dir)
    done = count_trials(study, FINISHED)
    bar = tqdm(total=n_trials, initial=min(done, n_trials), desc=f"study {study_name}", unit="trial", disable=not progress)
    while True:
        optuna.storages.fail_stale_trials(study)
        active = count_trials(study, FINISHED + (TrialState.RUNNING,))
        if active >= n_trials:
            break
        study.optimize(objective, n_trials=1, gc_after_trial=True)
        gc.collect()
        finished = count_trials(study, FINISHED)
        bar.update(max(0, min(finished, n_trials) - bar.n))
        best = _best_score(study)
        if best is not None:
            bar.set_postfix(best=f"{best:.3f}")
    bar.close()


def _best_score(study: optuna.Study) -> float | None:
    scores = [t.values[0] for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    return max(scores) if scores else None


def _worker_entry(storage_url: str, study_name: str, n_trials: int, run_dir: str, overrides: dict, threads: int) -> None:
    run_worker(storage_url, study_name, n_trials, Path(run_dir), overrides, progress=False, threads=threads)


def run_search(cfg: StudyConfig, study_name: str, n_trials: int, run_dir: Path,
               storage_url: str | None = None, workers: int | None = None, progress: bool = True) -> optuna.Study:
    """Create or resume a study and run it to `n_trials` finished trials with `workers` processes
    (None: `default_workers` for the study's device; with several GPUs they go round-robin)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    storage_url = storage_url or default_storage_url(run_dir)
    study = create_study(cfg, study_name, storage_url)
    (run_dir / "config.json").write_text(json.dumps({"study": study_name, "storage": storage_url, **cfg.to_dict()}, indent=2))
    overrides = {k: getattr(cfg, k) for k in LOCAL_SETTINGS}
    workers = default_workers(cfg.device) if workers is None else workers
    if workers <= 1:
        run_worker(storage_url, study_name, n_trials, run_dir, overrides, progress=progress)
        return study
    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker_entry, args=(storage_url, study_name, n_trials, str(run_dir),
                                                     {**overrides, "device": worker_device(cfg.device, i)}, threads))
             for i in range(workers)]
    for p in procs:
        p.start()
    with tqdm(total=n_trials, desc=f"study {study_name} ({workers} workers)", unit="trial", disable=not progress) as bar:
        while any(p.is_alive() for p in procs):
            bar.update(max(0, min(count_trials(study, FINISHED), n_trials) - bar.n))
            time.sleep(1.0)
        bar.update(max(0, min(count_trials(study, FINISHED), n_trials) - bar.n))
    failed = [p.exitcode for p in procs if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} of {workers} workers exited with errors (exit codes {failed}); "
                           "finished trials are kept: rerun the same command to resume")
    return study

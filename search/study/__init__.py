"""The Optuna study: sample a from-scratch architecture under the caps, train it on a T4-sized budget,
stop hopeless trials early, and record everything needed to rebuild it.

One module per job: `settings` (StudyConfig and the named presets), `sampler` (samplers by name, seeded
per worker), `storage` (create, resume, join; settings and split checked), `data` (StudyData: images
and the prompt-grouped split), `record` (TrialRecord: what a trial stores), `early_stop` (Pareto-aware
rungs), `objective` (one trial), `stale` (dead workers' trials), `workers` (running the study).
"""
from search.study.data import StudyData, study_split
from search.study.early_stop import EARLY_STOPPING, EarlyStopping, NoEarlyStopping, ParetoRungs
from search.study.objective import Objective, plan_schedule, sample_train_config, sample_trial
from search.study.record import FINISHED, TrialRecord
from search.study.sampler import SAMPLERS, WorkerSampler, worker_seed
from search.study.settings import LOCAL_SETTINGS, LOSS_PRESETS, SPACE_PRESETS, StudyConfig, space_config
from search.study.storage import check_split, create_study, default_storage_url, load_study, open_storage
from search.study.workers import count_trials, quiet_optuna, run_search, run_worker

__all__ = [
    "EARLY_STOPPING", "FINISHED", "LOCAL_SETTINGS", "LOSS_PRESETS", "SAMPLERS", "SPACE_PRESETS",
    "EarlyStopping", "NoEarlyStopping", "Objective", "ParetoRungs", "StudyConfig", "StudyData", "TrialRecord",
    "WorkerSampler", "check_split", "count_trials", "create_study", "default_storage_url", "load_study",
    "open_storage", "plan_schedule", "quiet_optuna", "run_search", "run_worker", "sample_train_config",
    "sample_trial", "space_config", "study_split", "worker_seed",
]

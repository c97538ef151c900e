"""The Optuna study: sample a from-scratch architecture under the caps, train it on a T4-sized budget,
stop hopeless trials early, and record everything needed to rebuild it.

One module per job: `settings` (StudyConfig and the named presets), `sampler` (samplers by name, seeded
per worker), `storage` (create, resume, join; settings and split checked), `kinds` (the task kinds: what
differs between MOS, several sources and preference pairs), `data` (StudyData: images and the split),
`record` (TrialRecord: what a trial stores), `early_stop` (Pareto-aware rungs), `objective` (one trial:
sampling, budget planning, training), `known` (known recipes enqueued first), `stale` (dead workers'
trials), `workers` (running the study, time limits). The package lists only what other packages use.
"""
from search.study.data import StudyData, check_study_inputs
from search.study.early_stop import ParetoRungs
from search.study.kinds import KINDS, Kind, kind_named, register, study_split
from search.study.objective import Objective, plan_schedule, sample_trial
from search.study.record import FINISHED, TrialRecord
from search.study.sampler import SAMPLERS
from search.study.settings import LOCAL_SETTINGS, LOSS_PRESETS, SPACE_PRESETS, StudyConfig, space_config
from search.study.storage import check_split, check_storage_file, create_study, default_storage_url, load_study
from search.study.workers import quiet_optuna, run_search, run_worker

__all__ = [
    "FINISHED", "KINDS", "LOCAL_SETTINGS", "LOSS_PRESETS", "SAMPLERS", "SPACE_PRESETS", "Kind", "Objective",
    "ParetoRungs", "StudyConfig", "StudyData", "TrialRecord", "check_split", "check_storage_file", "check_study_inputs",
    "create_study", "default_storage_url", "kind_named", "load_study", "register",
    "plan_schedule", "quiet_optuna", "run_search", "run_worker", "sample_trial", "space_config", "study_split",
]

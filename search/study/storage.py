"""Where a study lives: its Optuna RDB storage, and creating, resuming or joining it with its settings
and its validation split checked."""
from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from search.profiles import get_profile
from search.study.data import StudyData
from search.study.record import TrialRecord
from search.study.sampler import WorkerSampler
from search.study.settings import LOCAL_SETTINGS, StudyConfig


def default_storage_url(run_dir: Path) -> str:
    """The SQLite URL of `run_dir/study.db`; ValueError for a path SQLAlchemy would misread (`?` starts
    a query, `%` is decoded)."""
    path = (Path(run_dir) / "study.db").resolve()
    if any(c in str(path) for c in "?%"):
        raise ValueError(f"run folder {path.parent} holds '?' or '%', which a SQLite URL would misread: "
                         "choose another folder or pass --storage")
    return f"sqlite:///{path}"


def check_storage_file(url: str) -> None:
    """Refuse a SQLite storage file whose schema SQLite cannot read (damaged, or another file in its place),
    naming it: SQLAlchemy would fail on it with a long traceback. Reads only; other databases, a missing file
    and an OperationalError (locked, unreadable: `run_search.error_message` words it) are left to the caller."""
    path = Path(url.removeprefix("sqlite:///"))
    if not url.startswith("sqlite:///") or not path.is_file():
        return
    try:
        with closing(sqlite3.connect(path, timeout=300)) as conn:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
    except sqlite3.OperationalError:
        raise
    except sqlite3.DatabaseError as err:
        raise ValueError(f"{path}: not a readable SQLite database ({err}): restore it from a backup, or move it "
                         "away to start the study afresh") from None


def open_storage(url: str, cfg: StudyConfig | None = None) -> RDBStorage:
    """An RDB storage with heartbeats (a killed worker's trial turns FAIL and is retried).

    SQLite copes with several local worker processes once it is in WAL mode with a long busy timeout:
    writers then wait for each other instead of failing with "database is locked".
    """
    check_storage_file(url)
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
    directions = ["maximize", "minimize"] + (["minimize"] if cfg.flops_objective else [])
    study = optuna.create_study(study_name=name, storage=open_storage(storage_url, cfg), directions=directions,
                                sampler=WorkerSampler(cfg.sampler, cfg.seed), load_if_exists=True)
    stored = study.user_attrs.get("config")
    if stored is None:
        study.set_user_attr("config", cfg.to_dict())
        study.set_metric_names([get_profile(cfg.profile).score_name, "params"]
                               + (["flops"] if cfg.flops_objective else []))
        return study
    stored = StudyConfig.from_dict(stored).to_dict()  # older studies: today's spelling of the same settings
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
    study = optuna.load_study(study_name=name, storage=open_storage(storage_url, cfg),
                              sampler=WorkerSampler(cfg.sampler, cfg.seed))
    return study, cfg


def check_split(study: optuna.Study, data: StudyData) -> None:
    """Record the fingerprint of the study's data and split (`StudyData.val_fingerprint`) on a study that has
    none, or has an older study's unversioned one that still matches; refuse to go on with another one (the
    labels, pairs or images changed since): trials validated on different splits cannot be compared."""
    records = map(TrialRecord.from_trial, study.get_trials(deepcopy=False))
    recorded = (study.user_attrs.get("val_fingerprint")
                or next((r.val_fingerprint for r in records if r.val_fingerprint), None))
    fingerprint = data.val_fingerprint()
    if recorded is not None and not data.matches(recorded):
        raise ValueError(f"study {study.study_name!r} was validated on another split (fingerprint {recorded}, "
                         f"now {fingerprint}): its labels or images changed since it was created; "
                         "restore them or choose a new --study name")
    if study.user_attrs.get("val_fingerprint") != fingerprint:
        study.set_user_attr("val_fingerprint", fingerprint)

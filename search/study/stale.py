"""Trials left RUNNING by a worker that is gone.

Optuna's heartbeats fail such a trial only after the grace period, and until then it counts as being
run, so a command resumed right after a crash saw its target met and did nothing. Every trial records
its worker (`host:pid`) first, so a worker on the same host whose process is dead is known at once;
its trial is failed and retried (the storage's heartbeat callback, as after the grace period). A
trial of another host, or one without a recorded worker, is left to its heartbeat. A trial failed by
Ctrl-C is retried the same way (`retry_interrupted`).
"""
from __future__ import annotations

import copy
import os
import socket
from typing import Literal

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from search.study.record import TrialRecord

Holder = Literal["live", "dead", "unknown"]


def worker_id() -> str:
    """This process as a trial's worker: `host:pid`."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def holder(record: TrialRecord) -> Holder:
    """Whether the process running `record`'s trial is alive: "live" or "dead" for a worker of this
    host; "unknown" for another host's or an unrecorded one (only its heartbeat can tell)."""
    host, _, pid = (record.worker or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return "unknown"
    return "live" if _pid_alive(int(pid)) else "dead"


def fail_dead_trials(study: optuna.Study) -> list[int]:
    """Fail now the RUNNING trials whose worker on this host is dead, and queue their retries; returns
    their numbers. A trial another process finishes or fails first is skipped."""
    storage = study._storage  # Optuna has no public accessor; its own fail_stale_trials does the same
    retry = storage.get_heartbeat_stale_trial_callback()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if holder(TrialRecord.from_trial(trial)) != "dead":
            continue
        try:
            if not storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:
            continue
        if retry is not None:
            retry(study, copy.deepcopy(storage.get_trial(trial._trial_id)))
        failed.append(trial.number)
    return failed


def retry_interrupted(study: optuna.Study, number: int | None) -> None:
    """Queue a retry of trial `number` when Ctrl-C failed it (Optuna fails the trial it interrupts), as a dead
    worker's trial is queued (nothing for None, or a trial that ended otherwise)."""
    storage = study._storage
    retry = storage.get_heartbeat_stale_trial_callback()
    if number is None or retry is None:
        return
    trial = storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study._study_id, number))
    if trial.state == TrialState.FAIL:
        retry(study, copy.deepcopy(trial))

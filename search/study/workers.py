"""Running a study: worker processes that take trials until the study holds its target.

Workers stop on a shared target of counted trials (finished, duplicates and trials cut by the time limit
left out) rather than a per-worker quota. Before each trial a worker fails the trials of dead workers
(`search.study.stale`) and Optuna's heartbeat-stale ones; when the trials still needed are all held by
workers it cannot check, it waits out their heartbeat grace period (saying so) before leaving them to their
holders. A trial Ctrl-C interrupts is queued again at once, one the time limit cut when the study resumes
(`requeue_cut`); worker processes end with the process that started them.
"""
from __future__ import annotations

import gc
import json
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState
from tqdm.auto import tqdm

from search.device import default_workers, worker_device
from search.study.data import StudyData
from search.study.known import enqueue_known, known_recipes
from search.study.objective import Objective
from search.study.record import FINISHED, TrialRecord
from search.study.settings import LOCAL_SETTINGS, StudyConfig
from search.study.stale import fail_dead_trials, holder, retry_interrupted
from search.study.storage import check_split, create_study, default_storage_url, load_study

MAX_UNTRAINED_IN_A_ROW = 10
"""A worker whose proposals are not trained (repeats of trained trials, over the caps or the budget) this
many times in a row stops: the space looks exhausted, or too large for the caps and the budget."""


def quiet_optuna() -> None:
    """Keep Optuna's per-trial log lines and experimental-feature warnings out of the progress bars, and
    its traceback of a trial failed by Ctrl-C (the command says that in one line)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    logging.getLogger("optuna.study._optimize").addFilter(QUIET_INTERRUPTS)


class _QuietInterrupts(logging.Filter):
    """Drops Optuna's two warnings of a trial failed by Ctrl-C: the traceback, and "Trial N failed with value
    None." right after it."""

    def __init__(self) -> None:
        super().__init__()
        self.interrupted: str | None = None
        """"Trial N" while its second warning is still to come."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt):
            self.interrupted = message.split(" failed")[0]
            return False
        if self.interrupted and message.startswith(f"{self.interrupted} failed with value"):
            self.interrupted = None
            return False
        return True


QUIET_INTERRUPTS = _QuietInterrupts()


def count_trials(study: optuna.Study) -> int:
    """Trials that count towards the study's target (`TrialRecord.counts`): finished and trained."""
    return sum(1 for t in study.get_trials(deepcopy=False, states=FINISHED) if TrialRecord.from_trial(t).counts)


def requeue_cut(study: optuna.Study) -> list[int]:
    """Queue again, with their sampled parameters, the trials the time limit cut that no trial reran yet
    (they do not count: a resume runs them to their end); returns their numbers."""
    trials = study.get_trials(deepcopy=False)
    rerun = {TrialRecord.from_trial(t).rerun_of for t in trials}
    cut = [t for t in trials if TrialRecord.from_trial(t).time_limit and t.number not in rerun]
    for trial in cut:
        known = {k: v for k, v in trial.user_attrs.items() if k == "known_recipe"}
        study.enqueue_trial(trial.params, user_attrs={"rerun_of": trial.number, **known})
    return [t.number for t in cut]


def _say(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


def _reclaim(study: optuna.Study) -> None:
    """Fail dead workers' trials now (retried) and heartbeat-stale ones."""
    for number in fail_dead_trials(study):
        _say(f"trial {number} was left running by a dead worker on this host: failed and queued again")
    optuna.storages.fail_stale_trials(study)


def _must_wait(study: optuna.Study, n_trials: int) -> list[TrialRecord] | None:
    """None when this worker should run a trial; else the running trials that would reach the target,
    those not held by a live worker of this host (empty: live local workers hold them all)."""
    running = [TrialRecord.from_trial(t) for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    if count_trials(study) + len(running) < n_trials:
        return None
    return [r for r in running if holder(r) != "live"]


def pace(study: optuna.Study, n_trials: int) -> str | None:
    """What the study's T4 budgets mean on this machine: measured local seconds per T4 second over the
    finished trials, and the expected time of the trials still to run at that pace (None before any)."""
    records = [r for r in map(TrialRecord.from_trial, study.get_trials(deepcopy=False, states=FINISHED))
               if r.wall_s and r.t4_s]
    if not records:
        return None
    ratio = sum(r.wall_s for r in records) / sum(r.t4_s for r in records)
    left = max(0, n_trials - count_trials(study)) * sum(r.wall_s for r in records) / len(records)
    return f"{ratio:.0f} s here per T4 s; ~{_duration(left)} to go"


def no_completed(study: optuna.Study) -> str:
    """The line of a study without a completed trial: when the time limit cut one, how long it took here and
    what would let a whole trial fit (a larger --time-limit, or shorter trials)."""
    cut = [r for r in map(TrialRecord.from_trial, study.get_trials(deepcopy=False, states=FINISHED))
           if r.time_limit and r.epochs_run and r.wall_s]
    if not cut:
        return f"study {study.study_name!r} has no completed trial yet"
    r = max(cut, key=lambda r: r.epochs_run)  # the one that got furthest
    planned = max(r.epochs_planned or 0, r.epochs_run)
    whole = r.wall_s / r.epochs_run * planned
    return (f"study {study.study_name!r} has no completed trial yet: the time limit cut trial {r.number} after "
            f"{r.epochs_run} of its {planned} epochs ({_duration(r.wall_s)} of training here; all {planned} would take "
            f"~{_duration(whole)}): give a --time-limit well above {_duration(whole)}, or a smaller --trial-budget or "
            "--max-epochs")


def _duration(seconds: float) -> str:
    return (f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min" if seconds >= 90
            else f"{seconds:.0f} s")


def run_worker(storage_url: str, study_name: str, n_trials: int, run_dir: Path, overrides: dict | None = None,
               progress: bool = True, threads: int | None = None, data: StudyData | None = None,
               stop_at: float | None = None) -> None:
    """Run trials until the study holds `n_trials` counted ones (finished and trained), or until
    `stop_at` (`time.time()`): no trial starts after it, and a running one stops after the epoch that
    passes it (its curve kept).

    Each trial is one `optimize(n_trials=1)` call, so workers stop at the shared target. `data`: the
    study's images when the caller has them loaded and its split checked already (`run_search`).
    """
    if threads:
        torch.set_num_threads(threads)
    quiet_optuna()
    study, cfg = load_study(study_name, storage_url, overrides)
    objective = Objective(cfg, run_dir, data, stop_at=stop_at, progress=progress)
    if data is None:
        check_split(study, objective.data)
    bar = tqdm(total=n_trials, initial=min(count_trials(study), n_trials), desc=f"study {study_name}",
               unit="trial", disable=not progress)
    if progress:
        objective.status = lambda text: _show(bar, study, text)
    try:
        _run_trials(study, objective, n_trials, cfg, bar)
    finally:  # closed before a Ctrl-C or an error is reported, not after it at exit
        bar.close()


def _run_trials(study: optuna.Study, objective: Objective, n_trials: int, cfg: StudyConfig, bar: tqdm) -> None:
    """Take trials (one `optimize(n_trials=1)` each) until the study holds `n_trials` counted ones, live
    workers hold the rest, or the sampler repeats itself."""
    deadline = None
    while count_trials(study) < n_trials:
        if objective.time_up():
            _say(f"the time limit is reached: no more trials start ({count_trials(study)} of {n_trials} finished)")
            break
        _reclaim(study)
        unchecked = _must_wait(study, n_trials)
        if unchecked is not None:
            if not unchecked or (deadline is not None and time.time() > deadline):
                break  # live workers hold the trials still needed
            if deadline is None:
                deadline = time.time() + cfg.grace_period + cfg.heartbeat_interval
                _say(f"trials {', '.join(str(r.number) for r in unchecked)} are running in workers this host cannot "
                     f"check: waiting up to {cfg.grace_period + cfg.heartbeat_interval}s for them to finish or "
                     f"for their heartbeat to lapse (grace period {cfg.grace_period}s)")
            time.sleep(cfg.heartbeat_interval)
            continue
        deadline = None
        try:
            study.optimize(objective, n_trials=1, gc_after_trial=True)
        except KeyboardInterrupt:  # Optuna failed the trial it was running: queued again, as a dead worker's is
            retry_interrupted(study, objective.last_trial)
            raise
        gc.collect()
        if objective.untrained_in_a_row >= MAX_UNTRAINED_IN_A_ROW:
            _say(f"{objective.untrained_in_a_row} proposals in a row were not trained (repeats of trained trials, or "
                 "over the caps or the budget): the search space looks exhausted or too large; this worker stops")
            break
        bar.update(max(0, min(count_trials(study), n_trials) - bar.n))
        best, measured = _best_score(study), pace(study, n_trials)
        if best is not None:
            bar.set_postfix(best=f"{best:.3f}")
        if measured and objective.untrained_in_a_row == 0:
            _say(f"trial {objective.last_trial} done: {measured}")


def _show(bar: tqdm, study: optuna.Study, status: str) -> None:
    """The running trial's `status` on the study's bar, after the study's best score."""
    best = _best_score(study)
    bar.set_postfix_str(status if best is None else f"best={best:.3f}, {status}")


def _best_score(study: optuna.Study) -> float | None:
    scores = [t.values[0] for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    return max(scores) if scores else None


def _worker_entry(storage_url: str, study_name: str, n_trials: int, run_dir: str, overrides: dict, threads: int,
                  stop_at: float | None, parent: int | None = None) -> None:
    tqdm.set_lock(threading.RLock())  # not tqdm's semaphore: a killed worker would leave it to a shutdown warning
    signal.signal(signal.SIGINT, signal.default_int_handler)  # interrupted as `_stop` says, even if started ignoring it
    if parent is not None:
        _stop_with(parent)
    try:
        run_worker(storage_url, study_name, n_trials, Path(run_dir), overrides, progress=False, threads=threads,
                   stop_at=stop_at)
    except KeyboardInterrupt:  # Ctrl-C reaches every worker: Optuna has failed its trial; the parent says so once
        sys.exit(INTERRUPTED)


def _stop_with(parent: int) -> None:
    """Interrupt this worker (its trial failed and queued again, as by Ctrl-C) once its `parent` process is
    gone: a killed `search` must not leave its workers training. A daemon thread checks every second."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


INTERRUPTED = 130
"""The exit status of a process ended by Ctrl-C (128 + SIGINT), as shells report it."""


class WorkersFailed(RuntimeError):
    """Worker processes died or failed before the study reached its target (one line, exit 1)."""


def run_search(cfg: StudyConfig, study_name: str, n_trials: int, run_dir: Path,
               storage_url: str | None = None, workers: int | None = None, progress: bool = True,
               time_limit_s: float | None = None, seed_recipes: bool = True) -> optuna.Study:
    """Create or resume a study and run it to `n_trials` counted trials with `workers` processes
    (None: `default_workers` for the study's device; with several GPUs they go round-robin), for at
    most `time_limit_s` seconds (no trial starts after it; a running one stops after its epoch).
    A new study with `seed_recipes` first enqueues the known recipes that fit it (`search.study.known`).

    The device is resolved, the known recipes read and the images decoded (each one readable) before the run
    directory, the storage or the settings are written, so a run refused on its inputs leaves nothing behind."""
    recipes = known_recipes() if seed_recipes else []
    stop_at = None if time_limit_s is None else time.time() + time_limit_s
    run_dir = Path(run_dir)
    storage_url = storage_url or default_storage_url(run_dir)
    workers = default_workers(cfg.device) if workers is None else workers
    data = StudyData(cfg, progress=progress)
    data.val_fingerprint()  # decodes the images: an unreadable one is refused before anything is written
    run_dir.mkdir(parents=True, exist_ok=True)
    study = create_study(cfg, study_name, storage_url)
    check_split(study, data)
    if count_trials(study) < n_trials:
        for number in requeue_cut(study):
            _say(f"trial {number} was cut by the time limit: it does not count and runs again first")
    if recipes and not study.trials:
        for known in enqueue_known(study, cfg, data, recipes):
            cv = known.cv
            _say(f"enqueued known recipe {known.name} (cross-validated {cv['score']:.3f} +- {cv['sd']:.3f} over "
                 f"{cv['folds']} folds; bench/NOTES.md)")
    (run_dir / "config.json").write_text(json.dumps({"study": study_name, "storage": storage_url, **cfg.to_dict()},
                                                    indent=2))
    overrides = {k: getattr(cfg, k) for k in LOCAL_SETTINGS}
    if workers <= 1:
        run_worker(storage_url, study_name, n_trials, run_dir, overrides, progress=progress, data=data, stop_at=stop_at)
        return study
    del data  # each worker process loads its own
    _run_processes(study, storage_url, n_trials, run_dir, overrides, cfg.device, workers, progress, stop_at)
    return study


def _run_processes(study: optuna.Study, storage_url: str, n_trials: int, run_dir: Path, overrides: dict,
                   device: str, workers: int, progress: bool, stop_at: float | None) -> None:
    """Run `workers` worker processes (spawned) to the target, with one progress bar. Ctrl-C is passed on
    to the workers (each fails its trial, retried on resume) and raised here once they ended."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker_entry, args=(storage_url, study.study_name, n_trials, str(run_dir),
                                                     {**overrides, "device": worker_device(device, i)}, threads,
                                                     stop_at, os.getpid()))
             for i in range(workers)]
    for p in procs:
        p.start()
    desc = f"study {study.study_name} ({workers} workers)"
    try:
        with tqdm(total=n_trials, desc=desc, unit="trial", disable=not progress) as bar:
            while any(p.is_alive() for p in procs):
                bar.update(max(0, min(count_trials(study), n_trials) - bar.n))
                time.sleep(1.0)
            bar.update(max(0, min(count_trials(study), n_trials) - bar.n))
    except KeyboardInterrupt:
        _stop(procs)
        raise
    report_lost_workers([p.exitcode for p in procs], count_trials(study) >= n_trials, n_trials)


def _stop(procs: list) -> None:
    """Pass Ctrl-C on to the workers still running (a signal sent to this process alone), give them time to
    fail their trials, then end the rest."""
    for p in procs:
        if p.is_alive():
            os.kill(p.pid, signal.SIGINT)
    for p in procs:
        p.join(timeout=30)
        if p.is_alive():
            p.terminate()
            p.join()


def report_lost_workers(exitcodes: list[int | None], reached: bool, n_trials: int) -> None:
    """Name the workers that did not end cleanly: in a line when the study `reached` its `n_trials` without
    them (the command did its job: exit 0), else as `WorkersFailed` (exit 1: a resume retries their trials)."""
    lost = worker_losses(exitcodes)
    if lost and reached:
        _say(f"{lost}; the study reached its {n_trials} trials without it")
    elif lost:
        raise WorkersFailed(f"{lost}, its trial will be retried on resume: rerun the same command")


def worker_losses(exitcodes: list[int | None]) -> str | None:
    """One clause naming the workers (numbered from 1) that did not end cleanly: killed by a signal
    ("died") or exited with an error status; None when all ended cleanly."""
    lost = []
    for i, code in enumerate(exitcodes, 1):
        if code is not None and code < 0:
            lost.append(f"worker {i} died (killed by {signal.Signals(-code).name})")
        elif code:
            lost.append(f"worker {i} exited with status {code}")
    return "; ".join(lost) or None

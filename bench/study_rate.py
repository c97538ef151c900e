"""Trials per hour of a real study with 1 and with several concurrent trials on this machine.

    python bench/study_rate.py --data agiqa3k --root DIR --workers 1 0 --seconds 180   # GPU machine; 0 = default
    python bench/study_rate.py --quick                                                  # CPU: synthetic, tiny

For each worker count, runs `run_search.py search` for `--seconds`, stops it (the whole process group),
and counts the trials that finished (complete or stopped early) between the first trial's start and the
last one's end, so data decoding before the first trial is excluded (the decode cache is shared).
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search.device import default_workers  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def trials_per_hour(storage: str, study: str) -> tuple[int, float]:
    """Finished trials of the study and their rate per hour over the span they cover."""
    trials = optuna.load_study(study_name=study, storage=storage).get_trials(
        deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    if not trials:
        return 0, 0.0
    span = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
    return len(trials), len(trials) / span * 3600


def run_for(seconds: float, workers: int, search_args: list[str], runs_dir: Path) -> tuple[int, float]:
    """Run a study for `seconds` with `workers` processes (0: leave --workers out, i.e. the default)."""
    study = f"rate_w{workers}"
    cmd = [sys.executable, str(ROOT / "run_search.py"), "search", "--study", study, "--runs-dir", str(runs_dir),
           "--trials", "100000", *(["--workers", str(workers)] if workers else []), *search_args]
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        proc.wait(timeout=seconds)
        raise SystemExit(f"the study stopped by itself (exit {proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return trials_per_hour(f"sqlite:///{runs_dir / study / 'study.db'}", study)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CPU: synthetic set, tiny space, 1 and 2 workers")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 0], help="worker counts; 0 = the default")
    parser.add_argument("--seconds", type=float, default=180.0, help="wall time of each study")
    args, search_args = parser.parse_known_args()
    if args.quick:
        args.workers, args.seconds = [1, 2], 40.0  # on a CPU the default is 1
        search_args = ["--n-synthetic", "200", "--trial-budget", "5", "--max-epochs", "3", *search_args]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"each study runs {args.seconds:.0f} s; search arguments: {' '.join(search_args) or '(defaults)'}")
        for k in args.workers:
            start = time.perf_counter()
            n, rate = run_for(args.seconds, k, search_args, Path(tmp))
            label = f"default ({default_workers()})" if k == 0 else str(k)
            print(f"  {label} worker(s): {n} trials finished in {time.perf_counter() - start:.0f} s, "
                  f"{rate:.0f} trials/hour", flush=True)


if __name__ == "__main__":
    main()

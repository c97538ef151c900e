#!/usr/bin/env python3
"""Search, compress and export lightweight from-scratch image-quality models.

    python run_search.py search --data agiqa3k --root PATH --study NAME --trials N
    python run_search.py worker --storage URL --study NAME
    python run_search.py report --study NAME
    python run_search.py compress --study NAME --ratios 0.3 0.5
    python run_search.py export --study NAME --team TEAM
    python run_search.py paper --study NAME [--pdf] [--title T] [--authors A B] [--ablations FILE...]
    python run_search.py predict --model FILE --data agiqa3k --root PATH
    python run_search.py predict --model FILE --pairs PAIRS.csv
    python run_search.py            # the whole flow on the built-in synthetic set

A mistake in the input (an option, a file, a column) is reported in one line, exit code 2, before
anything is stored; a worker that died, exit code 1; Ctrl-C, exit code 130; --debug shows the
traceback instead.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import math
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Callable

import sqlalchemy.exc
from optuna import get_all_study_names
from optuna.trial import TrialState

from results.candidates import Protocol, export_choice, ranked_candidates, ranked_trials
from results.confirm import (
    DEFAULT_PROTOCOL, DEFAULT_RUNS, DEFAULT_TOP, chosen_protocol, chosen_top, confirm, confirm_seconds,
)
from search.budget import EFFICIENCY_RANGE
from search.data import (
    DATASETS, PREDICT_DATASETS, absolute_root, check_dataset, check_dataset_name, is_combined, source_roots,
)
from search.data.pairs import PAIR_COLUMNS
from search.device import DEVICES, TRIALS_PER_GPU, resolve_device, worker_count
from search.names import check_date, check_name
from search.profiles import PROFILES
from search.study import (
    LOCAL_SETTINGS, SAMPLERS, SPACE_PRESETS, StudyConfig, TrialRecord, check_storage_file, check_study_inputs,
    default_storage_url, load_study, quiet_optuna, run_search, run_worker,
)
from search.study.workers import INTERRUPTED, WorkersFailed, no_completed
from search.train.retrain import DEFAULT_FINAL, FILL, FINALS, Deadline, duration, wanted_epochs

DEMO = dict(study="demo", trials=8, space="tiny", n_synthetic=1000, trial_budget_s=60.0, max_epochs=12,
            export_epochs=12, export_limit="3m")

USER_ERRORS = (ValueError, OSError, MemoryError, sqlite3.OperationalError, sqlalchemy.exc.OperationalError)
"""What a wrong option, file or folder raises: reported in one line (exit 2) unless --debug."""
INTERRUPTED_LINES = {
    "compress": "interrupted: the variants already recorded are kept: rerun the same command to go on with the rest",
    "confirm": "interrupted: the confirm runs already done are kept: rerun the same command to go on from there",
    "export": "interrupted: nothing was exported (the previous export, if any, is as it was; the confirm runs "
              "already done are kept): rerun the same command to export",
}
"""What Ctrl-C (exit 130) says it left, by command; any other command runs or reads a study's trials."""
INTERRUPTED_TRIALS = ("interrupted: a study keeps its finished trials (the running ones are retried): rerun the same "
                      "command to go on")


class CommandLineError(ValueError):
    """A bad option or argument, raised by the parser instead of exiting, so `main` reports it like any other."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's layout and appends each option's default, unless it has none, says it, or is
    a flag (no value: its default is not giving it, and `--no-X (default: True)` would read backwards)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if (any(action.default is v for v in (None, False, argparse.SUPPRESS)) or action.nargs == 0
                or "default" in (action.help or "")):
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """argparse with defaults in the help and errors raised as `CommandLineError` (one line, exit 2)."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(**kwargs)

    def error(self, message: str):
        raise CommandLineError(f"{self.prog}: {message}")


def _number(kind: type, low: float, inclusive: bool = True, high: float | None = None) -> Callable[[str], float]:
    """An argparse type: a finite `kind` number >= `low` (> `low` unless `inclusive`), or in (`low`, `high`)."""
    if high is not None:
        bound, fits = f"in ({low}, {high})", lambda v: low < v < high
    else:
        bound, fits = f"{'>=' if inclusive else '>'} {low}", (lambda v: v >= low) if inclusive else (lambda v: v > low)

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}") from None
        if not (math.isfinite(value) and fits(value)):
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    return parse


def _epochs(text: str) -> int | str:
    """An argparse type: a whole number of epochs >= 1, or "fill" (train until the deadline)."""
    if text == FILL:
        return text
    try:
        return wanted_epochs(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1 or {FILL!r}, got {text!r}") from None


def _members(text: str) -> int | str:
    """An argparse type: "auto", or a whole number of ensemble members >= 1."""
    return text if text == "auto" else _number(int, 1)(text)


def _duration(text: str) -> float:
    """An argparse type: a positive duration in seconds, given as `90`, `90s`, `45m` or `2h`."""
    unit = {"s": 1, "m": 60, "h": 3600}.get(text[-1:].lower())
    try:
        value = float(text[:-1] if unit else text) * (unit or 1)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: give seconds, or a number with s, m or h "
                                         "(e.g. 45m, 2h)")
    return value


def _finite(text: str) -> float:
    """An argparse type: a finite float (nan and inf would pass every range check and be stored as invalid JSON)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def _name(text: str) -> str:
    try:
        return check_name(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _date(text: str) -> str:
    try:
        return check_date(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _checked(check: Callable[[str], object], doc: str) -> Callable[[str], str]:
    """An argparse type that keeps the text as given once `check(text)` accepts it (its ValueError becomes
    the parser's one line)."""
    def parse(text: str) -> str:
        try:
            check(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        return text
    parse.__doc__ = doc
    return parse


_device = _checked(resolve_device, "A device this machine has (`resolve_device`), kept as given (a study stores it).")
_dataset = _checked(check_dataset_name,
                    "A study dataset: one name, or labelled ones joined by '+' (`check_dataset_name`).")


def _run_dir(args: argparse.Namespace) -> Path:
    """RUNS_DIR/STUDY, absolute; refused when it cannot be created or written, or when its SQLite URL
    (used unless --storage is given) would misread the path."""
    run_dir = Path(args.runs_dir).resolve() / args.study
    if args.storage is None:
        try:
            default_storage_url(run_dir)
        except ValueError as err:
            raise ValueError(f"--runs-dir {args.runs_dir!r}: {err}") from None
    existing = next(p for p in (run_dir, *run_dir.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"--runs-dir {args.runs_dir!r}: cannot create {run_dir}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--runs-dir {args.runs_dir!r}: cannot write to {existing} (read-only)")
    return run_dir


def _min_epochs(args: argparse.Namespace) -> int:
    """--min-epochs, refused above --max-epochs (no trial could train that many); when not given, the study's
    default, which trials take as --max-epochs when that is fewer."""
    if args.min_epochs is None:
        return StudyConfig.min_epochs
    if args.min_epochs > args.max_epochs:
        raise ValueError(f"--min-epochs {args.min_epochs} is above --max-epochs {args.max_epochs}: no trial could "
                         "train that many; lower it or raise --max-epochs")
    return args.min_epochs


def _study_config(args: argparse.Namespace) -> StudyConfig:
    return StudyConfig(
        dataset=args.data, root=absolute_root(args.root), targets=args.targets, n_synthetic=args.n_synthetic,
        profile=args.profile, space=args.space or ("tiny" if args.data == "synthetic" else "default"),
        val_fraction=args.val_fraction, test_fraction=args.test_fraction, seed=args.seed,
        trial_budget_s=args.trial_budget,
        max_epochs=args.max_epochs, min_epochs=_min_epochs(args), batch_size=args.batch_size,
        eval_views=args.eval_views,
        pretrain_shares=args.pretrain_shares, ema_decays=args.ema_decays, patches=args.patches,
        fragments=args.fragments,
        pair_columns=args.pair_columns,
        sampler=args.sampler, flops_objective=args.flops_objective, early_stop=not args.no_early_stop,
        t4_efficiency=args.t4_efficiency, device=args.device, cache_dir=str(Path(args.cache_dir).resolve()),
    )


def _open(args: argparse.Namespace, overrides: dict | None = None, need_data: bool = True):
    """The existing study named by --study/--storage/--runs-dir, its settings (local ones overridden),
    run directory and storage URL; its dataset checked when the command reads it."""
    run_dir = _run_dir(args)
    storage = args.storage or default_storage_url(run_dir)
    if storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).is_file():
        raise ValueError(f"no study storage at {storage}: run `run_search.py search --study {args.study}` first")
    check_storage_file(storage)
    names = get_all_study_names(storage)
    if args.study not in names:
        held = f"; it holds {', '.join(sorted(names))}" if names else ""
        raise ValueError(f"no study {args.study!r} in {storage}{held}")
    study, cfg = load_study(args.study, storage, overrides)
    if need_data:
        folders = source_roots(cfg.dataset, cfg.root).values() if is_combined(cfg.dataset) else [cfg.root]
        moved = [f for f in folders if f is not None and not Path(f).exists()]
        if moved and not (overrides or {}).get("root"):
            raise FileNotFoundError(f"the dataset folder of study {args.study!r} is not at {moved[0]} any more: "
                                    "give --root with where it lives now")
        check_dataset(cfg.dataset, cfg.root, cfg.targets, cfg.pair_columns)
    return study, cfg, run_dir, storage


def _require_completed(study, stopped: bool = False) -> None:
    """Compress and export read completed trials, report (`stopped`) also trials stopped after some epochs
    (by a rung or the time limit, with their curves): a study without one is an error, not an empty result."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    if not any(t.state == TrialState.COMPLETE or (stopped and TrialRecord.from_trial(t).epochs_run) for t in trials):
        raise ValueError(f"{no_completed(study)}; run (or resume) `run_search.py search --study {study.study_name}` "
                         "first")


def _root(args: argparse.Namespace) -> dict:
    """The --root override of a study's dataset folder (absolute), for the commands that accept one."""
    return {"root": absolute_root(args.root)}


def cmd_search(args: argparse.Namespace) -> int:
    cfg = _study_config(args)
    run_dir = _run_dir(args)
    check_study_inputs(cfg)
    workers, capped = worker_count(args.workers, cfg.device)
    if capped:
        print(capped, file=sys.stderr)
    storage = args.storage or default_storage_url(run_dir)
    study = run_search(cfg, args.study, args.trials, run_dir, storage_url=storage, workers=workers,
                       time_limit_s=args.time_limit, seed_recipes=args.seed_recipes)
    print_best(study, cfg, storage)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    overrides = {**{k: getattr(args, k) for k in LOCAL_SETTINGS}, **_root(args)}
    _, _, run_dir, storage = _open(args, overrides)
    stop_at = None if args.time_limit is None else time.time() + args.time_limit
    run_worker(storage, args.study, args.trials, run_dir, overrides, progress=not args.quiet, stop_at=stop_at)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from results.dashboard import dashboard_line
    from results.export import export_line, read_export
    from results.report import choice_schedule, format_ranking, write_report
    from search.profiles import get_profile

    from compress.variants import VariantStore

    study, cfg, run_dir, storage = _open(args, need_data=False)
    _require_completed(study, stopped=True)
    variants = VariantStore(storage, study.study_name).frame()
    profile = get_profile(cfg.profile)
    ranked = write_report(study, profile, run_dir / "report", variants=variants, reference_sizes_m=args.reference_sizes)
    print(format_ranking(ranked, profile, args.top))
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        print(no_completed(study))
    schedule = choice_schedule(study, export_choice(ranked), variants)
    if schedule is not None:
        print(f"export's final retrain: {schedule.what} ({schedule.reason})")
    last = read_export(run_dir)
    if last is not None:
        print(export_line(last))
    print(f"\nwrote {run_dir / 'report' / 'trials.csv'} and {run_dir / 'report' / 'report.html'}")
    print(dashboard_line(study, storage, profile, variants))
    return 0


def cmd_compress(args: argparse.Namespace) -> int:
    from compress.stage import compress_study
    from compress.variants import VariantStore
    from search.profiles import get_profile

    study, cfg, run_dir, storage = _open(args, _root(args))
    _require_completed(study)
    trials = None
    if args.top:  # the first trials of the one ranking (what report and export read), not the best single scores
        variants = VariantStore(storage, study.study_name).frame()
        trials = ranked_trials(ranked_candidates(study, get_profile(cfg.profile), variants), args.top)
    frame = compress_study(study, cfg, run_dir, storage, ratios=tuple(args.ratios), trials=trials,
                           importance=args.importance, finetune_epochs=args.finetune_epochs,
                           iterative_steps=args.iterative_steps)
    cols = ["id", "params", "bytes", "score", "plcc", "srcc", "krcc", "rmse"]
    print(frame[cols].sort_values("id").to_string(index=False, float_format=lambda v: f"{v:.4f}")
          if len(frame) else "no candidates")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from results.export import ExportOptions, export_submission

    from compress.variants import VariantStore

    limit = Deadline(args.time_limit) if args.time_limit else None
    study, cfg, run_dir, storage = _open(args, _root(args))
    _require_completed(study)
    variants = VariantStore(storage, study.study_name).frame()
    named = args.trial is not None or args.variant is not None
    proto, top = chosen_protocol(study, args.confirm_protocol, args.confirm_runs), chosen_top(study, args.confirm_top)
    missing, seconds = (0, 0.0) if named or not cfg.task.confirmable or args.no_confirm else confirm_seconds(
        study, cfg, top, proto.k, variants, args.reference_sizes, proto.name)
    if missing:
        share = ("" if limit is None else f"; this run confirms for at most half the time limit "
                 f"({duration(limit.seconds / 2)}) and a later export resumes the rest")
        print(f"confirming the {top} best candidates on {proto.words} before export: {missing} "
              f"trainings, about {duration(seconds)} here by their trials' times{share} "
              "(`run_search.py confirm`; --no-confirm skips it)")
        confirm(study, cfg, top, proto.k, variants, args.reference_sizes,
                time_limit=None if limit is None else Deadline(limit.left() / 2), protocol=proto.name)
    options = ExportOptions(args.team, trial=args.trial, variant=args.variant, epochs=args.epochs, date=args.date,
                            teacher=args.teacher, distill_weight=args.distill_weight,
                            reference_sizes_m=args.reference_sizes, final=args.final, time_limit=limit,
                            members=args.members)
    result = export_submission(study, cfg, run_dir, options, variants=variants)
    s = result.summary
    estimate = "" if s["estimated_composite"] is None else f"  estimated composite {s['estimated_composite']:.1f}"
    print(f"exported {s['candidate']} ({s['kind']}): {s['summary']}")
    print(f"  params {s['params']:,}{estimate}  retrain here {s['measured_retrain_s']:.0f}s; "
          f"members: {s['members']['why']}")
    print(f"  {s['trained']['line']}")
    if args.time_limit and "time budget" in s["trained"]["stop"]:
        ran = " + ".join(map(str, s["trained"]["member_epochs"])) or s["trained"]["epochs_run"]
        print(f"  note: --time-limit left the retrain here {ran} of {s['planned_epochs']} planned epochs"
              f"{' per member' if s['trained']['member_epochs'] else ''}: these weights are a check of the flow, not a "
              "submission; the notebook trains on the T4 as planned")
    print(f"  schedule {s['schedule']['epochs']}: {s['schedule']['reason']}")
    print(f"  estimated T4 time {s['estimated_t4_s'] / 60:.1f} min by {s['estimate_source']}; the notebook measures "
          "its own pace on the machine it runs on and refits the epochs to its deadline")
    print(f"  {result.weights}\n  {result.notebook}")
    return 0


def cmd_confirm(args: argparse.Namespace) -> int:
    from compress.variants import VariantStore
    from results.report import format_ranking
    from search.profiles import get_profile

    study, cfg, run_dir, storage = _open(args, _root(args))
    cfg.task.require("confirmable", study.study_name)
    _require_completed(study)
    top = chosen_top(study, args.confirm_top)
    ranked = confirm(study, cfg, top, args.confirm_runs, VariantStore(storage, study.study_name).frame(),
                     args.reference_sizes, protocol=args.confirm_protocol)
    print(format_ranking(ranked, get_profile(cfg.profile), max(top, 5)))
    return 0


def cmd_paper(args: argparse.Namespace) -> int:
    from compress.variants import VariantStore
    from results.paper import compile_paper, write_paper_kit

    study, cfg, run_dir, storage = _open(args, need_data=False)
    _require_completed(study)
    out = write_paper_kit(study, cfg, run_dir, variants=VariantStore(storage, study.study_name).frame(),
                          ablations=args.ablations, title=args.title, authors=args.authors)
    print(f"wrote {out}: method.tex, paper.tex, refs.bib, figures/")
    if args.pdf:
        print(f"compiled {compile_paper(out)}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from search.predict import predict_pairs_to_csv, predict_to_csv

    if (args.root is None) == (args.pairs is None):
        raise CommandLineError("run_search.py predict: give --root (images to score) or --pairs (a CSV of pairs to "
                               "choose from), one of the two")
    if args.pairs is not None:
        out = predict_pairs_to_csv(args.model, args.pairs, tuple(args.pair_columns), out=args.out,
                                   cache_dir=Path(args.cache_dir), device=args.device)
    else:
        out = predict_to_csv(args.model, data=args.data, root=args.root, out=args.out, cache_dir=Path(args.cache_dir),
                             device=args.device)
    print(f"wrote {out}")
    return 0


def print_best(study, cfg: StudyConfig, storage: str) -> None:
    """Print how the proposals ended and the candidate the ranking puts first (what export takes), for a
    quick look."""
    from compress.variants import VariantStore
    from search.profiles import get_profile
    from search.study.record import tally, untrained_text

    records = [TrialRecord.from_trial(t) for t in study.get_trials(deepcopy=False)]
    complete = [r for r in records if r.state == TrialState.COMPLETE]
    if not complete:
        print(no_completed(study))
        return
    counts = tally(records)
    print(f"\n{len(complete)} complete, {counts['stopped']} stopped early (rungs or time limit); proposals not "
          f"trained: {untrained_text(counts)}; {counts['shrunk to fit the budget']} shrunk to fit the budget")
    variants = VariantStore(storage, study.study_name).frame()
    choice = export_choice(ranked_candidates(study, get_profile(cfg.profile), variants))
    if choice is None:
        print("no completed trial within the caps to export yet")
        return
    basis = (f"confirmed {choice['confirm_mean']:.3f} over {int(choice['confirm_n'])} {choice['confirm_protocol']}"
             if choice["finalist"] else "a single run, not confirmed")
    print(f"first in the ranking (what export takes): {choice['id']}: {choice['summary']}")
    print(f"  params {int(choice['params']):,}  estimated composite {choice['composite']:.1f}  "
          f"validation score {choice['score']:.3f} ({basis})")
    if choice["kind"] == "trial":
        best = next(r for r in complete if r.number == int(choice["trial"]))
        m = best.metrics or {}
        shown = ("plcc", "srcc", "krcc", "rmse") if "plcc" in m else ("pair_acc",)
        print(f"  FLOPs {best.flops:,}  epochs {best.epochs_run}  est. T4 {best.t4_s:.1f}s  wall {best.wall_s:.1f}s  "
              "validation " + "  ".join(f"{k.upper()} {m[k]:.3f}" for k in shown if k in m))


def _debug_option(p: argparse.ArgumentParser, default) -> None:
    p.add_argument("--debug", action="store_true", default=default,
                   help="show the full traceback of an error instead of its one-line message")


def _subcommand(sub, name: str, summary: str, description: str, examples: list[str]) -> argparse.ArgumentParser:
    """A subcommand's parser: `summary` in the command list, `description` above its options and
    `examples` (command lines after `run_search.py`) below them."""
    epilog = "examples:\n" + "\n".join(f"  python run_search.py {e}" for e in examples)
    return sub.add_parser(name, help=summary, description=description, epilog=epilog)


def _study_options(p: argparse.ArgumentParser, required: bool) -> None:
    """Where a study lives: its name, the folder of run directories, or a storage URL."""
    p.add_argument("--study", type=_name, required=required, **({} if required else {"default": "default"}),
                   help="study name; its run directory is RUNS_DIR/STUDY")
    p.add_argument("--runs-dir", default="runs", help="folder of the run directories")
    p.add_argument("--storage", default=None, help="SQLAlchemy URL (default: SQLite in the run directory)")


def _local_options(p: argparse.ArgumentParser) -> None:
    """Settings local to this machine (they may differ between the workers of one study)."""
    p.add_argument("--trials", type=_number(int, 1), default=20, help="finished trials the study should hold")
    p.add_argument("--time-limit", type=_duration, default=None,
                   help="stop starting trials after this long (e.g. 45m, 2h; a running trial stops after its epoch); "
                        "finished trials are kept and the same command resumes")
    p.add_argument("--root", default=None,
                   help="dataset folder; for a combined --data, NAME=PATH,NAME=PATH with one folder per source "
                        "(worker: overrides the stored one)")
    p.add_argument("--device", type=_device, default="auto", help=DEVICES)
    p.add_argument("--cache-dir", default=".cache/images", help="folder of the decoded-image caches")


def _pair_columns_option(p: argparse.ArgumentParser, which: str) -> None:
    p.add_argument("--pair-columns", nargs=3, default=list(PAIR_COLUMNS), metavar=("IMAGE_A", "IMAGE_B", "WINNER"),
                   help=f"column names {which}: the two images and the winner ('a'/'b' or the file name)")


def _add_search(sub) -> None:
    p = _subcommand(sub, "search", "create or resume an Optuna study and run it to --trials finished trials",
                    "Create a study, or resume it with the same settings (finished trials are kept), and run trials "
                    "until it holds --trials finished ones. Every input (dataset, labels, split, memory) is checked "
                    "before the study is created, so a mistake is never stored.",
                    ["search --data agiqa3k --root ../shared/data/agiqa3k --study a3k --trials 40",
                     "search --data agiqa3k+agiqa1k "
                     "--root agiqa3k=../shared/data/agiqa3k,agiqa1k=../shared/data/agiqa1k "
                     "--study a3k1k --trials 40",
                     "search --data pairs --root ../shared/data/pairs --study pairs --trials 40 --workers 4"])
    _study_options(p, required=False)
    _local_options(p)
    p.add_argument("--data", default="synthetic", type=_dataset, metavar="DATASET",
                   help=f"dataset: {' | '.join(DATASETS)} (pairs: ROOT/pairs.csv of preference pairs and the images), "
                        "or labelled ones joined by '+' (e.g. agiqa3k+agiqa1k: trained together, each "
                        "source's MOS standardised and put on the first one's scale; --root NAME=PATH,NAME=PATH)")
    _pair_columns_option(p, "of ROOT/pairs.csv (--data pairs)")
    p.add_argument("--targets", nargs="+", default=None,
                   help="score columns (default: the profile's targets, else the dataset's quality MOS)")
    p.add_argument("--n-synthetic", type=int, default=1200, help="images of the synthetic set")
    p.add_argument("--profile", default=None, choices=list(PROFILES), metavar="PROFILE",
                   help=f"challenge rules: {' | '.join(PROFILES)} (default: ntire-pairwise for --data pairs, "
                        "else icme2026-aigc)")
    p.add_argument("--space", default=None, choices=list(SPACE_PRESETS),
                   help=f"search-space preset: {' | '.join(SPACE_PRESETS)} (default: tiny for synthetic, else default)")
    p.add_argument("--patches", type=int, nargs="+", default=None,
                   help="input patch sizes the trials may choose: 0 = the whole image at the preset's sizes, P = P x P "
                        "patches of the image at its native size, cut by the model (default: the preset's)")
    p.add_argument("--fragments", type=int, nargs="+", default=None,
                   help="fragment grids the trials without patches may choose: 0 = off, S = an S x S grid of 32 px "
                        "patches of the image at its native size, spliced into one view by the model "
                        "(default: the preset's)")
    p.add_argument("--val-fraction", type=_finite, default=None,
                   help="share of prompts for validation (default: the profile's)")
    p.add_argument("--test-fraction", type=_finite, default=None,
                   help="share of prompts held out of the search, scored once per trial (default: the profile's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the sampler and the training")
    p.add_argument("--trial-budget", type=_finite, default=300.0, help="training budget per trial, T4 seconds")
    p.add_argument("--max-epochs", type=int, default=60, help="most epochs of one trial")
    p.add_argument("--min-epochs", type=int, default=None,
                   help="fewest epochs of one trial, at most --max-epochs: a proposal that would get fewer in its "
                        "budget is shrunk (its widths) until they fit, or not trained (default: "
                        f"{StudyConfig.min_epochs}, or --max-epochs when fewer)")
    p.add_argument("--no-seed-recipes", dest="seed_recipes", action="store_false",
                   help="do not enqueue the known recipes (search/study/known_recipes.json, measured on AGIQA-3K) "
                        "that fit a new study as its first trials")
    p.add_argument("--batch-size", type=int, default=32, help="training batch size")
    p.add_argument("--eval-views", type=int, default=1, choices=(1, 5, 10), help="crops averaged per validation image")
    p.add_argument("--pretrain-shares", type=_finite, nargs="+", default=None,
                   help="shares of a trial's budget that may go to self-supervised pretraining (0 = none; default: "
                        f"{' '.join(map(str, StudyConfig().pretrain_shares))}, none for --data pairs)")
    p.add_argument("--ema-decays", type=_finite, nargs="+", default=StudyConfig().ema_decays,
                   help="weight-averaging decays the search picks from (0 = off)")
    p.add_argument("--sampler", default="tpe", choices=list(SAMPLERS), help=f"Optuna sampler: {' | '.join(SAMPLERS)}")
    p.add_argument("--flops-objective", action="store_true", help="minimise FLOPs as a third objective")
    p.add_argument("--no-early-stop", action="store_true", help="train every trial to its planned epochs")
    p.add_argument("--t4-efficiency", type=_finite, default=StudyConfig.t4_efficiency,
                   help=f"share of a T4's peak the budget model assumes (search.budget): from {EFFICIENCY_RANGE[0]:g}, "
                        f"a hundredth of the calibrated value, to {EFFICIENCY_RANGE[1]:g}, the whole peak")
    p.add_argument("--workers", type=_number(int, 1), default=None,
                   help=f"worker processes on this machine (default: 1 on a CPU, {TRIALS_PER_GPU} per GPU)")
    _debug_option(p, argparse.SUPPRESS)
    p.set_defaults(func=cmd_search)


def _add_worker(sub) -> None:
    p = _subcommand(sub, "worker", "join an existing study (from any machine that reaches its storage)",
                    "Run trials of an existing study with its stored settings (only machine-local ones, such as "
                    "--device and --root, may differ), until it holds --trials finished ones.",
                    ["worker --storage postgresql+psycopg2://user@host/db --study a3k --trials 40",
                     "worker --study a3k --trials 60 --device cuda:1"])
    _study_options(p, required=True)
    _local_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _debug_option(p, argparse.SUPPRESS)
    p.set_defaults(func=cmd_worker)


def _add_report(sub) -> None:
    p = _subcommand(sub, "report", "CSV of every trial, interactive Pareto page, ranking by composite score",
                    "Write RUNS_DIR/STUDY/report/trials.csv and report.html (the exportable candidates ranked by "
                    "estimated composite score, storage copies and pruned weights compared apart, the Pareto front "
                    "with size tiers, learning curves, importances), print the ranking, and store the learning "
                    "curves and notes for optuna-dashboard when it is installed.",
                    ["report --study a3k", "report --study a3k --top 20 --reference-sizes 0.8 1.5 3 6"])
    _study_options(p, required=True)
    p.add_argument("--top", type=_number(int, 1), default=10, help="rows of the ranking to print")
    _reference_sizes_option(p)
    _debug_option(p, argparse.SUPPRESS)
    p.set_defaults(func=cmd_report)


def _add_compress(sub) -> None:
    p = _subcommand(sub, "compress", "prune and quantize the Pareto-front candidates, measure each variant",
                    "Prune the Pareto-front trials (or the --top K) to each ratio, fine-tune them, train each pruned "
                    "architecture from scratch (an exportable 'scratch' variant), make int8 and fp16 copies, and "
                    "record every variant's validation metrics beside the study; recorded variants are skipped.",
                    ["compress --study a3k --ratios 0.3 0.5", "compress --study a3k --top 3 --importance taylor"])
    _study_options(p, required=True)
    _moved_root_option(p)
    p.add_argument("--ratios", type=_number(float, 0, high=1), nargs="+", default=[0.3, 0.5],
                   help="parameter reductions to prune to, each in (0, 1)")
    p.add_argument("--top", type=_number(int, 1), default=None,
                   help="the first K trials of the ranking, as report and export rank them (default: the Pareto front)")
    p.add_argument("--importance", default="magnitude", choices=("magnitude", "taylor"), help="channel importance")
    p.add_argument("--finetune-epochs", type=_number(int, 0), default=None,
                   help="fine-tuning epochs after each pruning step (default: a quarter of the trial's)")
    p.add_argument("--iterative-steps", type=_number(int, 1), default=1, help="pruning steps, fine-tuned after each")
    _debug_option(p, argparse.SUPPRESS)
    p.set_defaults(func=cmd_compress)


def _add_export(sub) -> None:
    p = _subcommand(sub, "export", "retrain the chosen candidate from scratch, write TEAM_DATE_model.pth + notebook",
                    "Retrain what the report ranks first among trials and scratch variants (or --trial / --variant) "
                    "from scratch on all labelled data, and write RUNS_DIR/STUDY/export/: TEAM_DATE_model.pth, the "
                    "self-contained Kaggle notebook TEAM_DATE.ipynb, requirements.txt and HOW_TO_RUN.md.",
                    ["export --study a3k --team TEAM",
                     "export --study a3k --team TEAM --variant t3-prune0.5-scratch --date 20260301",
                     "export --study a3k --team TEAM --trial 12 --epochs fill"])
    _study_options(p, required=True)
    p.add_argument("--team", type=_name, required=True, help="team name, as in TEAM_DATE_model.pth")
    _moved_root_option(p)
    p.add_argument("--trial", type=_number(int, 0), default=None,
                   help="export this trial (default: what the report ranks first among trials and scratch variants)")
    p.add_argument("--variant", default=None,
                   help="export this compressed variant instead: a scratch variant id as the report lists it")
    _reference_sizes_option(p)
    p.add_argument("--epochs", type=_epochs, default=None, metavar="N|fill",
                   help="final retrain: a number of epochs, or 'fill' (train until the notebook's deadline) "
                        "(default: chosen from the candidate's validation curve: fill while it still rose at the end "
                        "of its trial, else 2x the epoch where it stopped rising; within the T4 budget)")
    p.add_argument("--date", type=_date, default=None, help="YYYYMMDD in the file names (default: today)")
    p.add_argument("--teacher", type=_number(int, 0), default=None,
                   help="distil from this trial's architecture, trained first from scratch on the same data "
                        "(default: no teacher)")
    p.add_argument("--distill-weight", type=_number(float, 0), default=1.0, help="weight of the distillation loss term")
    p.add_argument("--final", choices=list(FINALS), default=None,
                   help=("how the scored training (export's retrain and the notebook's) ends: "
                         + "; ".join(f"{k}: {v}" for k, v in FINALS.items())
                         + f" (default: {DEFAULT_FINAL}; all for a pairs study)").replace("%", "%%"))
    p.add_argument("--members", type=_members, default="auto", metavar="auto|N",
                   help="train N networks of the candidate apart and submit their averaged scores (an ensemble, its "
                        "parameters counted in full); auto: 2 where they earn the size points of one and fit the T4 "
                        "budget, else 1 (default: auto)")
    p.add_argument("--time-limit", type=_duration, default=None,
                   help="bound this command here (e.g. 30m): confirm gets at most half, the retrain ends by the limit; "
                        "the notebook's schedule is unchanged (default: none; fill then retrains until the profile's "
                        "deadline)")
    _confirm_options(p, "--confirm-")
    p.add_argument("--no-confirm", action="store_true",
                   help="export the best single-run candidate without confirming the top of the ranking first")
    _debug_option(p, argparse.SUPPRESS)
    p.set_defaults(func=cmd_export)


def _moved_root_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", default=None,
                   help="dataset folder, when it moved since the search (default: the stored one; "
                                                "NAME=PATH,NAME=PATH for a combined dataset)")


def _reference_sizes_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reference-sizes", type=_number(float, 0, inclusive=False), nargs="+", default=None,
                   help="competitors' model sizes in millions of parameters, the same for report, confirm and "
                        "export (default: the profile's)")


def _confirm_options(p: argparse.ArgumentParser, prefix: str) -> None:
    """`--top`, `--protocol` and `--runs` (confirm), or the same with `prefix` ("--confirm-": export)."""
    p.add_argument(f"{prefix}top", dest="confirm_top", type=_number(int, 1), default=None,
                   help="candidates of the ranking to confirm, the finalists (the best exportable ones by their "
                        f"single score) (default: as many as the study's last confirm, else {DEFAULT_TOP})")
    p.add_argument(f"{prefix}protocol", dest="confirm_protocol", choices=Protocol.NAMES, default=None,
                   help="how each finalist is retrained: folds, on prompt-grouped folds of the study's training and "
                        "validation images; seeds, with other seeds on the study's own split (default: the study's "
                        f"last, else {DEFAULT_PROTOCOL}: bench/NOTES.md)")
    p.add_argument(f"{prefix}runs", f"{prefix}folds", dest="confirm_runs", type=_number(int, 2), default=None,
                   help=f"runs per finalist, folds or seeds (default: the study's last, else {DEFAULT_RUNS})")


def _add_confirm(sub) -> None:
    p = _subcommand(sub, "confirm", "retrain the finalists several times under one protocol; rank them by the mean",
                    "Retrain the best exportable candidates (the finalists) from scratch --runs times under one "
                    "protocol: prompt-grouped folds of the study's training and validation images (test prompts "
                    "stay out), or other seeds on the study's split; rank them by their mean score: export then "
                    "takes the best finalist. Resumes where it stopped; the study keeps its protocol and finalists "
                    "for later confirms and exports.",
                    ["confirm --study a3k", "confirm --study a3k --top 5 --runs 5",
                     "confirm --study a3k --protocol seeds"])
    _study_options(p, required=True)
    _moved_root_option(p)
    _confirm_options(p, "--")
    _reference_sizes_option(p)
    _debug_option(p, argparse.SUPPRESS)
    p.set_defaults(func=cmd_confirm)


def _add_predict(sub) -> None:
    p = _subcommand(sub, "predict", "score images with a checkpoint; metrics too when labels exist",
                    "Score a folder of images (or a labelled dataset, printing its metrics) with a trial checkpoint "
                    "or an exported model, or choose the better image of each pair of a CSV.",
                    ["predict --model runs/a3k/trials/00012.pt --root some/folder/of/images",
                     "predict --model runs/a3k/trials/00012.pt --data agiqa3k --root ../shared/data/agiqa3k",
                     "predict --model runs/pairs/trials/00003.pt --pairs test/pairs.csv"])
    p.add_argument("--model", required=True, help="checkpoint (.pt / exported .pth)")
    p.add_argument("--data", default="folder", choices=PREDICT_DATASETS, metavar="DATASET",
                   help=f"{' | '.join(PREDICT_DATASETS)} (folder: unlabelled images)")
    p.add_argument("--root", default=None, help="image folder or dataset folder")
    p.add_argument("--pairs", default=None,
                   help="instead of --root: a CSV of image pairs (images beside it or in images/ beside it); writes "
                        "the chosen image of each pair, and pair accuracy when it has a winner column")
    _pair_columns_option(p, "of the --pairs CSV (the winner column is optional)")
    p.add_argument("--out", default=None, help="CSV to write (default: predictions.csv beside the model)")
    p.add_argument("--device", type=_device, default="auto", help=DEVICES)
    p.add_argument("--cache-dir", default=".cache/images", help="folder of the decoded-image caches")
    _debug_option(p, argparse.SUPPRESS)
    p.set_defaults(func=cmd_predict)


def _add_paper(sub) -> None:
    p = _subcommand(sub, "paper", "LaTeX method section, tables, figures and references of the study for the paper",
                    "Write RUNS_DIR/STUDY/paper/: method.tex, figures/ (PDF + PNG), refs.bib and paper.tex about "
                    "the exported model (export/export.json), else the top of the ranking.",
                    ["paper --study a3k", "paper --study a3k --pdf"])
    _study_options(p, required=True)
    p.add_argument("--pdf", action="store_true", help="also compile paper.pdf (needs pdflatex)")
    p.add_argument("--title", default=None, help="the paper's title (default: a working title)")
    p.add_argument("--authors", nargs="+", default=None, help="author names, one argument each (default: a TODO)")
    p.add_argument("--ablations", nargs="+", default=[], metavar="FILE",
                   help="--out JSON files of bench/quality.py and bench/ladder.py, one ablation table each")
    _debug_option(p, argparse.SUPPRESS)
    p.set_defaults(func=cmd_paper)


SUBCOMMANDS = (_add_search, _add_worker, _add_report, _add_compress, _add_confirm, _add_export, _add_paper,
               _add_predict)
"""One function per subcommand, adding its parser; add a command by adding one here."""


def build_parser() -> Parser:
    parser = Parser(prog="run_search.py", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {importlib.metadata.version('liqa-nas')}")
    _debug_option(parser, False)
    parser.set_defaults(func=demo)
    sub = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def demo_steps() -> list[tuple[str, list[str]]]:
    """The demo's steps, (what, argv) each: about 5 minutes on 2 CPU cores in all, so its export names its
    epochs and a time limit (a curve that still rises would otherwise plan a deadline-long retrain)."""
    study = ["--study", DEMO["study"]]
    return [
        ("search the built-in synthetic AIGC-like set", ["search", *study, "--trials", str(DEMO["trials"]),
         "--space", DEMO["space"], "--n-synthetic", str(DEMO["n_synthetic"]),
         "--trial-budget", str(DEMO["trial_budget_s"]), "--max-epochs", str(DEMO["max_epochs"])]),
        ("report: Pareto page and ranking", ["report", *study, "--top", "5"]),
        ("compress the best trial (prune 50 %, int8, fp16)", ["compress", *study, "--top", "1", "--ratios", "0.5",
                                                             "--finetune-epochs", "3"]),
        ("report again, with the compressed variants", ["report", *study, "--top", "5"]),
        ("confirm the best two on 2 prompt-grouped folds", ["confirm", *study, "--top", "2", "--runs", "2"]),
        ("export the confirmed winner (confirm's finalists and folds, so nothing more to confirm): retrain from "
         "scratch, write the submission",
         ["export", *study, "--team", "demo", "--epochs", str(DEMO["export_epochs"]),
          "--time-limit", DEMO["export_limit"]]),
    ]


def demo(args: argparse.Namespace | None = None) -> int:
    """The whole flow on the synthetic set: search, report, compress the best trial, export it."""
    parser, steps = build_parser(), demo_steps()
    for i, (what, argv) in enumerate(steps, 1):
        print(f"\n=== demo {i}/{len(steps)}: {what}\n$ python run_search.py {' '.join(argv)}")
        step = parser.parse_args(argv)
        step.func(step)
    print(f"\ndone: open runs/{DEMO['study']}/report/report.html; run with --help for the real commands")
    return 0


def error_message(err: BaseException) -> str:
    """The one line a user error is reported as."""
    if isinstance(err, (sqlite3.OperationalError, sqlalchemy.exc.OperationalError)):
        cause = getattr(err, "orig", None) or err
        text = f"the study storage cannot be used ({cause}): check that the run directory (--runs-dir) or the " \
               "--storage database exists and can be written"
    elif isinstance(err, OSError) and err.strerror and err.filename is not None:
        text = f"{err.strerror}: {err.filename}"
    else:
        text = str(err)
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    """Run the command line; a user error prints `error: ...` (one line) and returns 2."""
    argv = sys.argv[1:] if argv is None else argv
    args = None
    try:
        args = build_parser().parse_args(argv)
        quiet_optuna()
        return args.func(args)
    except USER_ERRORS as err:
        if args is not None and args.debug:
            raise
        print(f"error: {error_message(err)}", file=sys.stderr)
        return 2
    except WorkersFailed as err:  # a worker died: its trial is retried on resume, nothing to trace back
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if args is not None and args.debug:
            raise
        print(INTERRUPTED_LINES.get(getattr(args, "command", None), INTERRUPTED_TRIALS), file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())

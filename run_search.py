#!/usr/bin/env python3
"""Command line of the search system: search, worker, predict (and, with no arguments, the demo).

    python run_search.py search --data agiqa3k --root PATH --study NAME --trials N
    python run_search.py worker --storage URL --study NAME
    python run_search.py predict --model FILE --data agiqa3k --root PATH
    python run_search.py            # the whole flow on the built-in synthetic set
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from search.study import LOCAL_SETTINGS, StudyConfig, default_storage_url, quiet_optuna, run_search, run_worker

DEMO = dict(study="demo", trials=8, space="tiny", n_synthetic=1200, trial_budget_s=60.0, max_epochs=12)


def _study_config(args: argparse.Namespace) -> StudyConfig:
    return StudyConfig(
        dataset=args.data, root=str(Path(args.root).resolve()) if args.root else None, targets=args.targets, n_synthetic=args.n_synthetic,
        profile=args.profile, space=args.space or ("tiny" if args.data == "synthetic" else "default"),
        val_fraction=args.val_fraction, test_fraction=args.test_fraction, seed=args.seed, trial_budget_s=args.trial_budget,
        max_epochs=args.max_epochs, batch_size=args.batch_size, eval_views=args.eval_views,
        pretrain_shares=args.pretrain_shares, ema_decays=args.ema_decays,
        sampler=args.sampler, flops_objective=args.flops_objective, early_stop=not args.no_early_stop,
        t4_efficiency=args.t4_efficiency, device=args.device, cache_dir=str(Path(args.cache_dir).resolve()),
    )


def cmd_search(args: argparse.Namespace) -> int:
    run_dir = Path(args.runs_dir) / args.study
    cfg = _study_config(args)
    study = run_search(cfg, args.study, args.trials, run_dir, storage_url=args.storage, workers=args.workers)
    print_best(study)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    run_dir = Path(args.runs_dir) / args.study
    storage = args.storage or default_storage_url(run_dir)
    overrides = {k: getattr(args, k) for k in LOCAL_SETTINGS}
    run_worker(storage, args.study, args.trials, run_dir, overrides, progress=not args.quiet)
    return 0


def _open(args: argparse.Namespace):
    """The study named by --study/--storage/--runs-dir, its settings and run directory."""
    from search.study import load_study

    run_dir = Path(args.runs_dir) / args.study
    storage = args.storage or default_storage_url(run_dir)
    if storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).exists():
        raise SystemExit(f"no study storage at {storage}: run `run_search.py search --study {args.study}` first")
    study, cfg = load_study(args.study, storage)
    return study, cfg, run_dir, storage


def cmd_report(args: argparse.Namespace) -> int:
    from results.report import format_ranking, write_report
    from search.profiles import get_profile

    from compress.variants import VariantStore

    study, cfg, run_dir, storage = _open(args)
    variants = VariantStore(storage, study.study_name).frame()
    ranked = write_report(study, get_profile(cfg.profile), run_dir / "report", variants=variants,
                          reference_sizes_m=args.reference_sizes)
    print(format_ranking(ranked, args.top))
    print(f"\nwrote {run_dir / 'report' / 'trials.csv'} and {run_dir / 'report' / 'report.html'}")
    return 0


def cmd_compress(args: argparse.Namespace) -> int:
    from compress.stage import compress_study

    study, cfg, run_dir, storage = _open(args)
    frame = compress_study(study, cfg, run_dir, storage, ratios=tuple(args.ratios), top_k=args.top,
                           importance=args.importance, finetune_epochs=args.finetune_epochs,
                           iterative_steps=args.iterative_steps)
    cols = ["id", "params", "bytes", "score", "plcc", "srcc", "krcc", "rmse"]
    print(frame[cols].sort_values("id").to_string(index=False, float_format=lambda v: f"{v:.4f}") if len(frame) else "no candidates")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from results.export import export_submission

    study, cfg, run_dir, _ = _open(args)
    result = export_submission(study, cfg, run_dir, args.team, trial=args.trial, epochs=args.epochs, date=args.date,
                               teacher=args.teacher, distill_weight=args.distill_weight)
    s = result.summary
    print(f"exported trial #{s['trial']}: {s['summary']}")
    print(f"  params {s['params']:,}  validation score {s['validation_score']:.3f}  estimated composite "
          f"{s['estimated_composite']:.1f}  epochs {s['epochs']}  estimated T4 {s['estimated_t4_s'] / 60:.1f} min  "
          f"retrain here {s['measured_retrain_s']:.0f}s")
    print(f"  {result.weights}\n  {result.notebook}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from search.predict import predict_to_csv

    out = predict_to_csv(args.model, data=args.data, root=args.root, out=args.out, cache_dir=Path(args.cache_dir),
                         device=args.device)
    print(f"wrote {out}")
    return 0


def print_best(study) -> None:
    """Print the trial with the best score (and the Pareto front's size) for a quick look."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        print("no completed trial yet")
        return
    best = max(complete, key=lambda t: t.values[0])
    m = best.user_attrs.get("metrics", {})
    pruned = len(study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)))
    print(f"\n{len(complete)} complete, {pruned} stopped early; Pareto front: {len(study.best_trials)} trials")
    print(f"best trial #{best.number}: {best.user_attrs.get('summary')}")
    print(f"  params {best.user_attrs['params']:,}  FLOPs {best.user_attrs['flops']:,}  epochs {best.user_attrs['epochs_run']}"
          f"  est. T4 {best.user_attrs['t4_s']:.1f}s  wall {best.user_attrs['wall_s']:.1f}s")
    print("  validation " + "  ".join(f"{k.upper()} {m[k]:.3f}" for k in ("plcc", "srcc", "krcc", "rmse") if k in m)
          + f"  corr_score {best.values[0]:.3f}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run_search.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--study", default="default", help="study name; its run directory is RUNS_DIR/STUDY")
        p.add_argument("--runs-dir", default="runs")
        p.add_argument("--storage", default=None, help="SQLAlchemy URL (default: SQLite in the run directory)")
        p.add_argument("--trials", type=int, default=20, help="finished trials the study should hold")
        p.add_argument("--root", default=None, help="dataset folder (overrides the stored one when joining)")
        p.add_argument("--device", default="auto")
        p.add_argument("--cache-dir", default=".cache/images")

    p = sub.add_parser("search", help="create or resume an Optuna study")
    common(p)
    p.add_argument("--data", default="synthetic", help="synthetic | agiqa3k | agiqa1k | aigiqa20k")
    p.add_argument("--targets", nargs="+", default=None, help="score columns (default: the dataset's quality MOS)")
    p.add_argument("--n-synthetic", type=int, default=1200)
    p.add_argument("--profile", default="icme2026-aigc")
    p.add_argument("--space", default=None, help="default | small | tiny (default: tiny for synthetic, else default)")
    p.add_argument("--val-fraction", type=float, default=None, help="share of prompts for validation (default: the profile's)")
    p.add_argument("--test-fraction", type=float, default=None,
                   help="share of prompts held out of the search, scored once per trial (default: the profile's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trial-budget", type=float, default=300.0, help="training budget per trial, T4 seconds")
    p.add_argument("--max-epochs", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--eval-views", type=int, default=1, choices=(1, 5, 10))
    p.add_argument("--pretrain-shares", type=float, nargs="+", default=StudyConfig().pretrain_shares,
                   help="shares of a trial's budget that may go to self-supervised pretraining (0 = none)")
    p.add_argument("--ema-decays", type=float, nargs="+", default=StudyConfig().ema_decays,
                   help="weight-averaging decays the search picks from (0 = off)")
    p.add_argument("--sampler", default="tpe", choices=("tpe", "nsga2", "random"))
    p.add_argument("--flops-objective", action="store_true", help="minimise FLOPs as a third objective")
    p.add_argument("--no-early-stop", action="store_true")
    p.add_argument("--t4-efficiency", type=float, default=StudyConfig.t4_efficiency)
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes on this machine (default: 1 on a CPU, search.device.TRIALS_PER_GPU per GPU)")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("worker", help="join an existing study (any machine that reaches its storage)")
    common(p)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("report", help="CSV of every trial, interactive Pareto page, ranking by composite score")
    p.add_argument("--study", required=True)
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--storage", default=None)
    p.add_argument("--top", type=int, default=10, help="rows of the ranking to print")
    p.add_argument("--reference-sizes", type=float, nargs="+", default=None,
                   help="competitors' model sizes in millions of parameters (default: the profile's)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("compress", help="prune and quantize the Pareto-front candidates, measure each variant")
    p.add_argument("--study", required=True)
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--storage", default=None)
    p.add_argument("--ratios", type=float, nargs="+", default=[0.3, 0.5], help="parameter reductions to prune to")
    p.add_argument("--top", type=int, default=None, help="the K best trials instead of the Pareto front")
    p.add_argument("--importance", default="magnitude", choices=("magnitude", "taylor"))
    p.add_argument("--finetune-epochs", type=int, default=None, help="default: a quarter of the trial's epochs")
    p.add_argument("--iterative-steps", type=int, default=1)
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("export", help="retrain the chosen candidate from scratch, write TEAM_DATE_model.pth + notebook")
    p.add_argument("--study", required=True)
    p.add_argument("--team", required=True)
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--storage", default=None)
    p.add_argument("--trial", type=int, default=None, help="export this trial (default: best estimated composite score)")
    p.add_argument("--epochs", type=int, default=None, help="final retrain epochs (default: 2x the trial's, within budget)")
    p.add_argument("--date", default=None, help="YYYYMMDD in the file names (default: today)")
    p.add_argument("--teacher", type=int, default=None,
                   help="distil from this trial's architecture, trained first from scratch on the same data")
    p.add_argument("--distill-weight", type=float, default=1.0, help="weight of the distillation loss term")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("predict", help="score images with a checkpoint; metrics when labels exist")
    p.add_argument("--model", required=True, help="checkpoint (.pt / exported .pth)")
    p.add_argument("--data", default="folder", help="folder (unlabelled images) | agiqa3k | agiqa1k | aigiqa20k")
    p.add_argument("--root", required=True, help="image folder or dataset folder")
    p.add_argument("--out", default=None, help="CSV to write (default: predictions.csv beside the model)")
    p.add_argument("--device", default="auto")
    p.add_argument("--cache-dir", default=".cache/images")
    p.set_defaults(func=cmd_predict)
    return parser


def demo() -> int:
    """The whole flow on the synthetic set: search, report, compress the best trial, export it."""
    parser, study = build_parser(), ["--study", DEMO["study"]]
    steps = [
        ("search the built-in synthetic AIGC-like set", ["search", *study, "--trials", str(DEMO["trials"]),
         "--space", DEMO["space"], "--n-synthetic", str(DEMO["n_synthetic"]),
         "--trial-budget", str(DEMO["trial_budget_s"]), "--max-epochs", str(DEMO["max_epochs"])]),
        ("report: Pareto page and ranking", ["report", *study, "--top", "5"]),
        ("compress the best trial (prune 50 %, int8, fp16)", ["compress", *study, "--top", "1", "--ratios", "0.5",
                                                             "--finetune-epochs", "3"]),
        ("report again, with the compressed variants", ["report", *study, "--top", "5"]),
        ("export: retrain from scratch, write the submission", ["export", *study, "--team", "demo"]),
    ]
    for i, (what, argv) in enumerate(steps, 1):
        print(f"\n=== demo {i}/{len(steps)}: {what}\n$ python run_search.py {' '.join(argv)}")
        args = parser.parse_args(argv)
        args.func(args)
    print(f"\ndone: open runs/{DEMO['study']}/report/report.html; run with --help for the real commands")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    quiet_optuna()
    if not argv:
        return demo()
    args = build_parser().parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

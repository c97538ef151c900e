"""Does a study find what the hand-built ladder found, in the time a user gives it?

Four arms on one dataset (the AGIQA-3K dev part), each given the same wall time on this machine, all
scored on the same prompt-grouped test part that no study sees (the study's own `test_fraction`):
- `tpe-warm`: TPE starting from the known recipes (`search/study/known_recipes.json`),
- `tpe`: TPE from nothing, `random`: random search from nothing; each is a `--space small` study run
  for `--study-share` of the arm's time (`run_search(time_limit_s=...)`), then `confirm` of its top
  `--confirm-top` on `--confirm-folds` folds (0: the best single run is taken), then the confirmed winner
  retrained on all training and validation images for `--retrain-minutes` (a deadline, as the notebook
  has) and scored on the test part;
- `ladder`: the best known recipe retrained the same way, no search.
Wall-clock timed: run it with the cores to itself (no test suite or other benchmark beside it), or
state the load. Resumable: each arm's study lives in `--runs-dir` (a killed arm resumes its study)
and finished arms are kept in `--out`.

    python bench/search_efficacy.py --root ../shared/data/agiqa3k --minutes 40 --out efficacy.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from optuna.trial import TrialState

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from results.candidates import candidate_recipe, ranked_candidates  # noqa: E402
from results.confirm import confirm  # noqa: E402
from search.device import resolve_device  # noqa: E402
from search.profiles import get_profile  # noqa: E402
from search.study import StudyConfig, StudyData, TrialRecord, run_search  # noqa: E402
from search.study.known import known_recipes, rebuild  # noqa: E402
from search.train.recipe import Recipe  # noqa: E402
from search.train.retrain import Deadline, retrain  # noqa: E402

ARMS = ("tpe-warm", "tpe", "random", "ladder")
OPEN_ENDED = 1000
"""Epochs a final retrain asks for; its deadline refits them to what fits."""


def _config(args: argparse.Namespace, sampler: str) -> StudyConfig:
    return StudyConfig(dataset=args.data, root=args.root, space="small", test_fraction=0.2, seed=args.seed,
                       trial_budget_s=args.trial_budget, max_epochs=args.max_epochs, sampler=sampler,
                       device=args.device, cache_dir=args.cache_dir, n_synthetic=args.n_synthetic)


def test_score(recipe: Recipe, cfg: StudyConfig, minutes: float) -> tuple[float, float]:
    """(the profile's score on the study's test prompts, seconds) of `recipe` retrained from scratch on
    every training and validation image for `minutes` (open-ended: the deadline refits the epochs and
    the schedule, as in the notebook, so every arm trains for the same time)."""
    recipe.train.epochs = OPEN_ENDED
    data = StudyData(cfg)
    size = recipe.spec.input.resize
    train, val, test = data.split(size)
    task, everything = cfg.task, data.all(size)
    start = time.time()
    device = resolve_device(cfg.device)
    model, _ = retrain(recipe, task.subset(everything, np.concatenate([train, val])), cfg.seed, device,
                       deadline=Deadline(minutes * 60))
    metrics = task.evaluate(model, task.subset(everything, test), recipe.spec.input.crop, recipe.train.eval_views,
                            device)
    return float(get_profile(cfg.profile).score(metrics)), time.time() - start


def run_arm(arm: str, args: argparse.Namespace) -> dict:
    cfg = _config(args, "random" if arm == "random" else "tpe")
    if arm == "ladder":
        recipe, _ = rebuild(known_recipes()[0], cfg)
        score, seconds = test_score(recipe, cfg, args.retrain_minutes)
        return {"arm": arm, "candidate": known_recipes()[0].name, "test_score": score, "retrain_s": seconds}
    start = time.time()
    study = run_search(cfg, arm, 10_000, Path(args.runs_dir) / arm, workers=args.workers, progress=False,
                       time_limit_s=args.minutes * 60 * args.study_share, seed_recipes=arm == "tpe-warm")
    search_s = time.time() - start
    records = [TrialRecord.from_trial(t) for t in study.trials]
    counts = {
        "arm": arm, "search_s": search_s,
        "trials_complete": sum(r.state == TrialState.COMPLETE for r in records),
        "stopped_early": sum(bool(r.stopped_early) and not r.time_limit for r in records),
        "stopped_by_time_limit": sum(bool(r.time_limit) for r in records),
        "refused_over_budget": sum(r.over_budget is not None for r in records),
        "refused_over_cap": sum(r.over_cap is not None for r in records),
        "shrunk_for_budget": sum(r.shrunk is not None for r in records),
    }
    if not counts["trials_complete"]:
        return {**counts, "test_score": None, "candidate": "no trial completed in the time"}
    ranked = (confirm(study, cfg, args.confirm_top, args.confirm_folds, progress=False) if args.confirm_top
              else ranked_candidates(study, get_profile(cfg.profile)))
    confirm_s = time.time() - start - search_s
    chosen = ranked[ranked["export"]].iloc[0]
    recipe = candidate_recipe(chosen, study)
    kept = recipe.to_dict()  # before the retrain makes its epochs open-ended: what the trial trained
    score, seconds = test_score(recipe, cfg, args.retrain_minutes)
    return {
        **counts, "confirm_s": confirm_s, "retrain_s": seconds, "best_single_val": float(ranked["score"].max()),
        "candidate": chosen["id"], "summary": chosen["summary"],
        "params": int(chosen["params"]), "chosen_val": float(chosen["score"]),
        "confirm_mean": float(chosen.get("confirm_mean", np.nan)),
        "confirm_sd": float(chosen.get("confirm_sd", np.nan)),
        "test_score": score, "recipe": kept,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="agiqa3k")
    parser.add_argument("--root", default=None)
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--minutes", type=float, default=40.0, help="wall time of one study arm: search + confirm")
    parser.add_argument("--study-share", type=float, default=0.7, help="share of --minutes the search gets")
    parser.add_argument("--retrain-minutes", type=float, default=10.0, help="the winner's final retrain (every arm)")
    parser.add_argument("--trial-budget", type=float, default=20.0, help="T4 seconds per trial")
    parser.add_argument("--max-epochs", type=int, default=8)
    parser.add_argument("--confirm-top", type=int, default=2, help="0: export the best single run, unconfirmed")
    parser.add_argument("--confirm-folds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto; every arm's search, confirm and retrain")
    parser.add_argument("--workers", type=int, default=1, help="worker processes per study arm")
    parser.add_argument("--n-synthetic", type=int, default=240, help="with --data synthetic (a quick check)")
    parser.add_argument("--runs-dir", default="runs/efficacy")
    parser.add_argument("--cache-dir", default=".cache/images")
    parser.add_argument("--out", default="efficacy.json")
    args = parser.parse_args()
    out = Path(args.out)
    done = json.loads(out.read_text()) if out.exists() else []
    for arm in args.arms:
        if any(r["arm"] == arm for r in done):
            continue
        row = run_arm(arm, args)
        print(json.dumps(row))
        done.append(row)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(done, indent=1))
        tmp.replace(out)


if __name__ == "__main__":
    main()

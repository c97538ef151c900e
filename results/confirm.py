"""Confirmation before export: the top of the ranking retrained on prompt-grouped folds.

One trial is one seed on one validation split, and the seed spread of one recipe (0.025 on average,
0.073 at most, bench/NOTES.md) is about the size of the differences between architectures, so the top
of a ranking by single runs is partly noise. `confirm` retrains each of the `top` best exportable
candidates from scratch with its recipe (its planned epochs) on `folds` prompt-grouped folds of the
study's training and validation images (the test prompts stay out), each fold with its own seed shared
by every candidate, and stores the fold scores in the study (`CONFIRM_ATTR`) and the protocol
(`PROTOCOL_ATTR`). The finalists are the `top` best by their single-run composite
(`results.candidates.finalists`), so the set settles; the ranking (`results.candidates.rank`) compares
them with each other by their means, apart from the single-run rows, and export takes the best one. A
resumed run skips the folds already stored; a part-way one counts for nothing until it is resumed.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import optuna
import pandas as pd
from tqdm.auto import tqdm

from results.candidates import CONFIRM_ATTR, PROTOCOL_ATTR, candidate_recipe, finalists, ranked_candidates
from search.data import grouped_kfold
from search.device import resolve_device
from search.profiles import get_profile
from search.study import StudyConfig, StudyData
from search.train.loop import seed_everything
from search.train.recipe import Recipe
from search.train.retrain import Deadline
from space import build_model

FOLD_SEED = 1000
"""Fold f trains with seed `study seed + FOLD_SEED + f`: the same for every candidate, apart from trials' seeds."""


def fold_score(recipe: Recipe, cfg: StudyConfig, data: StudyData, folds: int, fold: int,
               time_limit: Deadline | None = None) -> float | None:
    """The profile's score of `recipe` trained from scratch on all folds but `fold` of the study's
    training and validation images, scored on `fold`; None when `time_limit` ended its training before
    its epochs ran (a shortened fold is not the protocol's, so it is not scored)."""
    size = recipe.spec.input.resize
    train, val, _ = data.split(size)
    pool = np.concatenate([train, val])
    everything = data.all(size)
    groups = np.asarray(everything.groups, dtype=object)[pool]
    fit_idx, score_idx = grouped_kfold(groups, folds, seed=cfg.seed)[fold]
    task = cfg.task
    fit, held = task.subset(everything, pool[fit_idx]), task.subset(everything, pool[score_idx])
    train_cfg = recipe.train
    train_cfg.seed = cfg.seed + FOLD_SEED + fold
    train_cfg.time_budget_s = None if time_limit is None else max(1e-3, time_limit.left())
    seed_everything(train_cfg.seed)
    model = build_model(recipe.spec)
    device = resolve_device(cfg.device)
    if task.train(model, fit, None, train_cfg, device=device).epochs_run < train_cfg.epochs:
        return None
    metrics = task.evaluate(model, held, recipe.spec.input.crop, train_cfg.eval_views, device)
    return float(get_profile(cfg.profile).score(metrics))


def confirm(study: optuna.Study, cfg: StudyConfig, top: int = 3, folds: int = 3, variants: pd.DataFrame | None = None,
            reference_sizes_m: Sequence[float] | None = None, progress: bool = True,
            time_limit: Deadline | None = None) -> pd.DataFrame:
    """Retrain the `top` best exportable candidates on `folds` prompt-grouped folds (the folds already
    stored are kept) and return the ranking with their confirmed scores. With `time_limit`, no fold starts
    that its candidate's trial time says would end after it (the rest stay missing, resumed later)."""
    if top < 1 or folds < 2:
        raise ValueError(f"confirm needs at least 1 candidate and 2 folds, got top {top} and folds {folds}")
    ranked = ranked_candidates(study, get_profile(cfg.profile), variants, reference_sizes_m)
    chosen = finalists(ranked, top)
    if not chosen:
        raise ValueError(f"study {study.study_name!r} has no completed trial within the caps to confirm")
    study.set_user_attr(PROTOCOL_ATTR, {"folds": folds})  # finalists are compared on these folds only
    stored: dict = dict(study.user_attrs.get(CONFIRM_ATTR, {}))
    data = StudyData(cfg, progress=progress)
    seconds = fold_seconds(ranked)
    for cid, fold in tqdm(_missing(chosen, stored, folds), desc=f"confirm {study.study_name}", unit="fold",
                          disable=not progress):
        if time_limit is not None and seconds[cid] > time_limit.left():
            tqdm.write(f"confirm stopped: a fold of {cid} takes about {seconds[cid]:.0f} s here, "
                       f"{max(0.0, time_limit.left()):.0f} s are left of the time limit (the rest resume later)")
            break
        score = fold_score(candidate_recipe(cid, study, variants), cfg, data, folds, fold, time_limit)
        if score is None:
            tqdm.write(f"confirm stopped: the time limit ended fold {fold} of {cid} before its epochs ran; it is not "
                       "stored (the rest resume later)")
            break
        if stored.get(cid, {}).get("folds") != folds:  # none yet, or stored for another number of folds
            stored[cid] = {"folds": folds, "scores": {}}
        stored[cid]["scores"][str(fold)] = score
        study.set_user_attr(CONFIRM_ATTR, stored)  # after every fold: an interrupted run keeps what it did
    return ranked_candidates(study, get_profile(cfg.profile), variants, reference_sizes_m)


def fold_seconds(ranked: pd.DataFrame) -> dict[str, float]:
    """About how long one fold of each ranked candidate trains here: its trial's time on this machine (the
    same epochs on about as many images); the median trial's for a variant, which records none."""
    wall = pd.to_numeric(ranked["wall_s"], errors="coerce")
    typical = float(wall.median()) if wall.notna().any() else 0.0
    return {cid: typical if pd.isna(w) else float(w) for cid, w in zip(ranked["id"], wall)}


def confirm_seconds(study: optuna.Study, cfg: StudyConfig, top: int, folds: int, variants: pd.DataFrame | None = None,
                    reference_sizes_m: Sequence[float] | None = None) -> tuple[int, float]:
    """(folds still to run, about how many seconds they take here) of confirming the `top` best candidates."""
    ranked = ranked_candidates(study, get_profile(cfg.profile), variants, reference_sizes_m)
    missing = _missing(finalists(ranked, top), study.user_attrs.get(CONFIRM_ATTR, {}), folds)
    seconds = fold_seconds(ranked)
    return len(missing), sum(seconds[cid] for cid, _ in missing)


def needs_confirming(study: optuna.Study, cfg: StudyConfig, top: int, folds: int, variants: pd.DataFrame | None = None,
                     reference_sizes_m: Sequence[float] | None = None) -> bool:
    """Whether one of the `top` best exportable candidates lacks `folds` stored fold scores."""
    ranked = ranked_candidates(study, get_profile(cfg.profile), variants, reference_sizes_m)
    return bool(_missing(finalists(ranked, top), study.user_attrs.get(CONFIRM_ATTR, {}), folds))


def _missing(ids, stored: dict, folds: int) -> list[tuple[str, int]]:
    """(candidate id, fold) of every fold of `ids` that `stored` lacks for `folds` folds (all of a
    candidate's folds when its stored scores were for another number of folds)."""
    def has(cid: str, fold: int) -> bool:
        entry = stored.get(cid, {})
        return entry.get("folds") == folds and str(fold) in entry.get("scores", {})
    return [(cid, f) for cid in ids for f in range(folds) if not has(cid, f)]

"""Confirmation before export: the top of the ranking retrained k times under one protocol.

One trial is one seed on one validation split, and the seed spread of one recipe (0.025 on average, 0.073 at
most, bench/NOTES.md) is about the size of the differences between architectures, so the top of a ranking by
single runs is partly noise. `confirm` retrains each of the `top` best exportable candidates from scratch with
its recipe (its planned epochs) k times under one protocol (`results.candidates.Protocol`): "folds", k prompt-
grouped folds of the study's training and validation images (the test prompts stay out), or "seeds", k seeds on
the study's own split (trained on its training part, scored on its validation part); run i trains with its own
seed, shared by every candidate. It stores the run scores in the study (`CONFIRM_ATTR`) and the protocol and
number of finalists (`PROTOCOL_ATTR`). The finalists are the `top` best by their single-run composite
(`results.candidates.finalists`), so the set settles; the ranking (`results.candidates.rank`) compares them with
each other by their means, apart from the single-run rows, and export takes the best one. A resumed run skips
the runs already stored; a part-way one counts for nothing until it is resumed. Which protocol predicts the test
prompts better was measured (bench/protocol.py, bench/NOTES.md "Which confirm protocol predicts the test"):
`DEFAULT_PROTOCOL`.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np
import optuna
import pandas as pd
from tqdm.auto import tqdm

from results.candidates import (
    CONFIRM_ATTR, PROTOCOL_ATTR, Protocol, candidate_recipe, confirm_protocol, finalists, ranked_candidates,
)
from search.data import grouped_kfold
from search.device import resolve_device
from search.profiles import get_profile
from search.study import StudyConfig, StudyData
from search.train.loop import seed_everything
from search.train.recipe import Recipe
from search.train.retrain import Deadline
from space import build_model

FOLD_SEED = 1000
"""Run i of a protocol trains with seed `study seed + FOLD_SEED + i`: the same for every candidate, apart from
trials' seeds."""
DEFAULT_PROTOCOL = "folds"
"""The protocol `confirm` (and export, which runs it) uses unless told otherwise: folds and seeds tied within the
noise on AGIQA-3K (Spearman with the test prompts 0.67 and 0.76 over three studies of 10 candidates, the pooled
difference's 95 % interval [-0.35, +0.07], bench/NOTES.md, issue 32), and folds scores every study image, not the
validation part the finalists were chosen on."""
DEFAULT_RUNS = 3
"""Runs per finalist unless told otherwise (or the study's protocol says)."""
DEFAULT_TOP = 3
"""Finalists unless told otherwise (or the study's last confirm says)."""


def chosen_protocol(study: optuna.Study, name: str | None = None, k: int | None = None) -> Protocol:
    """The protocol a confirm of `study` runs: `name` and `k` where given, else the study's own
    (`confirm_protocol`, so a later confirm or export resumes under it and the finalists settle), else
    `DEFAULT_PROTOCOL` with `DEFAULT_RUNS`."""
    stored = confirm_protocol(study)
    return Protocol(name if name is not None else stored.name if stored else DEFAULT_PROTOCOL,
                    k if k is not None else stored.k if stored else DEFAULT_RUNS)


def chosen_top(study: optuna.Study, top: int | None = None) -> int:
    """How many finalists a confirm of `study` takes: `top` where given, else as many as its last confirm took,
    else `DEFAULT_TOP`."""
    if top is not None:
        if top < 1:
            raise ValueError(f"confirm needs at least 1 finalist, got top {top}")
        return top
    return study.user_attrs.get(PROTOCOL_ATTR, {}).get("top") or DEFAULT_TOP


def protocol_parts(proto: Protocol, cfg: StudyConfig, data: StudyData, size: int,
                   index: int) -> tuple[np.ndarray, np.ndarray]:
    """(training, scored) indices into `data.all(size)` of run `index` of `proto`: for folds, all folds of the
    study's training and validation images but fold `index`, and fold `index`; for seeds, the study's own
    training and validation parts."""
    train, val, _ = data.split(size)
    if proto.name == "seeds":
        return train, val
    pool = np.concatenate([train, val])
    groups = np.asarray(data.all(size).groups, dtype=object)[pool]
    fit_idx, score_idx = grouped_kfold(groups, proto.k, seed=cfg.seed)[index]
    return pool[fit_idx], pool[score_idx]


def run_seed(cfg: StudyConfig, index: int) -> int:
    """The seed run `index` of every protocol trains with (`FOLD_SEED`)."""
    return cfg.seed + FOLD_SEED + index


def fold_score(recipe: Recipe, cfg: StudyConfig, data: StudyData, proto: Protocol, index: int,
               time_limit: Deadline | None = None) -> float | None:
    """The profile's score of `recipe` trained from scratch as run `index` of `proto` (`protocol_parts`,
    `run_seed`); None when `time_limit` ended its training before its epochs ran (a shortened run is not the
    protocol's, so it is not scored)."""
    fit, held = protocol_parts(proto, cfg, data, recipe.spec.input.resize, index)
    return trained_score(recipe, cfg, data, fit, held, run_seed(cfg, index), time_limit)


def trained_score(recipe: Recipe, cfg: StudyConfig, data: StudyData, fit: np.ndarray, held: np.ndarray, seed: int,
                  time_limit: Deadline | None = None) -> float | None:
    """The profile's score on images `held` of `recipe` trained from scratch on images `fit` (indices into
    `data.all(size)`) with `seed`; None when `time_limit` ended its training before its epochs ran."""
    everything = data.all(recipe.spec.input.resize)
    task = cfg.task
    train_cfg = replace(recipe.train, seed=seed,
                        time_budget_s=None if time_limit is None else max(1e-3, time_limit.left()))
    seed_everything(train_cfg.seed)
    model = build_model(recipe.spec)
    device = resolve_device(cfg.device)
    if task.train(model, task.subset(everything, fit), None, train_cfg, device=device).epochs_run < train_cfg.epochs:
        return None
    metrics = task.evaluate(model, task.subset(everything, held), recipe.spec.input.crop, train_cfg.eval_views, device)
    return float(get_profile(cfg.profile).score(metrics))


def confirm(study: optuna.Study, cfg: StudyConfig, top: int | None = None, k: int | None = None,
            variants: pd.DataFrame | None = None, reference_sizes_m: Sequence[float] | None = None,
            progress: bool = True, time_limit: Deadline | None = None, protocol: str | None = None) -> pd.DataFrame:
    """Retrain the `top` best exportable candidates (`chosen_top`) `k` times under `protocol` (a `Protocol` name;
    both default to `chosen_protocol`'s; the runs already stored under it are kept) and return the ranking with
    their confirmed scores. With `time_limit`, no run starts that its candidate's trial time says would end after
    it (the rest stay missing, resumed later)."""
    cfg.task.require("confirmable", study.study_name)
    proto, top = chosen_protocol(study, protocol, k), chosen_top(study, top)  # each refuses a bad value
    ranked = ranked_candidates(study, get_profile(cfg.profile), variants, reference_sizes_m)
    chosen = finalists(ranked, top)
    if not chosen:
        raise ValueError(f"study {study.study_name!r} has no completed trial within the caps to confirm")
    study.set_user_attr(PROTOCOL_ATTR, {**proto.to_attr(), "top": top})  # finalists are compared under it only
    stored: dict = dict(study.user_attrs.get(CONFIRM_ATTR, {}))
    data = StudyData(cfg, progress=progress)
    seconds = fold_seconds(ranked)
    for cid, index in tqdm(_missing(chosen, stored, proto), desc=f"confirm {study.study_name} ({proto})", unit="run",
                           disable=not progress):
        if time_limit is not None and seconds[cid] > time_limit.left():
            tqdm.write(f"confirm stopped: a run of {cid} takes about {seconds[cid]:.0f} s here, "
                       f"{max(0.0, time_limit.left()):.0f} s are left of the time limit (the rest resume later)")
            break
        score = fold_score(candidate_recipe(cid, study, variants), cfg, data, proto, index, time_limit)
        if score is None:
            tqdm.write(f"confirm stopped: the time limit ended run {index} ({proto}) of {cid} before its epochs ran; "
                       "it is not stored (the rest resume later)")
            break
        if Protocol.of(stored.get(cid, {})) != proto:  # none yet, or stored under another protocol
            stored[cid] = {**proto.to_attr(), "scores": {}}
        stored[cid]["scores"][str(index)] = score
        study.set_user_attr(CONFIRM_ATTR, stored)  # after every run: an interrupted confirm keeps what it did
    return ranked_candidates(study, get_profile(cfg.profile), variants, reference_sizes_m)


def fold_seconds(ranked: pd.DataFrame) -> dict[str, float]:
    """About how long one fold of each ranked candidate trains here: its trial's time on this machine (the
    same epochs on about as many images); the median trial's for a variant, which records none."""
    wall = pd.to_numeric(ranked["wall_s"], errors="coerce")
    typical = float(wall.median()) if wall.notna().any() else 0.0
    return {cid: typical if pd.isna(w) else float(w) for cid, w in zip(ranked["id"], wall)}


def confirm_seconds(study: optuna.Study, cfg: StudyConfig, top: int | None = None, k: int | None = None,
                    variants: pd.DataFrame | None = None, reference_sizes_m: Sequence[float] | None = None,
                    protocol: str | None = None) -> tuple[int, float]:
    """(runs still to do, about how many seconds they take here) of confirming the `chosen_top(study, top)` best
    candidates under `chosen_protocol(study, protocol, k)`."""
    ranked = ranked_candidates(study, get_profile(cfg.profile), variants, reference_sizes_m)
    missing = _missing(finalists(ranked, chosen_top(study, top)), study.user_attrs.get(CONFIRM_ATTR, {}),
                       chosen_protocol(study, protocol, k))
    seconds = fold_seconds(ranked)
    return len(missing), sum(seconds[cid] for cid, _ in missing)


def _missing(ids, stored: dict, proto: Protocol) -> list[tuple[str, int]]:
    """(candidate id, run index) of every run of `ids` that `stored` lacks under `proto` (all of a candidate's
    runs when its stored scores were under another protocol, or another k)."""
    def has(cid: str, index: int) -> bool:
        entry = stored.get(cid, {})
        return Protocol.of(entry) == proto and str(index) in entry.get("scores", {})
    return [(cid, i) for cid in ids for i in range(proto.k) if not has(cid, i)]

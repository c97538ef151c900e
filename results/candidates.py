"""Every candidate of a study in one frame, ranked by estimated composite score, and the recipe export
trains for each.

Rows are the study's trials (kind "trial") and its compressed variants (`compress.variants`):
"pruned" (pruned and fine-tuned weights), "scratch" (that pruned architecture trained from scratch
with its trial's recipe), "int8" and "fp16" (storage formats of a trial's or a pruned model's weights).
The submission notebook trains from scratch, so only trials and scratch variants are exportable:
pruned weights descend from a trial's trained weights, and int8/fp16 change the file, not the
parameter count the challenge ranks. Nothing over the profile's caps is ranked.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from results.score import composite_score, size_tier
from search.profiles import Profile
from search.train.recipe import Recipe
from search.study import TrialRecord
from search.train.recipe import TrainConfig
from space import ArchSpec

METRICS = ("plcc", "srcc", "krcc", "rmse", "plcc_fit", "rmse_fit", "pair_acc")
CANDIDATE_KINDS = ("trial", "pruned", "scratch", "int8", "fp16")
EXPORTABLE = ("trial", "scratch")
"""Kinds a from-scratch notebook reproduces."""
COMPOSITE_COLUMNS = ("composite", "performance_points", "size_points", "size_percentile", "size_tier")
CONFIRM_ATTR = "confirm"
"""The study's user attribute holding confirmed run scores (`results.confirm`): {candidate id: {"protocol": name,
"k": k, "scores": {run index: score}}} (a study confirmed before seeds existed stores {"folds": k, "scores": ...})."""
PROTOCOL_ATTR = "confirm_protocol"
"""The study's user attribute naming the protocol its finalists are compared under (`Protocol.to_attr`) and how
many finalists `confirm` last took ("top")."""
CONFIRM_COLUMNS = ("confirm_mean", "confirm_sd", "confirm_n", "confirm_protocol", "confirm_scores", "finalist")


@dataclass(frozen=True)
class Protocol:
    """How `results.confirm` retrains each finalist k times, each run with its own seed shared by every candidate:
    "folds", k prompt-grouped folds of the study's training and validation images (a run trains on (k-1)/k of
    them and scores the rest); "seeds", k seeds on the study's own split (a run trains on its training part and
    scores its validation part). Scores of one protocol (name and k) are never compared with another's."""

    name: str
    k: int
    NAMES: ClassVar[tuple[str, ...]] = ("folds", "seeds")
    RUN_NOUN: ClassVar[dict[str, str]] = {"folds": "prompt-grouped fold", "seeds": "seed"}
    """What one run of each protocol is called."""
    HOW: ClassVar[dict[str, str]] = {
        "folds": "retrained from scratch on prompt-grouped folds of the training and validation images",
        "seeds": "retrained from scratch with other seeds on the study's own split"}
    """How each protocol's runs are made, for a reader."""

    def __post_init__(self) -> None:
        if self.name not in self.NAMES or int(self.k) < 2:
            raise ValueError(f"a confirm protocol is one of {', '.join(self.NAMES)} with k >= 2, got {self.name!r} "
                             f"with k {self.k}")

    def to_attr(self) -> dict:
        return {"protocol": self.name, "k": int(self.k)}

    @classmethod
    def of(cls, entry: dict) -> "Protocol | None":
        """The protocol a stored `PROTOCOL_ATTR` or `CONFIRM_ATTR` entry names (an older {"folds": k}: folds)."""
        if "k" in entry:
            return cls(entry.get("protocol", "folds"), int(entry["k"]))
        return cls("folds", int(entry["folds"])) if entry.get("folds") else None

    def __str__(self) -> str:
        return f"{self.k} {self.name}"

    @property
    def words(self) -> str:
        """The runs, for a reader: "3 prompt-grouped folds", "3 seeds"."""
        return f"{self.k} {self.RUN_NOUN[self.name]}s"


def confirm_protocol(study: optuna.Study) -> Protocol | None:
    """The study's confirm protocol (what `confirm` last ran with; for a study confirmed before the protocol was
    stored, folds, as many as any candidate has most), or None when nothing was confirmed."""
    stored = Protocol.of(study.user_attrs.get(PROTOCOL_ATTR, {}))
    if stored is not None:
        return stored
    folds = [entry.get("folds", 0) for entry in study.user_attrs.get(CONFIRM_ATTR, {}).values()]
    return Protocol("folds", max(folds)) if folds and max(folds) >= 2 else None


def add_confirmed(frame: pd.DataFrame, study: optuna.Study) -> pd.DataFrame:
    """Add the confirmed scores (`CONFIRM_COLUMNS`: mean, sample sd and number of runs, NaN where a row has
    none under the study's protocol, the protocol's name and the run scores in run order where it has some, and
    `finalist`: all the protocol's runs are stored). Scores stored under
    another protocol (another name or k) are left out (protocols never mix); a part-way confirm shows its runs
    but is no finalist until it is resumed."""
    frame = frame.copy()
    protocol = confirm_protocol(study)
    k = protocol.k if protocol else None
    stored = study.user_attrs.get(CONFIRM_ATTR, {})
    scores = [[score for _, score in sorted(entry.get("scores", {}).items(), key=lambda run: int(run[0]))]
              if protocol is not None and Protocol.of(entry := stored.get(cid, {})) == protocol else []
              for cid in frame["id"]]
    frame["confirm_mean"] = [float(np.mean(s)) if s else np.nan for s in scores]
    frame["confirm_sd"] = [float(np.std(s, ddof=1)) if len(s) > 1 else np.nan for s in scores]
    frame["confirm_n"] = [len(s) if s else np.nan for s in scores]
    frame["confirm_protocol"] = [protocol.name if s else None for s in scores]
    frame["confirm_scores"] = [tuple(s) if s else None for s in scores]
    frame["finalist"] = [bool(s) and len(s) == k for s in scores]
    return frame


def trials_frame(study: optuna.Study, profile: Profile) -> pd.DataFrame:
    """One row per trial of the study, every state, with metrics, counts, times and its spec."""
    rows = []
    for r in map(TrialRecord.from_trial, study.get_trials(deepcopy=False)):
        row = {
            "kind": "trial", "id": f"trial {r.number}", "trial": r.number, "state": r.state.name,
            "summary": r.summary or "", "params": r.params, "flops": r.flops, "bytes": r.bytes,
            "score": r.values[0] if r.state == TrialState.COMPLETE else (r.curve or [np.nan])[-1],
            **{m: (r.metrics or {}).get(m, np.nan) for m in METRICS},
            "epochs_planned": r.epochs_planned, "epochs_run": r.epochs_run, "stopped_early": bool(r.stopped_early),
            "wall_s": r.wall_s, "t4_s": r.t4_s, "test_score": np.nan if r.test_score is None else r.test_score,
            "checkpoint": r.checkpoint, "curve": r.curve, "spec": r.spec, "duplicate_of": r.duplicate_of,
            "over_cap": r.over_cap, "over_budget": r.over_budget, "shrunk": r.shrunk,
            "time_limit": bool(r.time_limit), "known_recipe": r.known_recipe,
        }
        if len(r.target_metrics or {}) > 1:  # several dimensions (e.g. SIQA-S): metrics per dimension
            for target, m in r.target_metrics.items():
                row.update({f"{target}_{k}": m.get(k, np.nan) for k in ("srcc", "plcc")})
        rows.append(row)
    return pd.DataFrame(rows)


def _rankable(row: pd.Series, profile: Profile) -> bool:
    """Finished, scored, and its architecture known and within the profile's caps."""
    return (row["state"] == "COMPLETE" and pd.notna(row["score"]) and isinstance(row.get("spec"), dict)
            and profile.caps.allows(ArchSpec.from_dict(row["spec"])))


def add_composite(frame: pd.DataFrame, profile: Profile,
                  reference_sizes_m: Sequence[float] | None = None) -> pd.DataFrame:
    """Add the composite estimate and its parts (`COMPOSITE_COLUMNS`) to rankable rows, from the confirmed
    mean score of a finalist, else the single validation score; NaN elsewhere. `single_composite` is the
    estimate from the single score of every rankable row: what finalists are chosen by."""
    frame = frame.copy()
    parts: dict[str, list] = {c: [] for c in COMPOSITE_COLUMNS}
    single = []
    for _, r in frame.iterrows():
        rankable = _rankable(r, profile)
        single.append(composite_score(float(r["score"]), int(r["params"]), profile, reference_sizes_m).total
                      if rankable else np.nan)
        score = r["confirm_mean"] if r.get("finalist", False) else r["score"]
        est = composite_score(float(score), int(r["params"]), profile, reference_sizes_m) if rankable else None
        parts["composite"].append(est.total if est else np.nan)
        parts["performance_points"].append(est.performance_points if est else np.nan)
        parts["size_points"].append(est.size_points if est else np.nan)
        parts["size_percentile"].append(est.size_percentile if est else np.nan)
        parts["size_tier"].append(size_tier(est.size_percentile, profile) if est else None)
    for column, values in parts.items():
        frame[column] = values
    frame["single_composite"] = single
    return frame


def rank(frame: pd.DataFrame) -> pd.DataFrame:
    """The one ranking (the search summary, compress --top, confirm, report, export and the paper read it):
    rows with a composite estimate; the finalists (confirmed under the study's protocol: the same runs,
    share of data and epochs) first, by their confirmed composite, then the single-run rows apart, by theirs,
    never interleaved (a single score is one draw, the top of many draws biased high; a confirmed mean is not,
    and a fold mean, trained on less data, is biased low, so the two are not compared). Ties: RMSE, then size,
    as the challenge breaks them. Adds `exportable` (the kind can be trained from scratch) and `export` (what
    export takes by default: the first exportable finalist, else the first exportable row)."""
    ranked = frame[frame["composite"].notna()].copy()
    if "finalist" not in ranked:
        ranked["finalist"] = False
    ranked["finalist"] = ranked["finalist"].fillna(False).astype(bool)
    ranked = ranked.sort_values(["finalist", "composite", "rmse", "params"],
                                ascending=[False, False, True, True]).reset_index(drop=True)
    ranked["exportable"] = ranked["kind"].isin(EXPORTABLE)
    pool = ranked["exportable"] & ranked["finalist"]
    pool = pool if pool.any() else ranked["exportable"]
    ranked["export"] = ranked.index == (pool.idxmax() if pool.any() else -1)
    return ranked


def finalists(ranked: pd.DataFrame, top: int) -> list[str]:
    """The ids of the `top` exportable candidates with the best single-run composite: the finalists confirm
    retrains. Confirming does not change a single score, so the set settles: a second export confirms
    nothing, and a study that gains trials confirms only the new ones that enter it."""
    pool = ranked[ranked["exportable"]]
    key = "single_composite" if "single_composite" in pool else "composite"
    return list(pool.sort_values([key, "rmse", "params"], ascending=[False, True, True])["id"].head(top))


def ranked_trials(ranked: pd.DataFrame, top: int) -> list[int]:
    """The numbers of the first `top` trials of the ranking, in its order (what `compress --top` takes)."""
    return [int(n) for n in ranked.loc[ranked["kind"] == "trial", "trial"].head(top)]


def candidates_frame(study: optuna.Study, profile: Profile, variants_frame: pd.DataFrame | None = None,
                     reference_sizes_m: Sequence[float] | None = None) -> pd.DataFrame:
    """Every trial (every state) and every variant, with composite columns where rankable."""
    frame = trials_frame(study, profile)
    if variants_frame is not None and len(variants_frame):
        frame = pd.concat([frame, variants_frame], ignore_index=True)
    return add_composite(add_confirmed(frame, study), profile, reference_sizes_m)


def ranked_candidates(study: optuna.Study, profile: Profile, variants_frame: pd.DataFrame | None = None,
                      reference_sizes_m: Sequence[float] | None = None) -> pd.DataFrame:
    """Trials and variants within the caps ranked together by estimated composite score (see `rank`)."""
    return rank(candidates_frame(study, profile, variants_frame, reference_sizes_m))


def export_choice(ranked: pd.DataFrame) -> pd.Series | None:
    """The row of `ranked` (`rank`) export takes, or None when nothing is exportable."""
    return ranked[ranked["export"]].iloc[0] if ranked["export"].any() else None


def candidate_recipe(candidate: pd.Series | str | int, study: optuna.Study,
                     variants_frame: pd.DataFrame | None = None) -> Recipe:
    """The recipe export trains for `candidate`: a ranked row, an id ("trial 3" or a variant id) or a
    trial number. A trial: its spec and training settings. A scratch variant: the pruned spec and the
    settings it was trained with (its trial's). Any other kind raises ValueError naming what to export."""
    if isinstance(candidate, pd.Series):
        candidate = candidate["id"]
    if isinstance(candidate, str) and candidate.startswith("trial "):
        candidate = int(candidate.removeprefix("trial "))
    if isinstance(candidate, (int, np.integer)):
        trial = study.trials[candidate] if 0 <= candidate < len(study.trials) else None
        if trial is None or trial.state != TrialState.COMPLETE:
            raise ValueError(f"trial {candidate} is not a completed trial of study {study.study_name!r}")
        return TrialRecord.from_trial(trial).trained()
    found = (variants_frame[variants_frame["id"] == candidate]
             if variants_frame is not None and len(variants_frame) else [])
    if len(found) == 0:
        raise ValueError(f"no trial or compressed variant {candidate!r} in study {study.study_name!r}")
    row = found.iloc[0]
    if row["kind"] == "scratch":
        return Recipe(ArchSpec.from_dict(row["spec"]), TrainConfig.from_dict(row["train_config"]))
    if row["kind"] == "pruned":
        raise ValueError(f"{candidate} holds pruned and fine-tuned weights of trial {row['trial']}, which a "
                         f"from-scratch notebook cannot reproduce: export its scratch variant {candidate}-scratch")
    parent = row["parent"] if isinstance(row["parent"], str) else f"trial {row['trial']}"
    raise ValueError(f"{candidate} is {row['kind']} storage of {parent}: it changes the file, not the parameter "
                     "count the challenge ranks; export that model instead")

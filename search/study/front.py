"""The Pareto front of a study's candidates: fewer parameters against a higher score.

The one rule every stage uses (report, paper, compress): a two-objective front of parameters and the
profile's score, whatever else the study minimises (`--flops-objective` adds FLOPs to Optuna's
objectives, so `study.best_trials` is a three-objective front and keeps larger models that no
parameter/score trade-off justifies).
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def pareto_front(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows no other row beats on both fewer parameters and a higher score, sorted by parameters."""
    done = frame[(frame["state"] == "COMPLETE") & frame["score"].notna()].sort_values(["params", "score"],
                                                                                        ascending=[True, False])
    keep, best = [], -np.inf
    for idx, r in done.iterrows():
        if r["score"] > best:
            keep.append(idx)
            best = r["score"]
    return done.loc[keep]

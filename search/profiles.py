"""Challenge profiles: each challenge's rules in one place.

A profile holds what the search, the report and the export must agree on: the caps a model must fit,
the performance score the organisers compute from the metrics, the notebook time limit, and how model
size turns into points. Add a challenge by adding one `Profile` to `PROFILES`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from search.metrics import corr_score
from space import Caps

ScoreFn = Callable[[dict], float]

VQUALA2025_FIQA_SIZES_M = (
    1.1796, 1.5189, 1.2224, 2.0916, 3.7171, 3.2805, 3.2511, 0.9513, 4.0252, 4.7795, 4.7242, 1.3005, 6.0523,
)
"""Parameter counts (millions) of the 13 final teams of the VQualA 2025 lightweight face-IQA challenge:
the default reference for where a model's size falls among competitors."""


def icme_corr_score(metrics: dict) -> float:
    """(max(PLCC,0) + max(SRCC,0) + max(KRCC,0)) / 3 on raw predictions."""
    return corr_score(metrics["plcc"], metrics["srcc"], metrics["krcc"])


@dataclass(frozen=True)
class Profile:
    """The rules of one challenge."""

    name: str
    caps: Caps
    score: ScoreFn
    score_name: str
    notebook_limit_s: float
    """Wall-clock limit of the whole notebook (train + predict) on the challenge's GPU."""
    export_budget_s: float
    """What the exported final retrain plus inference may spend, in T4 seconds (a safety margin
    below `notebook_limit_s`)."""
    performance_points: float = 50.0
    size_points_max: float = 20.0
    size_tiers: tuple[tuple[float, float], ...] = ((0.10, 20.0), (0.25, 18.0), (0.50, 15.0), (0.75, 10.0), (1.0, 5.0))
    """(fraction of teams at most this large, points): top 10 % smallest earn 20 points, and so on."""
    tier_smoothing: float = 0.05
    """Half-width (in percentile) of the linear ramp between neighbouring tiers."""
    reference_sizes_m: tuple[float, ...] = VQUALA2025_FIQA_SIZES_M
    out_of_reach: dict[str, float] = field(default_factory=lambda: {"paper": 30.0})
    """Points the tool cannot estimate, reported as such."""


PROFILES: dict[str, Profile] = {
    "icme2026-aigc": Profile(
        name="icme2026-aigc",
        caps=Caps(params=10_000_000),
        score=icme_corr_score,
        score_name="corr_score",
        notebook_limit_s=3 * 3600.0,
        export_budget_s=2.5 * 3600.0,
    ),
}
DEFAULT_PROFILE = "icme2026-aigc"


def get_profile(name: str) -> Profile:
    """The profile called `name`; a clear error lists the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; known profiles: {', '.join(sorted(PROFILES))}") from None

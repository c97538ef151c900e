"""The estimated composite challenge score of a candidate: performance points plus size points.

Performance points are the profile's performance weight times the validation score (a proxy for the
test score, which the organisers rank). Size points come from where the model's parameter count falls
among a reference distribution of competitors' sizes: tiers by percentile (top 10 % smallest earn the
most), linearly smoothed within `tier_smoothing` of each tier boundary. The paper's points are out of
reach and reported as such.
"""
from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass
from typing import Sequence

from search.profiles import Profile


@dataclass(frozen=True)
class CompositeEstimate:
    performance_points: float
    size_points: float
    size_percentile: float
    total: float
    """performance + size points: what the tool can estimate (out of performance + size maximum)."""

    def to_dict(self) -> dict:
        return asdict(self)


def size_percentile(params: int, reference_sizes_m: Sequence[float]) -> float:
    """Fraction of reference teams smaller than `params` (ties count half): 0 = smallest of all."""
    if not reference_sizes_m:
        raise ValueError("the reference distribution of competitors' sizes is empty")
    ref = sorted(s * 1e6 for s in reference_sizes_m)
    smaller = bisect.bisect_left(ref, params)
    equal = bisect.bisect_right(ref, params) - smaller
    return (smaller + 0.5 * equal) / len(ref)


def size_points(percentile: float, profile: Profile) -> float:
    """Tier points at `percentile`, ramping linearly across +-tier_smoothing around each boundary."""
    tiers, w = profile.size_tiers, profile.tier_smoothing
    if not tiers:  # the profile gives no points for size
        return 0.0
    for (bound, points), (_, next_points) in zip(tiers, tiers[1:]):
        if percentile < bound - w:
            return points
        if percentile <= bound + w:
            t = (percentile - (bound - w)) / (2 * w) if w > 0 else float(percentile > bound)
            return points + t * (next_points - points)
    return tiers[-1][1]


def size_standing(params: int, profile: Profile,
                  reference_sizes_m: Sequence[float] | None = None) -> tuple[float, float]:
    """(size percentile, size points) of a model of `params` parameters among `reference_sizes_m` (default: the
    profile's)."""
    percentile = size_percentile(params, reference_sizes_m or profile.reference_sizes_m)
    return percentile, size_points(percentile, profile)


def composite_score(score: float, params: int, profile: Profile,
                    reference_sizes_m: Sequence[float] | None = None) -> CompositeEstimate:
    """Estimate the composite points of a model with validation `score` and `params` parameters."""
    if params > profile.caps.params:
        raise ValueError(f"{params:,} parameters exceed the {profile.name} cap of {profile.caps.params:,}")
    percentile, size = size_standing(params, profile, reference_sizes_m)
    perf = profile.performance_points * max(0.0, min(1.0, score / profile.score_max))
    return CompositeEstimate(perf, size, percentile, perf + size)


def size_tier(percentile: float, profile: Profile) -> str:
    """The tier `percentile` falls in, as a percentile range such as "10-25 %" (0 = the smallest team);
    "-" when the profile gives no points for size."""
    lower = 0.0
    for bound, _ in profile.size_tiers:
        if percentile < bound or bound == profile.size_tiers[-1][0]:
            return f"{lower * 100:g}-{bound * 100:g} %"
        lower = bound
    return "-"


def tier_boundaries(profile: Profile, reference_sizes_m: Sequence[float] | None = None) -> list[tuple[float, float]]:
    """(boundary, parameters) for each tier boundary below 100 %: the reference size just above which a
    model's percentile reaches the boundary (the size points ramp across it)."""
    ref_m = sorted(reference_sizes_m or profile.reference_sizes_m)
    return [(bound, next(s * 1e6 for s in ref_m if size_percentile(s * 1e6 + 1, ref_m) >= bound))
            for bound, _ in profile.size_tiers if bound < 1.0]

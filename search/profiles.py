"""Challenge profiles: each challenge's rules in one place.

A profile holds what the search, the report and the export must agree on: the caps a model must fit,
the performance score the organisers compute from the metrics (a function of per-target validation
metrics), the targets and splits, the notebook time limit, and how model size turns into points.
Add a challenge by adding one `Profile` to `PROFILES`, with what the paper and the report say of it (its
title, score formula and words, citation, score kind); `--profile NAME` switches the whole flow.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from search.metrics import corr_score
from space import Caps

ScoreFn = Callable[[dict[str, dict[str, float]]], float]
"""Per-target metrics (target name -> `search.metrics.iqa_metrics` dict) -> the challenge's score."""

CORRELATION = "correlation"
PAIR_ACCURACY = "pair_accuracy"
SCORE_KINDS = (CORRELATION, PAIR_ACCURACY)
"""What a score measures: agreement of predicted with mean opinion scores, or the share of image pairs whose
better image the model picks (a coin scores 0.5)."""

VQUALA2025_FIQA_SIZES_M = (
    1.1796, 1.5189, 1.2224, 2.0916, 3.7171, 3.2805, 3.2511, 0.9513, 4.0252, 4.7795, 4.7242, 1.3005, 6.0523,
)
"""Parameter counts (millions) of the 13 final teams of the VQualA 2025 lightweight face-IQA challenge:
the default reference for where a model's size falls among competitors."""


def _first(per_target: dict[str, dict[str, float]]) -> dict[str, float]:
    return next(iter(per_target.values()))


def icme_corr_score(per_target: dict[str, dict[str, float]]) -> float:
    """(max(PLCC,0) + max(SRCC,0) + max(KRCC,0)) / 3 on raw predictions of the (first) target."""
    m = _first(per_target)
    return corr_score(m["plcc"], m["srcc"], m["krcc"])


def srcc_plcc_mean(per_target: dict[str, dict[str, float]]) -> float:
    """(SRCC + PLCC) / 2 of the (first) target (VQualA 2025)."""
    m = _first(per_target)
    return (m["srcc"] + m["plcc"]) / 2


def siqa_score(per_target: dict[str, dict[str, float]]) -> float:
    """Mean over dimensions of max((SRCC + PLCC) / 2, 0) x 100 (SIQA-S: perception and knowledge)."""
    return sum(max((m["srcc"] + m["plcc"]) / 2, 0.0) * 100 for m in per_target.values()) / len(per_target)


def pair_accuracy_score(per_target: dict[str, dict[str, float]]) -> float:
    """Accuracy of choosing the better image of a pair, on pairs derived from MOS (NTIRE pairwise)."""
    return _first(per_target)["pair_acc"]


def aigiqa20k_score(per_target: dict[str, dict[str, float]]) -> float:
    """(SRCC + PLCC after the 5-parameter logistic fit) / 2, as the AIGIQA-20K paper reports PLCC."""
    m = _first(per_target)
    return (m["srcc"] + m["plcc_fit"]) / 2


@dataclass(frozen=True)
class Profile:
    """The rules of one challenge."""

    name: str
    caps: Caps
    score: ScoreFn
    score_name: str
    description: str
    notebook_limit_s: float
    """Wall-clock limit of the whole notebook (train + predict) on the challenge's GPU."""
    export_budget_s: float
    """What the exported final retrain plus inference may spend, in T4 seconds (a safety margin
    below `notebook_limit_s`)."""
    score_max: float = 1.0
    """The score's best value (100 for percent-style scores); performance points scale by score / score_max."""
    targets: tuple[str, ...] | None = None
    """Score columns the model predicts (None: the dataset's default quality MOS)."""
    val_fraction: float = 0.2
    test_fraction: float = 0.0
    """Share of prompts held out of the search entirely and scored once per finished trial."""
    performance_points: float = 50.0
    size_points_max: float = 20.0
    size_tiers: tuple[tuple[float, float], ...] = ((0.10, 20.0), (0.25, 18.0), (0.50, 15.0), (0.75, 10.0), (1.0, 5.0))
    """(fraction of teams at most this large, points): top 10 % smallest earn 20 points, and so on."""
    tier_smoothing: float = 0.05
    """Half-width (in percentile) of the linear ramp between neighbouring tiers."""
    reference_sizes_m: tuple[float, ...] = VQUALA2025_FIQA_SIZES_M
    out_of_reach: dict[str, float] = field(default_factory=lambda: {"paper": 30.0})
    """Points the tool cannot estimate, reported as such."""
    title: str = ""
    """The challenge in prose, plain text (the paper: "the ICME 2026 Grand Challenge on ..."); empty: `description`."""
    formula: str = ""
    """The score in LaTeX math (the paper's equation); empty: `description` in words."""
    score_words: str = ""
    """The score in words, plain text (the paper's captions and prose); empty: `score_name` with spaces."""
    cite: str | None = None
    """BibTeX key of the challenge (`results.paper.bib.BIB`); None: not cited."""
    score_kind: str = CORRELATION
    """One of `SCORE_KINDS`: a preference-pairs study needs a pair-accuracy profile; the report's chance level
    depends on it."""

    def __post_init__(self):
        if self.score_kind not in SCORE_KINDS:
            raise ValueError(f"profile {self.name!r}: score_kind must be one of {SCORE_KINDS}, got {self.score_kind!r}")

    @property
    def pairwise(self) -> bool:
        """Whether the score is pair accuracy (what a study of preference pairs is scored by)."""
        return self.score_kind == PAIR_ACCURACY


PROFILES: dict[str, Profile] = {
    "icme2026-aigc": Profile(
        name="icme2026-aigc", caps=Caps(params=10_000_000), score=icme_corr_score, score_name="corr_score",
        description="ICME 2026 lightweight AIGC IQA: <= 10M params, mean of PLCC/SRCC/KRCC clipped at 0, size tiers, "
                    "T4 3 h notebook",
        notebook_limit_s=3 * 3600.0, export_budget_s=2.5 * 3600.0,
        title="the ICME 2026 Grand Challenge on Lightweight Neural Networks for AIGC Image Quality Assessment",
        formula=r"S = \tfrac{1}{3}\bigl(\max(\mathrm{PLCC},0)+\max(\mathrm{SRCC},0)+\max(\mathrm{KRCC},0)\bigr)",
        score_words="correlation score", cite="icme2026challenge",
    ),
    "vquala2025-fiqa": Profile(
        name="vquala2025-fiqa", caps=Caps(params=5_000_000, flops=500_000_000), score=srcc_plcc_mean,
        score_name="srcc_plcc",
        description="VQualA 2025 lightweight face IQA: <= 5M params and <= 0.5 GFLOPs per image, (SRCC+PLCC)/2",
        notebook_limit_s=3 * 3600.0, export_budget_s=2.5 * 3600.0, performance_points=100.0, size_tiers=(),
        title="the VQualA 2025 lightweight face image quality challenge",
        formula=r"S = \tfrac{1}{2}(\mathrm{SRCC}+\mathrm{PLCC})", score_words="mean of SRCC and PLCC",
    ),
    "siqa-s": Profile(
        name="siqa-s", caps=Caps(params=10_000_000), score=siqa_score, score_name="siqa_score", score_max=100.0,
        description="SIQA-S: two dimensions from one model, mean of max((SRCC+PLCC)/2, 0) x 100",
        targets=("mos_quality", "mos_align"), notebook_limit_s=3 * 3600.0, export_budget_s=2.5 * 3600.0,
        performance_points=100.0, size_tiers=(), title="the SIQA-S challenge",
        formula=r"S = \tfrac{100}{D}\sum_{d=1}^{D}\max\bigl(\tfrac{1}{2}(\mathrm{SRCC}_d+\mathrm{PLCC}_d),0\bigr)",
        score_words="SIQA-S score",
    ),
    "ntire-pairwise": Profile(
        name="ntire-pairwise", caps=Caps(params=10_000_000), score=pair_accuracy_score, score_name="pair_acc",
        description="NTIRE comparative quality: pick the better image of a pair; pair accuracy",
        notebook_limit_s=3 * 3600.0, export_budget_s=2.5 * 3600.0, performance_points=100.0, size_tiers=(),
        title="the NTIRE comparative quality challenge",
        formula=r"S = \text{share of MOS-ordered image pairs whose order the model predicts}",
        score_words="pair accuracy", score_kind=PAIR_ACCURACY,
    ),
    "aigiqa20k": Profile(
        name="aigiqa20k", caps=Caps(params=10_000_000), score=aigiqa20k_score, score_name="srcc_plcc_fit",
        description="AIGIQA-20K: 7:1:2 prompt-grouped split, PLCC after the 5-parameter logistic fit",
        val_fraction=0.1, test_fraction=0.2, notebook_limit_s=3 * 3600.0, export_budget_s=2.5 * 3600.0,
        performance_points=100.0, size_tiers=(), title="the AIGIQA-20K benchmark protocol",
        formula=r"S = \tfrac{1}{2}(\mathrm{SRCC}+\mathrm{PLCC}_{\text{logistic}})",
        score_words="mean of SRCC and fitted PLCC",
    ),
}
DEFAULT_PROFILE = "icme2026-aigc"


def get_profile(name: str) -> Profile:
    """The profile called `name`; a clear error lists the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; known profiles: {', '.join(sorted(PROFILES))}") from None

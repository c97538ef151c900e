"""The paper's figures: the Pareto front with the size-tier boundaries and the learning curves (PDF + PNG)."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from results.paper.facts import Exported, front_trials
from results.paper.fmt import score_words
from results.score import tier_boundaries
from search.profiles import Profile

SCATTER_STYLES = {  # (kind, state) -> (legend label, marker, colour) in the Pareto figure
    ("trial", "COMPLETE"): ("trial", "o", "#1f77b4"), ("trial", "PRUNED"): ("stopped early", "x", "#aaaaaa"),
    ("scratch", "COMPLETE"): ("pruned spec, from scratch", "*", "#2ca02c"),
    ("pruned", "COMPLETE"): ("pruned + fine-tuned", "D", "#d62728"),
    ("int8", "COMPLETE"): ("int8 weights", "s", "#9467bd"), ("fp16", "COMPLETE"): ("fp16 weights", "^", "#8c564b"),
}
FIGURES = (  # (file stem, caption)
    ("pareto", "Validation score against parameters (log axis) of every trial and compressed variant; the line "
               "is the Pareto front of the trials, the ring the exported model, dotted lines the size-tier boundaries "
               "(share of the reference distribution of competitors' sizes)."),
    ("curves", "Validation score per epoch of every trial (dotted: stopped early; bold: the exported model)."),
)
def pareto_plot(frame: pd.DataFrame, profile: Profile, exp: Exported) -> Figure:
    """Score against parameters (log axis): every candidate, the Pareto front, the size-tier boundaries."""
    fig = Figure(figsize=(3.5, 2.5))
    ax = fig.subplots()
    shown = frame[frame["params"].notna() & frame["score"].notna()]
    for (kind, state), group in shown.groupby(["kind", "state"]):
        label, marker, color = SCATTER_STYLES.get((kind, state), (f"{kind}, {state.lower()}", "P", "#7f7f7f"))
        ax.scatter(group["params"], group["score"], marker=marker, color=color, s=16, label=label, zorder=3)
    front = front_trials(frame)
    if len(front):
        ax.step(front["params"], front["score"], where="post", color="#ff7f0e", lw=1.2, label="Pareto front (trials)",
                zorder=2)
    chosen = shown[(shown["kind"] == "trial") & (shown["trial"] == exp.trial)]
    ax.scatter(chosen["params"], chosen["score"], s=90, facecolors="none", edgecolors="black", lw=1.2,
               label=f"exported (trial {exp.trial})", zorder=4)
    for i, (bound, params) in enumerate(tier_boundaries(profile) if profile.size_tiers else []):
        ax.axvline(params, color="#2ca02c", ls=":", lw=0.9, label="size-tier boundary" if i == 0 else None)
        ax.text(params, 0.98 - 0.12 * (i % 2), f"{bound:.0%}", transform=ax.get_xaxis_transform(), ha="right",
                va="top", fontsize=6, color="#2ca02c")  # alternate heights: neighbouring boundaries lie close
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel(f"validation {score_words(profile)}")
    ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)  # below the data
    return fig


def curves_plot(frame: pd.DataFrame, profile: Profile, exp: Exported) -> Figure:
    """Validation score per epoch of every trial; the exported one bold."""
    fig = Figure(figsize=(3.5, 2.3))
    ax = fig.subplots()
    for _, r in frame[frame["kind"] == "trial"].iterrows():
        curve = r["curve"] or []
        if curve:
            bold = r["trial"] == exp.trial
            ax.plot(range(1, len(curve) + 1), curve, ls=":" if r["state"] == "PRUNED" else "-",
                    lw=2.0 if bold else 0.8, color="black" if bold else None, alpha=1.0 if bold else 0.7,
                    label=f"trial {exp.trial} (exported)" if bold else None)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {score_words(profile)}")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6)
    return fig


def write_figures(frame: pd.DataFrame, profile: Profile, exp: Exported, out_dir: Path) -> list[Path]:
    """The Pareto front and learning curves as PDF (fonts embedded as TrueType, as IEEE asks) and PNG."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    with matplotlib.rc_context({"pdf.fonttype": 42, "font.size": 8}):
        for (stem, _), fig in zip(FIGURES, (pareto_plot(frame, profile, exp), curves_plot(frame, profile, exp))):
            fig.tight_layout()
            for suffix, extra in ((".pdf", {}), (".png", {"dpi": 200})):
                fig.savefig(out_dir / f"{stem}{suffix}", bbox_inches="tight", **extra)  # the legend below too
                paths.append(out_dir / f"{stem}{suffix}")
    return paths

"""The study report: a CSV of every trial and compressed variant, an offline page a person can act on, and the ranking
for the terminal.

`runs/NAME/report/trials.csv` holds one row per trial or variant. `report.html` opens with the run's context
(dataset, profile, space, budget, trials, dates), what export will take and the final schedule it would retrain it
with, a warning when even the best score is near chance, and the ranking of the exportable candidates (trials and
scratch variants) by estimated composite score, with the finalists' confirmed scores (mean +- sd over the confirm
protocol's runs, folds or seeds) and a mark where two neighbours differ by less than the score noise; the storage
copies (int8, fp16) and pruned weights follow in a comparison table against their parents. Then the Pareto front of
parameters (log axis) against the profile's score with the size-tier boundaries (in the legend) and the export
choice marked, a key to the architecture notation, the learning curves and the largest of Optuna's parameter
importances. plotly.js is written beside the page (`plotly.min.js`), so it works offline; without it the page says
so instead of showing empty boxes.
"""
from __future__ import annotations

import datetime
import html
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import optuna
import pandas as pd
import plotly.graph_objects as go
from optuna.importance import get_param_importances
from optuna.trial import TrialState

from results.candidates import EXPORTABLE, candidate_recipe, candidates_frame, export_choice, rank
from results.export import export_line, read_export
from results.schedule import Schedule, candidate_schedule
from results.score import tier_boundaries
from search.profiles import Profile
from search.study import StudyConfig, TrialRecord
from search.study.front import pareto_front
from search.study.record import tally, untrained_text
from space.layers import BLOCK_FAMILIES

__all__ = ["chance_warning", "choice_schedule", "comparison_frame", "exportable_ranking", "format_ranking",
           "run_context", "write_report"]

RANK_COLUMNS = ["kind", "id", "summary", "params", "bytes", "score", "confirmed", "rmse", "composite", "size_points",
                "t4_s", "noise"]
PAGE_ROWS = 30
"""Rows of the ranking shown on the page (trials.csv holds them all)."""
MIN_IMPORTANCE_TRIALS = 20
"""Below this many finished trials, parameter importances mostly reflect noise; the page says so."""
TOP_IMPORTANCES = 15
"""Parameter importances shown: the largest non-zero ones (a study samples 30-40 parameters, half of them
conditional and mostly near zero)."""
SEED_SPREAD = 0.025
"""Seed-to-seed spread of one run's validation score, as a share of the profile's best score: the mean
absolute difference between two seeds of the same recipe on the same fold, 0.025 corr score over the 5
prompt-grouped folds of AGIQA-3K (bench/NOTES.md, "Quality ladder on 2 CPU cores", row "the same, second
seed"). Used for a candidate that is not a confirmed finalist."""
NEAR_CHANCE = 0.2
"""A best score below this share of the profile's best value (a correlation score of 0.2) is near chance."""
NEAR_CHANCE_PAIR_ACC = 0.55
"""The same for pair accuracy, whose chance level is 0.5 rather than 0."""
NOISE_MARK = "&asymp; above"
TIER_STYLES = (("#a1d99b", "dot"), ("#74c476", "dash"), ("#31a354", "dashdot"), ("#006d2c", "longdash"))
"""Colour and dash of the size-tier boundaries, smallest first (each has its own legend entry)."""
STYLES = {  # (kind, state) -> (legend name, marker symbol, colour)
    ("trial", "COMPLETE"): ("trial", "circle", "#1f77b4"),
    ("trial", "PRUNED"): ("trial, stopped early", "x", "#bbbbbb"),
    ("scratch", "COMPLETE"): ("scratch: pruned spec trained from scratch", "star", "#2ca02c"),
    ("pruned", "COMPLETE"): ("pruned + fine-tuned (not exportable)", "diamond", "#d62728"),
    ("int8", "COMPLETE"): ("int8 storage (not exportable)", "square", "#9467bd"),
    ("fp16", "COMPLETE"): ("fp16 storage (not exportable)", "triangle-up", "#8c564b"),
}
KIND_NOTES = {
    "trial": "a search trial: its architecture and recipe, trained from scratch. Exportable.",
    "scratch": "a pruned architecture trained from scratch with its trial's recipe (same epochs and seed rule) "
               "on the study's train split. Exportable: this is how a pruned model can be submitted.",
    "pruned": "channel-pruned and fine-tuned weights of a trained trial. Shown for comparison, not exportable: "
              "the notebook trains from scratch, so it cannot reproduce weights that descend from a trained trial.",
    "int8 / fp16": "storage formats of a trial's or a pruned model's weights. They change the weights file "
                   "(smaller .pth), not the parameter count the challenge ranks, so they move no size points; "
                   "the notebook trains and saves fp32 weights. Not exportable.",
}
def notation() -> list[tuple[str, str]]:
    """The key to the one-line architecture notation (`space.spec_summary`); the stage-block rows are read off the
    registered block families (`space.layers.BLOCK_FAMILIES`), so a family added there is explained here."""
    families = list(BLOCK_FAMILIES.values())

    def without(trait: str) -> str:
        names = [f.title for f in families if not getattr(f, trait)]
        return f" (not for {', '.join(names)})" if names else ""

    return [
        ("conv16, patchify24p2", "stem: a strided 3x3 conv of 16 channels, or a patchify conv of 24 channels "
                                 "over 2x2 patches"),
        (", ".join(f.short for f in families), "stage block: " + ", ".join(f.title for f in families)),
        ("mb32x2", "a stage of 2 MBConv blocks, 32 channels wide"),
        ("k5", "depthwise / conv kernel size 5" + without("kernel")),
        ("e4", "expansion ratio 4 of the block's hidden width" + without("expansion")),
        ("se", "squeeze-excitation gate" + without("has_se")),
        *NOTATION,
    ]


NOTATION = [  # the rest of the key, after the block families' rows
    ("s1", "the stage keeps the resolution (stride 1); otherwise it halves it"),
    ("*", "per-block hidden widths set by pruning"),
    ("avgstd·f2·h64", "head: pooling (avg, avgstd = mean and std, attn = attention pooling), features of the "
                      "last 2 stages fused, an MLP of 64 hidden units (no h: a linear head)"),
    ("192/256+mscn", "inference crop / cached resize in pixels; +mscn: an MSCN contrast channel is added"),
    ("p128x2g4s384f+160/512", "128 px patches of the 512 px image, 2 at random per training step, a 4x4 grid at "
                              "test, also cut from the image reduced to 384 px (s384), each also mirrored (f); "
                              "+160: a 160 px whole-image stream"),
    ("·pattn, ·pmeanstd", "how the patches' features are pooled: a learned softmax weighting, or mean and std "
                          "(no p: the mean)"),
    ("fr7x32/512", "fragments: a 7x7 grid of 32 px patches of the 512 px image, one per cell, spliced into one "
                   "224 px view"),
]


def _shown_metrics(r: pd.Series) -> tuple[str, ...]:
    """The validation metrics of a row: correlations and RMSE of MOS predictions, or the pair accuracy of
    a model trained from preference pairs (which has no MOS to correlate with)."""
    return ("plcc", "srcc", "krcc", "rmse") if pd.notna(r.get("plcc")) else ("pair_acc",)


def _hover(r: pd.Series) -> str:
    m = " ".join(f"{k.upper()} {r[k]:.3f}" for k in _shown_metrics(r) if pd.notna(r.get(k)))
    return (f"<b>{html.escape(str(r['id']))}</b> ({r['kind']}, {r['state']})<br>{html.escape(str(r['summary']))}<br>"
            f"params {int(r['params']):,}" + (f" · FLOPs {int(r['flops']):,}" if pd.notna(r.get("flops")) else "")
            + f"<br>score {r['score']:.3f} · {m}"
            + (f"<br>composite {r['composite']:.1f}" if pd.notna(r.get("composite")) else ""))


def _boundary(fig: go.Figure, x: float, y_range: tuple[float, float], name: str, color: str, dash: str) -> None:
    """A vertical line at `x` across the scores shown, named in the legend (labels on the plot overlap
    when boundaries sit close together on the log axis)."""
    fig.add_trace(go.Scatter(x=[x, x], y=list(y_range), mode="lines", name=name, hoverinfo="name",
                             line=dict(color=color, dash=dash, width=1.5)))


def pareto_figure(frame: pd.DataFrame, profile: Profile, choice: pd.Series | None = None,
                  reference_sizes_m: Sequence[float] | None = None) -> go.Figure:
    """Parameters (log) against the score: every kind in its own marker, the Pareto front of the exportable
    kinds, the cap, the size-tier boundaries of the reference distribution, and `choice` (the export row) ringed."""
    fig = go.Figure()
    shown = frame[frame["params"].notna() & frame["score"].notna()]
    for (kind, state), group in shown.groupby(["kind", "state"]):
        name, symbol, color = STYLES.get((kind, state), (f"{kind}, {state.lower()}", "diamond-open", "#7f7f7f"))
        fig.add_trace(go.Scatter(
            x=group["params"], y=group["score"], mode="markers", name=name,
            marker=dict(symbol=symbol, color=color, size=11 if kind == "scratch" else 9,
                        line=dict(width=0.5, color="#333")),
            text=[_hover(r) for _, r in group.iterrows()], hoverinfo="text",
        ))
    front = pareto_front(frame[frame["kind"].isin(EXPORTABLE)])
    if len(front):
        fig.add_trace(go.Scatter(x=front["params"], y=front["score"], mode="lines", name="Pareto front (exportable)",
                                 line=dict(shape="hv", color="#ff7f0e", width=2), hoverinfo="skip"))
    if choice is not None:
        fig.add_trace(go.Scatter(
            x=[choice["params"]], y=[choice["score"]], mode="markers+text", name=f"export choice: {choice['id']}",
            marker=dict(symbol="circle-open", size=24, color="#000", line=dict(width=3)), text=["export"],
            textposition="top center", hoverinfo="text", hovertext=_hover(choice)))
    y_range = (shown["score"].min(), shown["score"].max()) if len(shown) else (0.0, profile.score_max)
    if profile.size_tiers:
        for (bound, params), (color, dash) in zip(tier_boundaries(profile, reference_sizes_m), TIER_STYLES):
            name = f"size tier: {bound:.0%} of teams smaller ({params / 1e6:.2f}M)"
            _boundary(fig, params, y_range, name, color, dash)
    _boundary(fig, profile.caps.params, y_range, f"cap ({profile.caps.params / 1e6:g}M)", "#999", "dash")
    fig.update_layout(title=f"Pareto front: parameters vs validation {profile.score_name} "
                            "(green lines: size-tier boundaries, smaller is better)",
                      xaxis=dict(type="log", title="parameters"), yaxis=dict(title=profile.score_name),
                      template="plotly_white", height=540, legend=dict(orientation="h", y=-0.18))
    return fig


def curves_figure(frame: pd.DataFrame, profile: Profile) -> go.Figure:
    fig = go.Figure()
    for _, r in frame[frame["kind"] == "trial"].iterrows():
        curve = r["curve"] or []
        if not curve:
            continue
        fig.add_trace(go.Scatter(
            x=list(range(1, len(curve) + 1)), y=curve, mode="lines", name=r["id"],
            line=dict(dash="dot" if r["state"] == "PRUNED" else "solid"),
            hovertext=f"{r['id']}: {r['summary']}", hoverinfo="text+y",
        ))
    fig.update_layout(title=f"Learning curves (validation {profile.score_name} per epoch; dotted = stopped early)",
                      xaxis_title="epoch", yaxis_title=profile.score_name, template="plotly_white", height=420)
    return fig


def importance_figure(study: optuna.Study) -> go.Figure | None:
    """The `TOP_IMPORTANCES` largest non-zero of Optuna's parameter importances for the score, or None
    with too few completed trials."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 3:
        return None
    try:
        with warnings.catch_warnings():  # few trials per choice is expected early in a study
            warnings.simplefilter("ignore", UserWarning)
            imp = get_param_importances(study, target=lambda t: t.values[0])
    except (RuntimeError, ValueError):
        return None
    names = [n for n in imp if imp[n] > 0][:TOP_IMPORTANCES][::-1]
    fig = go.Figure(go.Bar(x=[imp[n] for n in names], y=names, orientation="h", marker_color="#2ca02c"))
    fig.update_layout(title=f"Parameter importances for the score: the {len(names)} largest non-zero of {len(imp)} "
                            "(Optuna's default evaluator)", template="plotly_white",
                      height=max(300, 22 * len(names) + 120), xaxis_title="importance")
    return fig


def _t4(seconds: float) -> str:
    if pd.isna(seconds):
        return "-"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def _finalist(r: pd.Series) -> bool:
    """Confirmed on every run of the study's protocol (`results.candidates.add_confirmed`)."""
    return bool(r.get("finalist", False)) and pd.notna(r.get("confirm_mean"))


def _estimate(r: pd.Series, profile: Profile) -> tuple[float, float]:
    """A row's score and its standard error: a finalist's confirmed mean over its `confirm_n` runs (error
    confirm_sd / sqrt(n)), else the search's single score (error `SEED_SPREAD`)."""
    spread = SEED_SPREAD * profile.score_max
    if _finalist(r):
        sd = r["confirm_sd"] if pd.notna(r.get("confirm_sd")) else spread
        return float(r["confirm_mean"]), float(sd) / float(np.sqrt(r["confirm_n"]))
    return float(r["score"]), spread


def exportable_ranking(ranked: pd.DataFrame, profile: Profile) -> pd.DataFrame:
    """The exportable rows of `ranked` (`results.candidates.rank`) in its order, renumbered, with `noise`:
    True where a row's composite differs from the row above by less than one standard error of the two
    scores' difference (in performance points; the size points carry no noise), so their order is not
    established: for two finalists, paired over their runs (`_paired_error`). Only rows of one group are
    compared: finalists with finalists, single runs with single runs."""
    rows = ranked[ranked["exportable"]].reset_index(drop=True)
    est = [_estimate(r, profile) for _, r in rows.iterrows()]
    scale = profile.performance_points / profile.score_max
    noise = [False] * min(1, len(rows))
    for i in range(1, len(rows)):
        (above, e_above), (score, e) = est[i - 1], est[i]
        gap = scale * (above - score) + rows.at[i - 1, "size_points"] - rows.at[i, "size_points"]
        same_group = rows.at[i - 1, "finalist"] == rows.at[i, "finalist"]
        error = _paired_error(rows.iloc[i - 1], rows.iloc[i])
        noise.append(bool(same_group and abs(gap) <= scale * (np.hypot(e_above, e) if error is None else error)))
    rows["noise"] = noise
    return rows


def _paired_error(above: pd.Series, row: pd.Series) -> float | None:
    """The standard error of two finalists' mean difference, paired run by run (run i of a protocol is the same
    fold and seed for every candidate, so what a hard fold does to both cancels; with seeds on one split the
    pairing gains less, but the estimate stays fair); None unless both are finalists with the same runs."""
    a, b = above.get("confirm_scores"), row.get("confirm_scores")
    if not (_finalist(above) and _finalist(row)) or not isinstance(a, tuple) or not isinstance(b, tuple) \
            or len(a) != len(b) or len(a) < 2:
        return None
    return float(np.std(np.subtract(a, b), ddof=1) / np.sqrt(len(a)))


def chance_warning(ranking: pd.DataFrame, profile: Profile) -> str | None:
    """A warning when even the best candidate's score is near chance (`NEAR_CHANCE`, `NEAR_CHANCE_PAIR_ACC`)."""
    if ranking.empty:
        return None
    best = max(_estimate(r, profile)[0] for _, r in ranking.iterrows())
    pairs = profile.pairwise
    bar = (NEAR_CHANCE_PAIR_ACC if pairs else NEAR_CHANCE) * profile.score_max
    if best >= bar:
        return None
    return (f"The best validation {profile.score_name} is {best:.3f}, near chance (below {bar:g}"
            + ("; a coin scores 0.5" if pairs else "") + "): the ranking mostly orders noise. Give the trials more "
            "training (--trial-budget, --max-epochs) or more data before acting on it.")


def comparison_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The variants export cannot take (int8 and fp16 storage copies, pruned weights), by trial and id."""
    return frame[~frame["kind"].isin(EXPORTABLE)].sort_values(["trial", "id"]).reset_index(drop=True)


def run_context(study: optuna.Study, profile: Profile, now: datetime.datetime | None = None) -> str:
    """One line: dataset, profile, space, trial budget, trials finished, when they ran and when this was written."""
    stored = study.user_attrs.get("config")
    parts = [f"profile {profile.name}"]
    if stored:
        cfg = StudyConfig.from_dict(stored)
        size = f"{cfg.n_synthetic} generated images" if cfg.dataset == "synthetic" else cfg.root
        parts = [f"dataset {cfg.dataset} ({size})", *parts, f"space {cfg.space}",
                 f"trial budget {cfg.trial_budget_s:g} T4 s (at most {cfg.max_epochs} epochs)"]
    trials = study.get_trials(deepcopy=False)
    counts = tally([TrialRecord.from_trial(t) for t in trials])
    complete, stopped = counts["complete"], counts["stopped"]
    shrunk = counts["shrunk to fit the budget"]
    parts.append(f"{complete + stopped} trials finished ({complete} complete, {stopped} stopped early"
                 + (f"; proposals not trained: {untrained_text(counts)}" if untrained_text(counts) != "none" else "")
                 + (f"; {shrunk} shrunk to fit the budget" if shrunk else "") + ")")
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    if starts and ends:
        parts.append(f"trials ran {min(starts):%Y-%m-%d %H:%M} to {max(ends):%Y-%m-%d %H:%M}")
    parts.append(f"report {(now or datetime.datetime.now()):%Y-%m-%d %H:%M}")
    return " · ".join(parts)


def _table(table_id: str, head: list[str], rows: list[tuple[str, list]]) -> str:
    """An HTML table (rows: (class, cells)) in a box that scrolls sideways when the window is narrow."""
    body = "".join(f"<tr{f' class={cls!r}' if cls else ''}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
                   for cls, cells in rows)
    return (f"<div class='scroll'><table id='{table_id}'><thead><tr>" + "".join(f"<th>{h}</th>" for h in head)
            + f"</tr></thead><tbody>{body}</tbody></table></div>")


def _confirmed_cell(r: pd.Series) -> str:
    """A finalist's confirmed mean +- sd over its protocol's runs ("3 folds", "3 seeds"); "single run" for a row
    ranked by its one score (with the runs a part-way confirm has stored, not counted)."""
    n, name = r.get("confirm_n"), r.get("confirm_protocol") or "folds"
    runs = f"{int(n)} {name if n != 1 else name.removesuffix('s')}" if pd.notna(n) else ""
    if _finalist(r):
        sd = f"{r['confirm_sd']:.3f}" if pd.notna(r.get("confirm_sd")) else "-"
        return f"{r['confirm_mean']:.3f} &plusmn; {sd} ({runs})"
    return f"single run{f' ({runs} stored, not counted)' if runs else ''}"


def _ranking_table(ranking: pd.DataFrame, score_name: str = "score") -> str:
    """The top of the exportable ranking as an HTML table; the export row is highlighted, a row within
    noise of the one above is marked, and confirmed scores get a column when any row has one."""
    confirmed = "finalist" in ranking and ranking["finalist"].any()
    head = ["#", "", "vs above", "id", "kind", "composite", "performance pts", "size pts", "size tier",
            "size percentile", "params", "FLOPs", "T4 time", f"{score_name} (search)",
            *([f"{score_name} confirmed (mean &plusmn; sd)"] if confirmed else []), "RMSE", "architecture"]
    rows = []
    for i, r in ranking.head(PAGE_ROWS).iterrows():
        cells = [i + 1, "&#9654; export" if r["export"] else "", NOISE_MARK if r["noise"] else "",
                 html.escape(str(r["id"])), r["kind"], f"{r['composite']:.1f}", f"{r['performance_points']:.1f}",
                 f"{r['size_points']:.1f}", r["size_tier"], f"{r['size_percentile']:.0%}", f"{int(r['params']):,}",
                 f"{r['flops'] / 1e6:,.1f} M" if pd.notna(r.get("flops")) else "-", _t4(r.get("t4_s", np.nan)),
                 f"{r['score']:.3f}", *([_confirmed_cell(r)] if confirmed else []),
                 f"{r['rmse']:.3f}" if pd.notna(r.get("rmse")) else "-",
                 f"<code>{html.escape(str(r['summary']))}</code>"]
        rows.append(("export" if r["export"] else "noise" if r["noise"] else "", cells))
    return _table("ranking", head, rows)


def _delta(r: pd.Series, key: str, fmt: str) -> str:
    value = r.get(f"d_{key}")
    return "-" if value is None or pd.isna(value) else format(value, fmt)


def _comparison_table(compared: pd.DataFrame, score_name: str) -> str:
    """Storage copies and pruned weights beside what they were made from (not ranked: not exportable)."""
    head = ["id", "kind", "made from", "params", "&Delta; params", "file bytes", "&Delta; bytes", score_name,
            f"&Delta; {score_name}", "composite", "architecture"]
    rows = [("", [html.escape(str(r["id"])), r["kind"],
                  html.escape(r["parent"] if isinstance(r.get("parent"), str) else f"trial {int(r['trial'])}"),
                  f"{int(r['params']):,}", _delta(r, "params", "+,.0f"),
                  f"{int(r['bytes']):,}" if pd.notna(r.get("bytes")) else "-", _delta(r, "bytes", "+,.0f"),
                  f"{r['score']:.3f}", _delta(r, "score", "+.3f"),
                  f"{r['composite']:.1f}" if pd.notna(r.get("composite")) else "-",
                  f"<code>{html.escape(str(r['summary']))}</code>"]) for _, r in compared.iterrows()]
    return _table("comparison", head, rows)


def choice_schedule(study: optuna.Study, choice: pd.Series | None, variants: pd.DataFrame | None) -> Schedule | None:
    """The final schedule export would retrain `choice` (`export_choice`) with (`results.schedule`), or None
    without a choice."""
    if choice is None:
        return None
    return candidate_schedule(study, choice["id"], candidate_recipe(choice["id"], study, variants))


def _choice_box(choice: pd.Series | None, profile: Profile, schedule: Schedule | None, last_export: str | None) -> str:
    last = (f"<br><span id='last-export'>{html.escape(last_export[0].upper() + last_export[1:])}.</span>"
            if last_export else "")
    if choice is None:
        return ("<div class='choice'>No exportable candidate within the caps yet: finish a trial (or a scratch "
                "variant) under the caps first.</div>")
    return (f"<div class='choice' id='export-choice'><b>Export will take {html.escape(str(choice['id']))}</b> "
            f"({choice['kind']}): <code>{html.escape(str(choice['summary']))}</code><br>estimated composite "
            f"{choice['composite']:.1f} = {choice['performance_points']:.1f} performance + {choice['size_points']:.1f} "
            f"size points (tier {choice['size_tier']}, smaller than {1 - choice['size_percentile']:.0%} of the "
            f"reference teams) · {int(choice['params']):,} parameters · validation {profile.score_name} "
            f"{choice['score']:.3f}. The paper's {sum(profile.out_of_reach.values()):g} points are not estimated."
            f"<br>Final retrain: <b>{html.escape(schedule.what)}</b> ({html.escape(schedule.reason)})."
            "<br><small>Override with <code>run_search.py export --trial N</code> or <code>--variant ID</code> "
            "(a scratch variant), and the schedule with <code>--epochs N</code> or <code>--epochs fill</code>."
            "</small>" + last + "</div>")


CSS = """html{overflow-y:scroll}body{font-family:sans-serif;max-width:1200px;margin:auto;padding:0 12px;color:#222}
.scroll{overflow-x:auto;max-width:100%}table{border-collapse:collapse;font-size:13px}
td,th{border-bottom:1px solid #ddd;padding:3px 6px;text-align:right}td{white-space:nowrap}
td:has(code){text-align:left;min-width:260px;white-space:normal}tr.export{background:#fff3c4;font-weight:bold}
tr.noise td:nth-child(3){color:#b06000;font-weight:bold}
.choice{background:#fff3c4;border:1px solid #e0b400;padding:10px;margin:12px 0}
.context{color:#555;font-size:14px}.warn{background:#fdecea;border:1px solid #d93025;padding:10px;margin:12px 0}
dt{font-family:monospace;font-weight:bold}dd{margin:0 0 4px 24px}"""
PLOTLY_MISSING = ("<div class='warn' id='plotly-missing'><b>The plots cannot be drawn:</b> <code>plotly.min.js</code> "
                  "was not found beside this page (or JavaScript is off). Keep the report folder together, or rerun "
                  "<code>run_search.py report</code>. The ranking table below does not need it.</div>"
                  "<script>if (window.Plotly) document.getElementById('plotly-missing').remove();</script>")


def _plot(fig: go.Figure) -> str:
    """The figure's div, resized with the window (the page keeps its vertical scrollbar, so the width a
    plot is first drawn at does not shrink under it)."""
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"responsive": True})


def _importance_part(study: optuna.Study) -> str:
    n_complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    importance = importance_figure(study)
    if importance is None:
        return "<p>Parameter importances need at least 3 finished trials.</p>"
    caution = (f"<div class='warn'>Computed from only {n_complete} finished trials: with fewer than about "
               f"{MIN_IMPORTANCE_TRIALS}, importances mostly reflect noise. Read them as a hint.</div>"
               if n_complete < MIN_IMPORTANCE_TRIALS else "")
    return caution + _plot(importance)


def _page(study: optuna.Study, profile: Profile, frame: pd.DataFrame, ranked: pd.DataFrame,
          reference_sizes_m: Sequence[float] | None, variants: pd.DataFrame | None, last_export: str | None) -> str:
    choice = export_choice(ranked)
    schedule = choice_schedule(study, choice, variants)
    ranking = exportable_ranking(ranked, profile)
    warning = chance_warning(ranking, profile)
    compared = comparison_frame(frame)
    spread = SEED_SPREAD * profile.score_max
    kinds = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in KIND_NOTES.items())
    key = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in notation())
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(study.study_name)}: search report</title><script src='plotly.min.js'></script>"
        f"<style>{CSS}</style></head><body><h1>Study {html.escape(study.study_name)}</h1>"
        f"<p class='context' id='context'>{html.escape(run_context(study, profile))} · cap {profile.caps.params:,} "
        "parameters" + (f", {profile.caps.flops:,} FLOPs" if profile.caps.flops else "") + "</p>"
        + PLOTLY_MISSING + (f"<div class='warn' id='near-chance'><b>Near chance.</b> {html.escape(warning)}</div>"
                            if warning else "") + _choice_box(choice, profile, schedule, last_export)
        + f"<h2>Ranking of the exportable candidates</h2><p>{len(ranking)} trials and scratch variants within the "
        "caps, by estimated composite score; ties broken by RMSE, then size. The finalists (confirmed on every "
        "run of the study's protocol, folds or seeds) come first, by their confirmed means; the single-run rows "
        "follow apart, by their one score, never interleaved: the best of many single runs is biased high, a fold "
        "mean (trained on less data) low. Export takes the first row "
        f"(highlighted). <b>{NOISE_MARK}</b>: this row's composite differs from the row above, in its group, by "
        "less than the score noise explains (one standard error of the difference of the two scores: for two "
        "finalists, of their run-by-run differences; else the measured seed spread of "
        f"&plusmn;{spread:g}), so the "
        "order of the two is not established. Size percentile: the share of reference teams smaller than the model "
        "(0 % = smallest); T4 time: estimated training time on a T4 (search budget model).</p>"
        + _ranking_table(ranking, profile.score_name)
        + (f"<h2>Storage copies and pruned weights (not ranked)</h2><p>{len(compared)} variants a from-scratch "
           "notebook cannot reproduce, beside what they were made from (&Delta;: against it). int8 and fp16 shrink "
           "the file, not the parameter count the challenge ranks.</p>"
           + _comparison_table(compared, profile.score_name)
           if len(compared) else "")
        + f"<h3>Kinds</h3><dl>{kinds}</dl>"
        + "<h2>Pareto front</h2>" + _plot(pareto_figure(frame, profile, choice, reference_sizes_m))
        + f"<h3>Architecture notation</h3><p>Each model is summarised as stem | stages | head | input, e.g. "
        "<code>conv16 | mb32x2k5e4se | cnx64x2k7e4 | attn128x1e4 | avgstd·f2·h64 | 192/256</code>.</p>"
        f"<dl>{key}</dl>"
        + "<h2>Learning curves</h2>" + _plot(curves_figure(frame, profile))
        + "<h2>Parameter importances</h2>" + _importance_part(study) + "</body></html>"
    )


def write_report(study: optuna.Study, profile: Profile, out_dir: Path, variants: pd.DataFrame | None = None,
                 reference_sizes_m: Sequence[float] | None = None) -> pd.DataFrame:
    """Write trials.csv, report.html and plotly.min.js under `out_dir` (the run directory's `report/`, whose
    last export, if any, the page states); return the ranked candidates (`results.candidates.rank`: every
    kind, as export reads them)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = candidates_frame(study, profile, variants, reference_sizes_m)
    ranked = rank(frame)
    frame.drop(columns=["curve", "spec", "train_config"], errors="ignore").to_csv(out_dir / "trials.csv", index=False)
    (out_dir / "plotly.min.js").write_text(_plotly_js())
    export = read_export(out_dir.parent)
    last = None if export is None else export_line(export)
    (out_dir / "report.html").write_text(_page(study, profile, frame, ranked, reference_sizes_m, variants, last))
    return ranked


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def format_ranking(ranked: pd.DataFrame, profile: Profile, top: int = 10) -> str:
    """The top of the exportable ranking as a plain-text table for the terminal (the score column headed by
    the profile's score name; no RMSE column when no row has one, as in a pairs study), the export row and
    rows within noise of the one above marked, then the near-chance warning and how many variants are
    compared on the page instead."""
    if ranked.empty:
        return "no finished candidate within the caps yet"
    ranking = exportable_ranking(ranked, profile)
    top_rows = ranking.head(top).copy()
    top_rows["confirmed"] = [_confirmed_cell(r).replace("&plusmn;", "+-") for _, r in top_rows.iterrows()]
    unconfirmed = (not top_rows["finalist"].any() and top_rows["confirm_n"].isna().all()
                   if "confirm_n" in top_rows else True)
    columns = [c for c in RANK_COLUMNS if c in top_rows.columns and not (c == "rmse" and top_rows[c].isna().all())
               and not (c == "confirmed" and unconfirmed)]
    view = top_rows[columns].copy()
    view["params"] = view["params"].map(lambda p: f"{int(p):,}")
    for col in ("score", "rmse"):
        if col in view:
            view[col] = view[col].map(lambda v: f"{v:.3f}")
    for col in ("composite", "size_points", "t4_s"):
        view[col] = view[col].map(lambda v: f"{v:.1f}" if pd.notna(v) else "-")
    view["bytes"] = view["bytes"].map(lambda v: f"{int(v):,}" if pd.notna(v) else "-")
    view["noise"] = np.where(top_rows["noise"], "~ above", "")
    view["export"] = np.where(top_rows["export"], "<- export", "")
    lines = [view.rename(columns={"score": profile.score_name}).to_string(index=False)]
    if (warning := chance_warning(ranking, profile)):
        lines.append(f"warning: {warning}")
    if (others := int((~ranked["exportable"]).sum())):
        lines.append(f"{others} storage copies and pruned variants are not exportable: compared in report.html, "
                     "not ranked")
    return "\n".join(lines)

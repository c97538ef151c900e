"""The study report: a CSV of every trial and compressed variant, an offline page a person can act on,
and the ranking for the terminal.

`runs/NAME/report/trials.csv` holds one row per trial or variant. `report.html` opens with what export
will take and the ranking by estimated composite score (its parts, counts, T4 time, kind and whether
export can reproduce it), then the Pareto front of parameters (log axis) against the profile's score
with the size-tier boundaries and the export choice marked, a key to the architecture notation, the
learning curves and Optuna's parameter importances. plotly.js is written beside the page
(`plotly.min.js`), so it works offline; without it the page says so instead of showing empty boxes.
"""
from __future__ import annotations

import html
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import optuna
import pandas as pd
import plotly.graph_objects as go
from optuna.trial import TrialState

from results.candidates import candidates_frame, rank
from results.score import tier_boundaries
from search.profiles import Profile

__all__ = ["format_ranking", "pareto_front", "write_report"]

RANK_COLUMNS = ["kind", "id", "summary", "params", "bytes", "score", "rmse", "composite", "size_points", "t4_s",
                "exportable"]
PAGE_ROWS = 30
"""Rows of the ranking shown on the page (trials.csv holds them all)."""
MIN_IMPORTANCE_TRIALS = 20
"""Below this many finished trials, parameter importances mostly reflect noise; the page says so."""
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
NOTATION = [
    ("conv16, patchify24p2", "stem: a strided 3x3 conv of 16 channels, or a patchify conv of 24 channels "
                             "over 2x2 patches"),
    ("res, mb, cnx, attn", "stage block: residual, MBConv (inverted bottleneck), ConvNeXt, attention"),
    ("mb32x2", "a stage of 2 MBConv blocks, 32 channels wide"),
    ("k5", "depthwise / conv kernel size 5 (not for attention)"),
    ("e4", "expansion ratio 4 of the block's hidden width (not for residual)"),
    ("se", "squeeze-excitation gate"),
    ("s1", "the stage keeps the resolution (stride 1); otherwise it halves it"),
    ("*", "per-block hidden widths set by pruning"),
    ("avgstd·f2·h64", "head: pooling (avg, avgstd = mean and std, attn = attention pooling), features of the "
                      "last 2 stages fused, an MLP of 64 hidden units (no h: a linear head)"),
    ("192/256+mscn", "inference crop / cached resize in pixels; +mscn: an MSCN contrast channel is added"),
]


def pareto_front(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows no other row beats on both fewer parameters and a higher score, sorted by parameters."""
    done = frame[(frame["state"] == "COMPLETE") & frame["score"].notna()].sort_values(["params", "score"], ascending=[True, False])
    keep, best = [], -np.inf
    for idx, r in done.iterrows():
        if r["score"] > best:
            keep.append(idx)
            best = r["score"]
    return done.loc[keep]


def _shown_metrics(r: pd.Series) -> tuple[str, ...]:
    """The validation metrics of a row: correlations and RMSE of MOS predictions, or the pair accuracy of
    a model trained from preference pairs (which has no MOS to correlate with)."""
    return ("plcc", "srcc", "krcc", "rmse") if pd.notna(r.get("plcc")) else ("pair_acc",)


def _hover(r: pd.Series) -> str:
    m = " ".join(f"{k.upper()} {r[k]:.3f}" for k in _shown_metrics(r) if pd.notna(r.get(k)))
    return (f"<b>{html.escape(str(r['id']))}</b> ({r['kind']}, {r['state']})<br>{html.escape(str(r['summary']))}<br>"
            f"params {int(r['params']):,}" + (f" · FLOPs {int(r['flops']):,}" if pd.notna(r.get("flops")) else "")
            + f"<br>score {r['score']:.3f} · {m}" + (f"<br>composite {r['composite']:.1f}" if pd.notna(r.get("composite")) else ""))


def _vline(fig: go.Figure, x: float, label: str, color: str, dash: str) -> None:
    """A labelled vertical line on the log x axis (plotly's own vline labels land off a log axis)."""
    fig.add_vline(x=x, line_dash=dash, line_color=color)
    fig.add_annotation(x=np.log10(x), y=1, yref="paper", text=label, showarrow=False, textangle=-90, xanchor="right",
                       yanchor="top", font=dict(color=color, size=11))


def pareto_figure(frame: pd.DataFrame, profile: Profile, choice: pd.Series | None = None,
                  reference_sizes_m: Sequence[float] | None = None) -> go.Figure:
    """Parameters (log) against the score: every kind in its own marker, the Pareto front, the cap, the
    size-tier boundaries of the reference distribution, and `choice` (the export row) ringed."""
    fig = go.Figure()
    shown = frame[frame["params"].notna() & frame["score"].notna()]
    for (kind, state), group in shown.groupby(["kind", "state"]):
        name, symbol, color = STYLES.get((kind, state), (f"{kind}, {state.lower()}", "diamond-open", "#7f7f7f"))
        fig.add_trace(go.Scatter(
            x=group["params"], y=group["score"], mode="markers", name=name,
            marker=dict(symbol=symbol, color=color, size=11 if kind == "scratch" else 9, line=dict(width=0.5, color="#333")),
            text=[_hover(r) for _, r in group.iterrows()], hoverinfo="text",
        ))
    front = pareto_front(frame)
    if len(front):
        fig.add_trace(go.Scatter(x=front["params"], y=front["score"], mode="lines", name="Pareto front",
                                 line=dict(shape="hv", color="#ff7f0e", width=2), hoverinfo="skip"))
    if choice is not None:
        fig.add_trace(go.Scatter(
            x=[choice["params"]], y=[choice["score"]], mode="markers+text", name=f"export choice: {choice['id']}",
            marker=dict(symbol="circle-open", size=24, color="#000", line=dict(width=3)), text=["export"],
            textposition="top center", hoverinfo="text", hovertext=_hover(choice)))
    if profile.size_tiers:
        for bound, params in tier_boundaries(profile, reference_sizes_m):
            _vline(fig, params, f"{bound:.0%} of teams", "#2ca02c", "dot")
    _vline(fig, profile.caps.params, "cap", "#999", "dash")
    fig.update_layout(title=f"Pareto front: parameters vs validation {profile.score_name} "
                            "(green dotted: size-tier boundaries, smaller is better)",
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
    """Optuna's parameter importances for the score, or None with too few completed trials."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 3:
        return None
    try:
        with warnings.catch_warnings():  # few trials per choice is expected early in a study
            warnings.simplefilter("ignore", UserWarning)
            imp = optuna.importance.get_param_importances(study, target=lambda t: t.values[0])
    except (RuntimeError, ValueError):
        return None
    names = list(imp)[::-1]
    fig = go.Figure(go.Bar(x=[imp[n] for n in names], y=names, orientation="h", marker_color="#2ca02c"))
    fig.update_layout(title="Parameter importances for the score (Optuna's default evaluator)", template="plotly_white",
                      height=max(300, 22 * len(names) + 120), xaxis_title="importance")
    return fig


def _t4(seconds: float) -> str:
    if pd.isna(seconds):
        return "-"
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def _ranking_table(ranked: pd.DataFrame, score_name: str = "score") -> str:
    """The top of the ranking as an HTML table; the export row is marked and highlighted."""
    head = ["#", "", "id", "kind", "exportable", "composite", "performance pts", "size pts", "size tier",
            "size percentile", "params", "FLOPs", "T4 time", score_name, "RMSE", "architecture"]
    rows = []
    for i, r in ranked.head(PAGE_ROWS).iterrows():
        cells = [i + 1, "&#9654; export" if r["export"] else "", html.escape(str(r["id"])), r["kind"],
                 "yes" if r["exportable"] else "no", f"{r['composite']:.1f}", f"{r['performance_points']:.1f}",
                 f"{r['size_points']:.1f}", r["size_tier"], f"{r['size_percentile']:.0%}", f"{int(r['params']):,}",
                 f"{r['flops'] / 1e6:,.1f} M" if pd.notna(r.get("flops")) else "-", _t4(r.get("t4_s", np.nan)),
                 f"{r['score']:.3f}", f"{r['rmse']:.3f}" if pd.notna(r.get("rmse")) else "-",
                 f"<code>{html.escape(str(r['summary']))}</code>"]
        style = " class='export'" if r["export"] else "" if r["exportable"] else " class='dim'"
        rows.append(f"<tr{style}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return ("<table id='ranking'><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _choice_box(choice: pd.Series | None, profile: Profile) -> str:
    if choice is None:
        return ("<div class='choice'>No exportable candidate within the caps yet: finish a trial (or a scratch "
                "variant) under the caps first.</div>")
    return (f"<div class='choice' id='export-choice'><b>Export will take {html.escape(str(choice['id']))}</b> "
            f"({choice['kind']}): <code>{html.escape(str(choice['summary']))}</code><br>estimated composite "
            f"{choice['composite']:.1f} = {choice['performance_points']:.1f} performance + {choice['size_points']:.1f} "
            f"size points (tier {choice['size_tier']}, smaller than {1 - choice['size_percentile']:.0%} of the "
            f"reference teams) · {int(choice['params']):,} parameters · validation {profile.score_name} "
            f"{choice['score']:.3f}. The paper's {sum(profile.out_of_reach.values()):g} points are not estimated."
            "<br><small>Override with <code>run_search.py export --trial N</code> or <code>--variant ID</code> (a scratch variant).</small></div>")


CSS = """body{font-family:sans-serif;max-width:1200px;margin:auto;padding:0 12px;color:#222}
table{border-collapse:collapse;font-size:13px}td,th{border-bottom:1px solid #ddd;padding:3px 6px;text-align:right}
td{white-space:nowrap}td:nth-child(3),td:nth-child(4),td:last-child{text-align:left;white-space:normal}tr.export{background:#fff3c4;font-weight:bold}
tr.dim{color:#888}.choice{background:#fff3c4;border:1px solid #e0b400;padding:10px;margin:12px 0}
.warn{background:#fdecea;border:1px solid #d93025;padding:10px;margin:12px 0}dt{font-family:monospace;font-weight:bold}
dd{margin:0 0 4px 24px}"""
PLOTLY_MISSING = ("<div class='warn' id='plotly-missing'><b>The plots cannot be drawn:</b> <code>plotly.min.js</code> "
                  "was not found beside this page (or JavaScript is off). Keep the report folder together, or rerun "
                  "<code>run_search.py report</code>. The ranking table below does not need it.</div>"
                  "<script>if (window.Plotly) document.getElementById('plotly-missing').remove();</script>")


def _plot(fig: go.Figure) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False)


def _page(study: optuna.Study, profile: Profile, frame: pd.DataFrame, ranked: pd.DataFrame,
          reference_sizes_m: Sequence[float] | None) -> str:
    choice = ranked[ranked["export"]].iloc[0] if ranked["export"].any() else None
    n_complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    importance = importance_figure(study)
    if importance is None:
        importance_part = "<p>Parameter importances need at least 3 finished trials.</p>"
    else:
        caution = (f"<div class='warn'>Computed from only {n_complete} finished trials: with fewer than about "
                   f"{MIN_IMPORTANCE_TRIALS}, importances mostly reflect noise. Read them as a hint.</div>"
                   if n_complete < MIN_IMPORTANCE_TRIALS else "")
        importance_part = caution + _plot(importance)
    kinds = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in KIND_NOTES.items())
    notation = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in NOTATION)
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(study.study_name)}: search report</title><script src='plotly.min.js'></script>"
        f"<style>{CSS}</style></head><body><h1>Study {html.escape(study.study_name)}</h1>"
        f"<p>{(frame['kind'] == 'trial').sum()} trials ({n_complete} complete) and {(frame['kind'] != 'trial').sum()} "
        f"compressed variants · profile {profile.name} · cap {profile.caps.params:,} parameters"
        + (f", {profile.caps.flops:,} FLOPs" if profile.caps.flops else "") + "</p>"
        + PLOTLY_MISSING + _choice_box(choice, profile)
        + f"<h2>Ranking by estimated composite score</h2><p>{len(ranked)} candidates within the caps; ties broken "
        "by RMSE, then size. Export takes the first exportable row (highlighted); greyed rows are shown for "
        "comparison only. Size percentile: the share of reference teams smaller than the model (0 % = smallest); "
        "T4 time: estimated training time on a T4 (search budget model).</p>" + _ranking_table(ranked, profile.score_name)
        + f"<h3>Kinds</h3><dl>{kinds}</dl>"
        + "<h2>Pareto front</h2>" + _plot(pareto_figure(frame, profile, choice, reference_sizes_m))
        + f"<h3>Architecture notation</h3><p>Each model is summarised as stem | stages | head | input, e.g. "
        f"<code>conv16 | mb32x2k5e4se | cnx64x2k7e4 | attn128x1e4 | avgstd·f2·h64 | 192/256</code>.</p><dl>{notation}</dl>"
        + "<h2>Learning curves</h2>" + _plot(curves_figure(frame, profile))
        + "<h2>Parameter importances</h2>" + importance_part + "</body></html>"
    )


def write_report(study: optuna.Study, profile: Profile, out_dir: Path, variants: pd.DataFrame | None = None,
                 reference_sizes_m: Sequence[float] | None = None) -> pd.DataFrame:
    """Write trials.csv, report.html and plotly.min.js under `out_dir`; return the ranked candidates
    (`results.candidates.rank`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = candidates_frame(study, profile, variants, reference_sizes_m)
    ranked = rank(frame)
    frame.drop(columns=["curve", "spec", "train_config"], errors="ignore").to_csv(out_dir / "trials.csv", index=False)
    (out_dir / "plotly.min.js").write_text(_plotly_js())
    (out_dir / "report.html").write_text(_page(study, profile, frame, ranked, reference_sizes_m))
    return ranked


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def format_ranking(ranked: pd.DataFrame, top: int = 10, score_name: str = "score") -> str:
    """The top of the ranking as a plain-text table for the terminal (the score column headed
    `score_name`; no RMSE column when no row has one, as in a pairs study); the export row is marked."""
    if ranked.empty:
        return "no finished candidate within the caps yet"
    columns = [c for c in RANK_COLUMNS if c in ranked.columns and not (c == "rmse" and ranked[c].isna().all())]
    view = ranked.head(top)[columns].copy()
    view["params"] = view["params"].map(lambda p: f"{int(p):,}")
    for col in ("score", "rmse"):
        if col in view:
            view[col] = view[col].map(lambda v: f"{v:.3f}")
    for col in ("composite", "size_points", "t4_s"):
        view[col] = view[col].map(lambda v: f"{v:.1f}" if pd.notna(v) else "-")
    view["bytes"] = view["bytes"].map(lambda v: f"{int(v):,}" if pd.notna(v) else "-")
    top_rows = ranked.head(top)
    view["exportable"] = np.where(top_rows["export"], "<- export", np.where(top_rows["exportable"], "yes", "no"))
    return view.rename(columns={"score": score_name}).to_string(index=False)

"""The study report: a CSV of every trial (and compressed variant), an offline plotly page, a ranking.

`runs/NAME/report/trials.csv` holds one row per trial or variant; `report.html` shows the Pareto front
of parameters (log axis) against the profile's score with the front as a step line, learning curves,
and Optuna's parameter importances. plotly.js is written beside the page (`plotly.min.js`), so the
page works offline.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import plotly.graph_objects as go
from optuna.trial import TrialState

from results.score import composite_score
from search.profiles import Profile

METRICS = ("plcc", "srcc", "krcc", "rmse", "plcc_fit", "rmse_fit", "pair_acc")
RANK_COLUMNS = ["kind", "id", "summary", "params", "bytes", "score", "rmse", "composite", "size_points", "t4_s"]


def trials_frame(study: optuna.Study, profile: Profile) -> pd.DataFrame:
    """One row per trial of the study, every state, with metrics, counts, times and composite score."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        metrics = a.get("metrics", {})
        row = {
            "kind": "search", "id": f"trial {t.number}", "trial": t.number, "state": t.state.name,
            "summary": a.get("summary", ""), "params": a.get("params"), "flops": a.get("flops"),
            "bytes": a.get("bytes"), "score": t.values[0] if t.state == TrialState.COMPLETE else (a.get("curve") or [np.nan])[-1],
            **{m: metrics.get(m, np.nan) for m in METRICS},
            "epochs_planned": a.get("epochs_planned"), "epochs_run": a.get("epochs_run"),
            "stopped_early": a.get("stopped_early", False), "wall_s": a.get("wall_s"), "t4_s": a.get("t4_s"),
            "test_score": a.get("test_score", np.nan),
            "checkpoint": a.get("checkpoint"), "curve": a.get("curve", []),
        }
        per_target = a.get("target_metrics", {})
        if len(per_target) > 1:  # several dimensions (e.g. SIQA-S): metrics per dimension
            for target, m in per_target.items():
                row.update({f"{target}_{k}": m.get(k, np.nan) for k in ("srcc", "plcc")})
        rows.append(row)
    return pd.DataFrame(rows)


def add_composite(frame: pd.DataFrame, profile: Profile, reference_sizes_m=None) -> pd.DataFrame:
    """Add composite-score columns to rows that finished within the cap (others get NaN)."""
    frame = frame.copy()
    totals, sizes, pcts = [], [], []
    for _, r in frame.iterrows():
        ok = r["state"] == "COMPLETE" and pd.notna(r["params"]) and r["params"] <= profile.caps.params and pd.notna(r["score"])
        est = composite_score(float(r["score"]), int(r["params"]), profile, reference_sizes_m) if ok else None
        totals.append(est.total if est else np.nan)
        sizes.append(est.size_points if est else np.nan)
        pcts.append(est.size_percentile if est else np.nan)
    frame["composite"], frame["size_points"], frame["size_percentile"] = totals, sizes, pcts
    return frame


def rank(frame: pd.DataFrame) -> pd.DataFrame:
    """Candidates by estimated composite score; ties broken by RMSE, then size, as the challenge does."""
    ranked = frame[frame["composite"].notna()]
    return ranked.sort_values(["composite", "rmse", "params"], ascending=[False, True, True]).reset_index(drop=True)


def pareto_front(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows no other row beats on both fewer parameters and a higher score, sorted by parameters."""
    done = frame[(frame["state"] == "COMPLETE") & frame["score"].notna()].sort_values(["params", "score"], ascending=[True, False])
    keep, best = [], -np.inf
    for idx, r in done.iterrows():
        if r["score"] > best:
            keep.append(idx)
            best = r["score"]
    return done.loc[keep]


def _hover(r: pd.Series) -> str:
    m = " ".join(f"{k.upper()} {r[k]:.3f}" for k in ("plcc", "srcc", "krcc", "rmse") if pd.notna(r.get(k)))
    return (f"<b>{r['id']}</b> ({r['kind']}, {r['state']})<br>{r['summary']}<br>"
            f"params {int(r['params']):,}" + (f" · FLOPs {int(r['flops']):,}" if pd.notna(r.get("flops")) else "")
            + f"<br>score {r['score']:.3f} · {m}" + (f"<br>composite {r['composite']:.1f}" if pd.notna(r.get("composite")) else ""))


def pareto_figure(frame: pd.DataFrame, profile: Profile) -> go.Figure:
    fig = go.Figure()
    shown = frame[frame["params"].notna() & frame["score"].notna()]
    styles = {("search", "COMPLETE"): ("circle", "#1f77b4"), ("search", "PRUNED"): ("x", "#bbbbbb"),
              ("prune", "COMPLETE"): ("diamond", "#d62728"), ("int8", "COMPLETE"): ("square", "#9467bd"),
              ("fp16", "COMPLETE"): ("triangle-up", "#8c564b")}
    for (kind, state), group in shown.groupby(["kind", "state"]):
        symbol, color = styles.get((kind, state), ("diamond", "#d62728"))
        fig.add_trace(go.Scatter(
            x=group["params"], y=group["score"], mode="markers", name=f"{kind} · {state.lower()}",
            marker=dict(symbol=symbol, color=color, size=9, line=dict(width=0.5, color="#333")),
            text=[_hover(r) for _, r in group.iterrows()], hoverinfo="text",
        ))
    front = pareto_front(frame)
    if len(front):
        fig.add_trace(go.Scatter(x=front["params"], y=front["score"], mode="lines", name="Pareto front",
                                 line=dict(shape="hv", color="#ff7f0e", width=2), hoverinfo="skip"))
    fig.add_vline(x=profile.caps.params, line_dash="dash", line_color="#999", annotation_text="cap")
    fig.update_layout(title=f"Pareto front: parameters vs validation {profile.score_name}",
                      xaxis=dict(type="log", title="parameters"), yaxis=dict(title=profile.score_name),
                      template="plotly_white", height=520)
    return fig


def curves_figure(frame: pd.DataFrame, profile: Profile) -> go.Figure:
    fig = go.Figure()
    for _, r in frame[frame["kind"] == "search"].iterrows():
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


def write_report(study: optuna.Study, profile: Profile, out_dir: Path, variants: pd.DataFrame | None = None,
                 reference_sizes_m=None) -> pd.DataFrame:
    """Write trials.csv and report.html under `out_dir`; return the ranked candidates."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = trials_frame(study, profile)
    if variants is not None and len(variants):
        frame = pd.concat([frame, variants], ignore_index=True)
    frame = add_composite(frame, profile, reference_sizes_m)
    frame.drop(columns=["curve"]).to_csv(out_dir / "trials.csv", index=False)
    figures = [pareto_figure(frame, profile), curves_figure(frame, profile), importance_figure(study)]
    parts = [f.to_html(full_html=False, include_plotlyjs=False) for f in figures if f is not None]
    (out_dir / "plotly.min.js").write_text(_plotly_js())
    (out_dir / "report.html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{study.study_name}: search report</title><script src='plotly.min.js'></script></head>"
        f"<body style='font-family:sans-serif;max-width:1100px;margin:auto'><h1>Study {study.study_name}</h1>"
        f"<p>{len(frame)} rows · profile {profile.name} · cap {profile.caps.params:,} parameters</p>"
        + "".join(parts) + "</body></html>"
    )
    return rank(frame)


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def format_ranking(ranked: pd.DataFrame, top: int = 10) -> str:
    """The top of the ranking as a plain-text table for the terminal."""
    if ranked.empty:
        return "no finished candidate within the cap yet"
    view = ranked.head(top)[[c for c in RANK_COLUMNS if c in ranked.columns]].copy()
    view["params"] = view["params"].map(lambda p: f"{int(p):,}")
    for col in ("score", "rmse"):
        view[col] = view[col].map(lambda v: f"{v:.3f}")
    for col in ("composite", "size_points", "t4_s"):
        view[col] = view[col].map(lambda v: f"{v:.1f}" if pd.notna(v) else "-")
    view["bytes"] = view["bytes"].map(lambda v: f"{int(v):,}" if pd.notna(v) else "-")
    return view.to_string(index=False)

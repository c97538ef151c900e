"""The report and the composite score estimate."""
from __future__ import annotations

import datetime
from html import escape as html_escape

import numpy as np
import optuna
import pandas as pd
import pytest

from results import report
from results.candidates import candidate_recipe, rank
from results.schedule import candidate_schedule
from search.study import TrialRecord
from search.study.front import pareto_front
from results.report import (
    NOISE_MARK, SEED_SPREAD, TOP_IMPORTANCES, chance_warning, exportable_ranking, format_ranking, importance_figure,
    pareto_figure, run_context, write_report,
)
from results.score import composite_score, size_percentile, size_points, size_tier, tier_boundaries
from search.profiles import get_profile
from run_search import main

ICME = get_profile("icme2026-aigc")


@pytest.mark.parametrize("params, percentile, points", [
    (500_000, 0.0, 20.0),                      # smaller than every reference team
    (1_200_000, 2 / 13, 18.0),                 # past the 10 % ramp (0.05-0.15), before the 25 % one
    (1_250_000, 3 / 13, 18 - 3 * (3 / 13 - 0.20) / 0.10),  # inside the 25 % boundary's ramp
    (1_300_500, 3.5 / 13, 18 - 3 * (3.5 / 13 - 0.20) / 0.10),  # ties with a reference team count half
    (4_000_000, 9 / 13, 10.0),
    (7_000_000, 1.0, 5.0),
])
def test_size_points_hand_computed(params, percentile, points):
    assert size_percentile(params, ICME.reference_sizes_m) == pytest.approx(percentile)
    assert size_points(percentile, ICME) == pytest.approx(points)


def test_tier_boundary_is_the_midpoint_and_composite_adds_performance():
    assert size_points(0.10, ICME) == pytest.approx(19.0)
    assert size_points(0.50, ICME) == pytest.approx(12.5)
    est = composite_score(0.8, 500_000, ICME)
    assert est.performance_points == pytest.approx(40.0) and est.total == pytest.approx(60.0)
    assert composite_score(0.8, 500_000, ICME, reference_sizes_m=[0.1, 0.2]).size_points == pytest.approx(5.0)
    with pytest.raises(ValueError, match="exceed the icme2026-aigc cap"):
        composite_score(0.9, 10_000_001, ICME)


def test_tiers_are_named_and_their_boundaries_sit_where_the_percentile_crosses_them():
    assert [size_tier(p, ICME) for p in (0.0, 0.099, 0.10, 0.3, 0.6, 1.0)] == [
        "0-10 %", "0-10 %", "10-25 %", "25-50 %", "50-75 %", "75-100 %"]
    bounds = tier_boundaries(ICME)
    assert [b for b, _ in bounds] == [0.10, 0.25, 0.50, 0.75]
    for bound, params in bounds:  # below the line the tier is not reached yet, just above it is
        assert (size_percentile(params - 1, ICME.reference_sizes_m) < bound
                <= size_percentile(params + 1, ICME.reference_sizes_m))
    assert tier_boundaries(ICME, [1.0, 2.0, 3.0, 4.0]) == [(0.10, 1e6), (0.25, 1e6), (0.50, 2e6), (0.75, 3e6)]


def test_pareto_front_keeps_only_non_dominated_rows():
    frame = pd.DataFrame({"params": [100, 200, 300, 400], "score": [0.5, 0.4, 0.7, 0.7], "state": ["COMPLETE"] * 4})
    assert list(pareto_front(frame)["params"]) == [100, 300]


def test_report_files_hold_every_trial_and_the_figures(tiny_study):
    study, cfg, run_dir = tiny_study
    ranked = write_report(study, ICME, run_dir / "report")
    csv = pd.read_csv(run_dir / "report" / "trials.csv")
    assert sorted(csv["trial"]) == [t.number for t in study.trials]
    assert {"params", "flops", "plcc", "srcc", "krcc", "rmse", "score", "t4_s", "composite", "performance_points",
            "size_points", "size_tier", "size_percentile", "state", "kind"} <= set(csv.columns)
    assert ranked["composite"].is_monotonic_decreasing and (ranked["params"] <= ICME.caps.params).all()
    assert ranked["exportable"].all() and list(ranked["export"]) == [True] + [False] * (len(ranked) - 1)
    html = (run_dir / "report" / "report.html").read_text()
    assert "Pareto front" in html and "Learning curves" in html and '"type":"log"' in html.replace(" ", "")
    assert all(f"trial {t.number}" in html for t in study.trials)
    assert (run_dir / "report" / "plotly.min.js").stat().st_size > 1_000_000
    first = ranked.iloc[0]
    assert f"Export will take {first['id']}" in html and "<table id='ranking'>" in html
    assert html.count("<tr class='export'>") == 1 and f"{first['composite']:.1f}" in html
    assert "of teams smaller" in html and "export choice" in html  # tier boundaries and the choice on the Pareto plot
    assert "Architecture notation" in html and "squeeze-excitation" in html
    assert f"Computed from only {len(study.trials)} finished trials" in html
    assert "id='plotly-missing'" in html and "window.Plotly" in html
    assert "<- export" in format_ranking(ranked, ICME)
    schedule = candidate_schedule(study, first["id"], candidate_recipe(first["id"], study))  # what export would train
    assert f"Final retrain: <b>{schedule.what}</b>" in html and html_escape(schedule.reason) in html


def test_report_command_prints_the_ranking(tiny_study, capsys):
    study, cfg, run_dir = tiny_study
    assert main(["report", "--study", "tiny", "--runs-dir", str(run_dir.parent)]) == 0
    out = capsys.readouterr().out
    assert "composite" in out and "trial " in out and "report.html" in out
    assert "optuna-dashboard sqlite:///" in out  # learning curves and notes stored, or how to get the dashboard
    assert "export's final retrain: " in out and "validation" in out


def _table(html: str, table_id: str) -> str:
    return html.split(f"<table id='{table_id}'>", 1)[1].split("</table>", 1)[0]


def _variants(study) -> pd.DataFrame:
    """int8, fp16 and pruned copies of the best trial that score above every trial (as storage copies may,
    by a rounding), and a scratch variant scoring below."""
    best = max(study.best_trials, key=lambda t: t.values[0])
    a = best.user_attrs
    rows = [dict(kind=kind, id=f"t{best.number}-{kind}", trial=best.number, parent=None, state="COMPLETE",
                 score=best.values[0] + 0.05, params=a["params"], flops=a["flops"], bytes=a["bytes"] // 4,
                 rmse=0.1, spec=TrialRecord.from_trial(best).spec, summary=a["summary"], d_score=0.05, d_params=0,
                 d_bytes=-a["bytes"])
            for kind in ("int8", "fp16", "pruned")]
    rows.append({**rows[0], "kind": "scratch", "id": f"t{best.number}-scratch", "score": best.values[0] - 0.2,
                 "train_config": TrialRecord.from_trial(best).recipe["train"]})
    return pd.DataFrame(rows)


def test_storage_copies_are_compared_apart_not_ranked(tiny_study, tmp_path):
    study, cfg, run_dir = tiny_study
    variants = _variants(study)
    ranked = write_report(study, ICME, tmp_path, variants=variants)
    assert set(ranked["kind"][:3]) == {"int8", "fp16", "pruned"}  # the full ranking (export's) still holds them
    html = (tmp_path / "report.html").read_text()
    ranking, comparison = _table(html, "ranking"), _table(html, "comparison")
    for vid in variants["id"][:3]:
        assert vid not in ranking and f"<td>{vid}</td>" in comparison
    assert "-scratch</td>" in ranking and "-scratch" not in comparison
    assert ranking.count("<tr") == len(study.trials) + 2  # the header, every trial and the scratch variant
    terminal = format_ranking(ranked, ICME, top=20)
    assert all(vid not in terminal for vid in variants["id"][:3]) and "<- export" in terminal
    assert "3 storage copies and pruned variants are not exportable" in terminal
    front = next(t for t in pareto_figure(report.candidates_frame(study, ICME, variants), ICME).data
                 if t.name == "Pareto front (exportable)")
    assert max(front.y) == pytest.approx(max(t.values[0] for t in study.best_trials))  # not the copies' score


def _ranked(scores, size_points=None, **confirm) -> pd.DataFrame:
    n = len(scores)
    frame = pd.DataFrame({"kind": "trial", "id": [f"trial {i}" for i in range(n)], "score": scores,
                          "size_points": size_points or [20.0] * n, "params": 1000, "rmse": 0.5, **confirm})
    frame["finalist"] = frame["confirm_n"].notna() if "confirm_n" in frame else False
    frame["performance_points"] = 50 * frame["confirm_mean"].where(frame["finalist"], frame["score"]) \
        if "confirm_mean" in frame else 50 * frame["score"]
    frame["composite"] = frame["performance_points"] + frame["size_points"]
    return rank(frame)


def test_noise_marks_neighbours_closer_than_the_seed_spread_or_the_confirmed_sd():
    assert SEED_SPREAD == 0.025
    assert list(exportable_ranking(_ranked([0.736, 0.726, 0.60]), ICME)["noise"]) == [False, True, False]
    # a size-point gap is no noise: the same score, one tier apart
    assert list(exportable_ranking(_ranked([0.70, 0.70], [20.0, 15.0]), ICME)["noise"]) == [False, False]
    # confirmed over 4 seeds with a small sd: the 0.010 gap is now established
    confirmed = _ranked([0.736, 0.726], confirm_mean=[0.736, 0.726], confirm_sd=[0.002, 0.002], confirm_n=[4, 4])
    assert list(exportable_ranking(confirmed, ICME)["noise"]) == [False, False]
    # confirmed with a wide sd: within noise although the single scores were far apart
    wide = _ranked([0.80, 0.70], confirm_mean=[0.74, 0.73], confirm_sd=[0.03, 0.03], confirm_n=[3, 3])
    assert list(exportable_ranking(wide, ICME)["noise"]) == [False, True]
    # a finalist and a single run are in different groups: never compared, so never marked
    mixed = _ranked([0.74, 0.73], confirm_mean=[0.74, np.nan], confirm_sd=[0.001, np.nan], confirm_n=[5, np.nan])
    assert list(exportable_ranking(mixed, ICME)["noise"]) == [False, False]
    singles = _ranked([0.80, 0.74, 0.73], confirm_mean=[0.70, np.nan, np.nan], confirm_sd=[0.01, np.nan, np.nan],
                      confirm_n=[3, np.nan, np.nan])
    assert list(exportable_ranking(singles, ICME)["noise"]) == [False, False, True]  # the singles, by the seed spread


def test_two_finalists_are_compared_run_by_run():
    """Folds differ in difficulty, and both finalists meet the same folds: a finalist better on every fold by
    0.01 is established as better although each one's fold sd (0.05) is wide; unpaired it would be noise."""
    a, b = (0.70, 0.75, 0.80), (0.69, 0.74, 0.79)
    paired = _ranked([0.80, 0.78], confirm_mean=[np.mean(a), np.mean(b)], confirm_sd=[0.05, 0.05],
                     confirm_n=[3, 3], confirm_scores=[a, b])
    assert list(exportable_ranking(paired, ICME)["noise"]) == [False, False]
    crossing = (0.64, 0.79, 0.84)  # a mean 0.017 above, the order changing from fold to fold
    unsure = _ranked([0.80, 0.78], confirm_mean=[np.mean(crossing), np.mean(b)], confirm_sd=[0.05, 0.05],
                     confirm_n=[3, 3], confirm_scores=[crossing, b])
    assert list(exportable_ranking(unsure, ICME)["noise"]) == [False, True]
    tied = _ranked([0.80, 0.78], confirm_mean=[np.mean(b)] * 2, confirm_sd=[0.05] * 2, confirm_n=[3, 3],
                   confirm_scores=[b, b])
    assert list(exportable_ranking(tied, ICME)["noise"]) == [False, True]  # the same runs: no order established


def test_page_shows_confirmed_scores_and_the_noise_mark(tiny_study, tmp_path, monkeypatch):
    study, cfg, run_dir = tiny_study
    frame_of = report.candidates_frame

    def confirmed(*args, **kwargs):  # the confirm stage's columns: every trial within noise of its neighbours
        frame = frame_of(*args, **kwargs)
        n = len(frame)
        return frame.assign(confirm_mean=0.5, confirm_sd=[0.04] + [np.nan] * (n - 1),
                            confirm_n=[3] + [np.nan] * (n - 1), finalist=[True] + [False] * (n - 1), score=0.5)

    monkeypatch.setattr(report, "candidates_frame", confirmed)
    ranked = write_report(study, ICME, tmp_path)
    ranking = _table((tmp_path / "report.html").read_text(), "ranking")
    assert "confirmed (mean &plusmn; sd)" in ranking and "0.500 &plusmn; 0.040 (3 folds)" in ranking
    assert ranking.count(NOISE_MARK) == sum(exportable_ranking(ranked, ICME)["noise"]) >= 1
    terminal = format_ranking(ranked, ICME)
    assert "0.500 +- 0.040 (3 folds)" in terminal and "~ above" in terminal


def test_near_chance_warning_for_correlation_and_pair_accuracy():
    pairs = get_profile("ntire-pairwise")
    assert "near chance (below 0.2)" in chance_warning(exportable_ranking(_ranked([0.15, 0.1]), ICME), ICME)
    assert chance_warning(exportable_ranking(_ranked([0.25, 0.1]), ICME), ICME) is None
    assert "near chance (below 0.55; a coin scores 0.5)" in chance_warning(exportable_ranking(_ranked([0.52]), pairs),
                                                                           pairs)
    assert chance_warning(exportable_ranking(_ranked([0.60]), pairs), pairs) is None


def test_near_chance_warning_on_the_page_and_the_terminal(tiny_study, tmp_path, monkeypatch):
    study, cfg, run_dir = tiny_study
    frame_of = report.candidates_frame
    monkeypatch.setattr(report, "candidates_frame", lambda *a, **k: frame_of(*a, **k).assign(score=0.05))
    ranked = write_report(study, ICME, tmp_path)
    assert "id='near-chance'" in (tmp_path / "report.html").read_text()
    assert "warning: The best validation corr_score is 0.050, near chance" in format_ranking(ranked, ICME)


@pytest.mark.parametrize("importances, shown", [
    ({f"p{i}": 30.0 - i for i in range(30)}, [f"p{i}" for i in range(TOP_IMPORTANCES)]),  # the 15 largest
    ({**{f"p{i}": 1.0 / (i + 1) for i in range(5)}, **{f"z{i}": 0.0 for i in range(10)}}, [f"p{i}" for i in range(5)]),
])
def test_importances_show_the_largest_non_zero(monkeypatch, importances, shown):
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.optimize(lambda t: (t.suggest_float("x", 0, 1), 1.0), n_trials=3)
    monkeypatch.setattr(report, "get_param_importances", lambda *a, **k: importances)
    bars = importance_figure(study).data[0]
    assert list(bars.y)[::-1] == shown and all(x > 0 for x in bars.x)


def test_context_line_names_the_run(tiny_study, tmp_path):
    study, cfg, run_dir = tiny_study
    line = run_context(study, ICME, now=datetime.datetime(2026, 11, 29, 19, 30))
    assert line.startswith("dataset synthetic (240 generated images) · profile icme2026-aigc · space tiny · "
                           "trial budget 1000 T4 s (at most 3 epochs) · "
                           "3 trials finished (3 complete, 0 stopped early)")
    assert f"trials ran {study.trials[0].datetime_start:%Y-%m-%d}" in line and line.endswith("report 2026-11-29 19:30")
    write_report(study, ICME, tmp_path)
    assert "<p class='context' id='context'>dataset synthetic" in (tmp_path / "report.html").read_text()


def test_tier_boundaries_are_legend_entries_not_overlapping_labels(tiny_study):
    study, cfg, run_dir = tiny_study
    frame = report.candidates_frame(study, ICME)
    fig = pareto_figure(frame, ICME)
    assert fig.layout.annotations == ()
    names = [t.name for t in fig.data if t.name.startswith("size tier")]
    assert names == [f"size tier: {b:.0%} of teams smaller ({p / 1e6:.2f}M)" for b, p in tier_boundaries(ICME)]
    assert len({(t.line.color, t.line.dash) for t in fig.data if t.name in names}) == len(names)

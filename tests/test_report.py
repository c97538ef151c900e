"""The report and the composite score estimate."""
from __future__ import annotations

import pandas as pd
import pytest

from results.report import format_ranking, pareto_front, write_report
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
        assert size_percentile(params - 1, ICME.reference_sizes_m) < bound <= size_percentile(params + 1, ICME.reference_sizes_m)
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
    assert "of teams" in html and "export choice" in html  # tier boundaries and the choice on the Pareto plot
    assert "Architecture notation" in html and "squeeze-excitation" in html
    assert f"Computed from only {len(study.trials)} finished trials" in html
    assert "id='plotly-missing'" in html and "window.Plotly" in html
    assert "<- export" in format_ranking(ranked)


def test_report_command_prints_the_ranking(tiny_study, capsys):
    study, cfg, run_dir = tiny_study
    assert main(["report", "--study", "tiny", "--runs-dir", str(run_dir.parent)]) == 0
    out = capsys.readouterr().out
    assert "composite" in out and "trial " in out and "report.html" in out

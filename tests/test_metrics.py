"""Metrics against scipy, the challenge score, the logistic mapping and edge cases."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from search.metrics import corr_score, fit_logistic5, iqa_metrics, krcc, logistic5, plcc, rmse, srcc


def test_correlations_match_scipy_on_random_data():
    rng = np.random.default_rng(0)
    for _ in range(5):
        mos = rng.uniform(1, 5, 200)
        pred = mos + rng.normal(0, 1.0, 200)
        assert plcc(pred, mos) == pytest.approx(stats.pearsonr(pred, mos)[0])
        assert srcc(pred, mos) == pytest.approx(stats.spearmanr(pred, mos)[0])
        assert krcc(pred, mos) == pytest.approx(stats.kendalltau(pred, mos)[0])
        assert rmse(pred, mos) == pytest.approx(np.sqrt(np.mean((pred - mos) ** 2)))


def test_corr_score_clips_negative_correlations():
    assert corr_score(0.9, 0.8, 0.7) == pytest.approx(0.8)
    assert corr_score(-0.5, 0.6, 0.3) == pytest.approx(0.3)
    assert corr_score(-0.1, -0.2, -0.3) == 0.0
    m = iqa_metrics([1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1])
    assert m["plcc"] == pytest.approx(-1) and m["corr_score"] == 0.0


def test_constant_predictions_score_zero_not_nan():
    m = iqa_metrics(np.full(10, 3.0), np.arange(10.0))
    assert m["plcc"] == m["srcc"] == m["krcc"] == m["corr_score"] == 0.0
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean((3.0 - np.arange(10.0)) ** 2)))


def test_non_finite_and_bad_lengths_raise_with_location():
    with pytest.raises(ValueError, match=r"1 non-finite value\(s\) in predictions, first at index 2"):
        iqa_metrics([1, 2, np.nan, 4], [1, 2, 3, 4])
    with pytest.raises(ValueError, match="in MOS"):
        plcc([1, 2, 3], [1, np.inf, 3])
    with pytest.raises(ValueError, match="differ in length"):
        srcc([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="at least 2"):
        krcc([1], [1])


def test_column_vectors_accepted_wider_arrays_refused():
    rng = np.random.default_rng(2)
    mos = rng.uniform(1, 5, 50)
    pred = mos + rng.normal(0, 0.5, 50)
    assert iqa_metrics(pred[:, None], mos[:, None]) == iqa_metrics(pred, mos)
    with pytest.raises(ValueError, match=r"predictions must be 1-D or \[N, 1\], got shape \(25, 2\)"):
        plcc(pred.reshape(25, 2), mos[:25])


def test_two_samples():
    m = iqa_metrics([1.0, 2.0], [3.0, 5.0])
    assert m["plcc"] == pytest.approx(1) and m["srcc"] == pytest.approx(1) and m["krcc"] == pytest.approx(1)
    assert m["plcc_fit"] == pytest.approx(1)


def test_logistic_fit_linearises_a_monotone_mapping():
    rng = np.random.default_rng(1)
    mos = rng.uniform(0, 5, 300)
    pred = np.tanh(mos - 2.5) * 3 + rng.normal(0, 0.05, 300)
    m = iqa_metrics(pred, mos)
    assert m["plcc_fit"] > m["plcc"] and m["plcc_fit"] > 0.97
    assert m["rmse_fit"] < m["rmse"]
    params = fit_logistic5(pred, mos)
    assert np.isfinite(logistic5(pred, *params)).all()
    assert logistic5(list(pred[:3]), *params) == pytest.approx(logistic5(pred[:3], *params))


def test_logistic_fit_falls_back_to_a_line_below_five_points():
    params = fit_logistic5([1.0, 2.0, 4.0], [2.0, 4.0, 8.0])
    assert params[0] == 0.0
    assert logistic5(np.array([3.0]), *params)[0] == pytest.approx(6.0)

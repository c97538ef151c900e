"""The final schedule: a curve still rising at the end of its trial fills the deadline, one that stopped
rising trains twice the epoch where it stopped, no curve keeps twice the trial's epochs; the T4 budget
model turns "fill" into all the epochs that fit the export budget."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from scipy import stats

from results.export import export_plan
from results.schedule import MIN_CURVE, RISING_SCALE, SCALE, Schedule, choose_schedule, given_schedule, trend
from search.budget import BudgetModel
from search.profiles import get_profile
from search.train.recipe import Recipe, TrainConfig
from search.train.retrain import FILL, OPEN_EPOCHS, wanted_epochs
from space import ArchSpec, HeadSpec, InputSpec, StageSpec, StemSpec


def test_a_curve_still_rising_at_the_end_trains_four_times_the_trial_not_until_the_deadline():
    """Measured at length, 4 x a trial scored best and 16 x less: a rising curve gets the former, never fill."""
    exact = choose_schedule([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], trial_epochs=6)
    assert not exact.fill and (exact.epochs, exact.least) == (RISING_SCALE * 6, 6) and "still rising" in exact.reason
    noisy = 0.3 + 0.02 * np.arange(12) + np.random.default_rng(0).normal(0, 0.005, 12)
    assert choose_schedule(list(noisy), trial_epochs=12).epochs == RISING_SCALE * 12


def test_a_curve_that_stopped_rising_trains_twice_the_epoch_where_it_stopped():
    plateau = choose_schedule([0.2, 0.4, 0.6, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7], trial_epochs=9)
    assert not plateau.fill and plateau.epochs == SCALE * 4 and plateau.least == 8 and "epoch 4" in plateau.reason
    peaked = choose_schedule([0.1, 0.3, 0.5, 0.6, 0.55, 0.5], trial_epochs=6)  # overfits after epoch 4
    assert (peaked.epochs, peaked.least) == (SCALE * 4, 6)
    early = choose_schedule([0.5, 0.4, 0.3, 0.3, 0.3, 0.3], trial_epochs=6)
    assert (early.epochs, early.least) == (SCALE * 1, SCALE * 1)  # fewer than the trial's: it asks no more


def test_few_points_prove_little_a_short_tail_needs_a_large_t():
    """Three points give one degree of freedom: a slope of 3.2 standard errors is a one-sided p of about 0.1,
    not a rise; the same t over 12 points (a 36-epoch trial) is one."""
    short = [0.30, 0.40, 0.50, 0.590, 0.59925, 0.602]  # the last 3: +0.006/epoch, 3.2 standard errors
    slope, se, _ = trend(np.asarray(short[-3:]))
    assert slope / se == pytest.approx(3.2, abs=0.15)
    chosen = choose_schedule(short, trial_epochs=6)
    assert "still rising" not in chosen.reason and "1 degrees of freedom, one-sided p = 0.09" in chosen.reason
    rng = np.random.default_rng(1)
    longer = list(0.5 + 0.004 * np.arange(36) + rng.normal(0, 0.01, 36))
    assert "still rising" in choose_schedule(longer, trial_epochs=36).reason


def test_a_rise_within_the_noise_is_not_rising():
    curve = [0.2, 0.4, 0.5, 0.6, 0.7, 0.62]  # the last third: +0.01/epoch, scattered by 0.05
    slope, se, noise = trend(np.asarray(curve[-3:]))
    assert 0 < slope < 2 * se
    chosen = choose_schedule(curve, trial_epochs=6)
    assert not chosen.fill and chosen.epochs == SCALE * 5  # 0.7 is the best; 0.62 is more than one noise below it
    assert "not clearly rising" in chosen.reason


@pytest.mark.parametrize("curve", [[], [0.5, 0.6], [0.1, math.nan, 0.3, 0.4]], ids=["none", "short", "nan"])
def test_without_a_usable_curve_the_schedule_is_twice_the_trial(curve):
    chosen = choose_schedule(curve, trial_epochs=7)
    assert (chosen.epochs, chosen.least) == (SCALE * 7, 7) and f"no validation curve of {MIN_CURVE}+" in chosen.reason


def test_the_tail_is_the_last_third_of_a_long_curve():
    curve = [0.1 * i for i in range(10)] + [1.0] * 20  # rose for 10 epochs, flat for the last 20
    assert "still rising" not in choose_schedule(curve, trial_epochs=30).reason
    assert "still rising" in choose_schedule([1.0] * 20 + [1.0 + 0.1 * i for i in range(10)], trial_epochs=30).reason


def test_trend_is_least_squares_with_its_standard_error():
    y = np.array([0.31, 0.35, 0.34, 0.40, 0.41])
    slope, se, noise = trend(y)
    fit = stats.linregress(np.arange(5), y)
    assert slope == pytest.approx(fit.slope) and se == pytest.approx(fit.stderr)
    assert noise == pytest.approx(np.sqrt(np.sum((y - fit.intercept - fit.slope * np.arange(5)) ** 2) / 3))


def test_given_schedules_and_what_fill_means_in_epochs():
    assert given_schedule(12, trial_epochs=5) == Schedule(12, 12, "--epochs 12 given")
    assert given_schedule(FILL, trial_epochs=5) == Schedule(FILL, 5, "--epochs fill given")
    assert wanted_epochs(FILL) == OPEN_EPOCHS and wanted_epochs(3) == 3
    with pytest.raises(ValueError, match=r"got 'lots'"):
        given_schedule("lots", trial_epochs=5)
    for bad in (0, -2, "12", "lots", 2.5, True, None):
        with pytest.raises(ValueError, match=r"epochs must be a whole number >= 1 or 'fill'"):
            wanted_epochs(bad)


def _recipe(epochs: int) -> Recipe:
    spec = ArchSpec(InputSpec(48, 40, False, 0), StemSpec("conv", 8, 3), [StageSpec("mbconv", 16, 2, 2, 3)],
                    HeadSpec("avgstd", 2), num_outputs=1)
    return Recipe(spec, TrainConfig(epochs=epochs, batch_size=8, crop=40))


def test_fill_plans_all_the_epochs_the_export_budget_fits_and_a_number_plans_itself():
    icme, budget = get_profile("icme2026-aigc"), BudgetModel()
    fill = export_plan(_recipe(8), "trial 0", icme, budget, 3000, given_schedule(FILL, 8), smoke=False)
    assert fill.epochs > 100 and fill.seconds <= icme.export_budget_s < fill.seconds + fill.epoch_s
    stopped = choose_schedule([0.1, 0.3, 0.5, 0.6, 0.55, 0.5], 8)
    plan = export_plan(_recipe(8), "trial 0", icme, budget, 3000, stopped, smoke=False)
    assert plan.epochs == stopped.epochs == 8 and plan.seconds < 0.1 * icme.export_budget_s
    assert "planned at export: 8 epochs" in stopped.describe(plan.epochs, plan.seconds)
    tight = replace(icme, export_budget_s=fill.seconds / fill.epochs * 10)  # about 10 epochs fit
    cut = export_plan(_recipe(8), "trial 0", tight, budget, 3000, Schedule(40, 8, "test"), smoke=False)
    assert 8 <= cut.epochs < 40
    with pytest.raises(ValueError, match="over the icme2026-aigc export budget"):
        export_plan(_recipe(8), "trial 0", tight, budget, 3000, given_schedule(40, 8), smoke=False)

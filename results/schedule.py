"""The final retrain's schedule, chosen from the candidate's own validation curve: a number of epochs
(or "fill", train until the notebook's deadline, when asked for).

A trial trains the epochs its T4 budget gave it (often minutes of the 2.5 T4 hours the notebook may
spend) with its learning rate decayed to zero at its last epoch, which flattens the end of any curve.
Whether longer training pays differs per recipe (a whole image overfits with length, patches may not),
and the trial's curve is the measurement of it. The rule (`choose_schedule`):

- no curve of at least `MIN_CURVE` finite scores (a scratch variant keeps none): `SCALE` x the trial's
  epochs, the rule export always used (more data, no early look at validation);
- still rising: the least-squares slope of the score over the last third of the curve (at least
  `MIN_CURVE` epochs) is positive with a one-sided p-value under `RISING_P` by Student's t on n - 2
  degrees of freedom (the standard error from the points' scatter about the line: the epoch-to-epoch
  noise; with the 3 points of a short trial's tail that asks t > 6.3, not 2: few points prove little).
  The schedule is then `RISING_SCALE` x the trial's epochs, not "fill": measured at length
  (bench/long_horizon.py, bench/NOTES.md "The training that is scored, at length"), the 300K fragments
  recipe trained 4 x a 6-epoch trial scored best on prompts no run saw and 16 x scored less (a 1.1M one
  still gained at 16 x), so thousands of epochs until the deadline are no safe extrapolation;
- otherwise it stopped rising at the first epoch whose score is within one noise level (the residual
  sd of that fit) of the curve's best, and the schedule is `SCALE` x that epoch.

Confirmation (`results.confirm`) stores each fold's final score only, not a curve, so it does not enter
the rule. Export turns a schedule into epochs by the T4 budget model (`results.export.export_plan`), and the
notebook turns "fill" into open-ended epochs that its deadline refits (`search.train.retrain.FILL`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import optuna
from scipy import stats

from search.study import TrialRecord
from search.train.recipe import Recipe
from search.train.retrain import FILL, duration, wanted_epochs

SCALE = 2
"""Final epochs per trial epoch when the schedule is a number: the final retrain sees more data and no
validation, so it trains longer than the epoch it scales."""
RISING_SCALE = 4
"""Final epochs per trial epoch when the trial's score was still rising at its end: the length that
scored best on held-out prompts for the 300K recipes (bench/NOTES.md, "The training that is scored, at
length"; a 1.1M model still gained at 16 x)."""
MIN_CURVE = 3
"""The fewest epochs a curve (and its last third) needs to say anything: a line through 3 points has
one degree of freedom for its noise."""
RISING_P = 0.05
"""The one-sided p-value (Student's t, n - 2 degrees of freedom) under which the slope of the last third
counts as still rising."""


@dataclass(frozen=True)
class Schedule:
    """The final retrain's MOS epochs, or `FILL`, and why."""

    epochs: int | str
    """A number of epochs (fewer if the T4 budget cannot take them), or `FILL`."""
    least: int
    """The fewest epochs acceptable when the budget cuts `epochs`; fewer fitting refuses the export."""
    reason: str
    """One line, e.g. "the validation score was still rising ...": printed, and in the notebook."""

    @property
    def fill(self) -> bool:
        return self.epochs == FILL

    @property
    def what(self) -> str:
        """The schedule in a few words: "fill (train until DEADLINE_S)" or "N epochs"."""
        return "fill (train until DEADLINE_S)" if self.fill else f"{self.epochs} epochs"

    def describe(self, planned: int, t4_s: float) -> str:
        """One line: the schedule, what export planned of it by the T4 budget model (`planned` epochs,
        estimated at `t4_s` seconds with scoring), and why."""
        return (f"{self.what}; planned at export: {planned} epochs, {duration(t4_s)} on a T4 by the budget model; "
                f"{self.reason}")


def given_schedule(epochs: int | str, trial_epochs: int) -> Schedule:
    """The schedule named on the command line (`--epochs N` or `--epochs fill`); ValueError naming any
    other value."""
    wanted_epochs(epochs)
    least = trial_epochs if epochs == FILL else epochs
    return Schedule(epochs, least, f"--epochs {epochs} given")


def candidate_schedule(study: optuna.Study, name: str, recipe: Recipe, epochs: int | str | None = None) -> Schedule:
    """The final schedule of candidate `name` ("trial N" or a variant id) of `study`, whose recipe is
    `recipe`: `epochs` if given (a number or "fill"), else the one its trial's validation curve chooses
    (a variant has no curve). Export trains it; the report shows it beside the export choice."""
    trial_epochs = recipe.train.epochs
    if epochs is not None:
        return given_schedule(epochs, trial_epochs)
    curve = (TrialRecord.from_trial(study.trials[int(name.removeprefix("trial "))]).curve if name.startswith("trial ")
             else [])
    return choose_schedule(curve, trial_epochs)


def choose_schedule(curve: Sequence[float], trial_epochs: int) -> Schedule:
    """The schedule the rule of this module chooses from `curve` (the profile's validation score after
    each epoch of the trial, higher is better) and the epochs the trial planned."""
    scores = np.asarray(curve, dtype=np.float64)
    if len(scores) < MIN_CURVE or not np.isfinite(scores).all():
        return Schedule(SCALE * trial_epochs, trial_epochs,
                        f"no validation curve of {MIN_CURVE}+ epochs: {SCALE} x the trial's {trial_epochs} epochs")
    tail = scores[-max(MIN_CURVE, math.ceil(len(scores) / 3)):]
    slope, se, noise = trend(tail)
    where = f"over its last {len(tail)} of {len(scores)} epochs"
    p = rising_p(slope, se, len(tail) - 2)
    evidence = (f"t = {slope / se:.1f} on {len(tail) - 2} degrees of freedom, one-sided p = {p:.3f}" if se
                else "no scatter about the line")
    if slope > 0 and p < RISING_P:
        return Schedule(RISING_SCALE * trial_epochs, trial_epochs,
                        f"the validation score was still rising {where} ({slope:+.4f}/epoch, {evidence}): "
                        f"{RISING_SCALE} x the trial's {trial_epochs} epochs, the length that paid best for the 300K "
                        "recipes when measured at length (16 x scored less)")
    stop = int(np.argmax(scores >= scores.max() - noise)) + 1
    return Schedule(SCALE * stop, min(SCALE * stop, trial_epochs),
                    f"the validation score was not clearly rising at the end ({slope:+.4f}/epoch {where}, "
                    f"{evidence}, not under {RISING_P:g}) and reached its best, within noise, at epoch {stop}: "
                    f"{SCALE} x {stop} epochs")


def rising_p(slope: float, se: float, dof: int) -> float:
    """The one-sided p-value of a slope this large if the curve were flat: Student's t with `dof` degrees of freedom."""
    if se == 0:
        return 0.0 if slope > 0 else 1.0
    return float(stats.t.sf(slope / se, dof))


def trend(scores: np.ndarray) -> tuple[float, float, float]:
    """(least-squares slope per epoch, its standard error, the residual sd) of `scores` (3 or more)
    against their epoch numbers."""
    x = np.arange(len(scores), dtype=np.float64)
    x -= x.mean()
    slope = float(x @ (scores - scores.mean()) / (x @ x))
    residuals = scores - scores.mean() - slope * x
    noise = math.sqrt(float(residuals @ residuals) / (len(scores) - 2))
    return slope, noise / math.sqrt(float(x @ x)), noise

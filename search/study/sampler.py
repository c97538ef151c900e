"""The samplers a study may use, chosen by name, and the per-worker seeding that keeps workers apart.

Every worker process builds its own sampler. Seeded alike, workers (and a resumed command) proposed the
very same trials, so a worker's sampler is seeded from the study seed and the number of the worker's
first trial: the storage hands each number out once, so no two workers or resumes share a seed. The
first worker of a fresh study (trial 0) keeps the study seed itself, so a single-worker study gives the
same trials it always did for its seed.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

SAMPLERS: dict[str, Callable[[int], BaseSampler]] = {
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed, n_startup_trials=8, multivariate=True, group=True,
                                                   constant_liar=True),
    "nsga2": lambda seed: optuna.samplers.NSGAIISampler(seed=seed, population_size=16),
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
}
"""TPE runs with `constant_liar`: trials running in other workers count as poor results, so parallel
workers do not all crowd around the same promising point."""


def worker_seed(study_seed: int, first_trial: int) -> int:
    """The sampler seed of a worker whose first trial is `first_trial` (the study seed for trial 0)."""
    if first_trial == 0:
        return study_seed
    return int(np.random.SeedSequence([study_seed, first_trial]).generate_state(1)[0])


class WorkerSampler(BaseSampler):
    """The study's named sampler, built at this worker's first trial with `worker_seed`."""

    def __init__(self, name: str, study_seed: int):
        self._name, self._seed = name, study_seed
        self._sampler: BaseSampler | None = None

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self._sampler is None:
            self._sampler = SAMPLERS[self._name](worker_seed(self._seed, trial.number))
        self._sampler.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._sampler.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self._sampler.sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._sampler.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: list[float] | None) -> None:
        self._sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        if self._sampler is not None:
            self._sampler.reseed_rng()

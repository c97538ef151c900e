"""Known recipes: measured recipes that a fresh study enqueues as its first trials (a warm start).

`known_recipes.json` beside this module is a small, versioned set of recipes that benchmarks measured
(the CPU ladder's winners so far), best first, each with its provenance and cross-validated figures.
A recipe is kept as the sampler parameters that rebuild it through the space (`optuna.trial.FixedTrial`
through `sample_trial`), so TPE learns from it like from any trial. A study enqueues the ones that
its space, caps and budget take unchanged: every parameter is one the space asks for and offers, the
caps do not shrink it and `min_epochs` fit its budget. Grow the set when a benchmark finds better.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution

from search.budget import BudgetModel
from search.profiles import get_profile
from search.study.objective import plan_trial, sample_trial
from search.study.data import StudyData
from search.study.settings import StudyConfig
from search.train.recipe import Recipe
from space import CapError, Caps

KNOWN_RECIPES = Path(__file__).with_name("known_recipes.json")
UNCAPPED = Caps(params=2**62)
"""Caps no model reaches: a known recipe is rebuilt as it is, then checked against the study's caps."""


@dataclass(frozen=True)
class KnownRecipe:
    name: str
    params: dict
    """Sampler parameters that rebuild the recipe through the space."""
    provenance: str
    cv: dict
    """Its cross-validated figures (`score`, `sd`, `folds`, the gain over a reference and folds won)."""


def known_recipes(path: Path = KNOWN_RECIPES) -> list[KnownRecipe]:
    """The known recipes, best first."""
    return [KnownRecipe(**r) for r in json.loads(Path(path).read_text())["recipes"]]


def rebuild(known: KnownRecipe, cfg: StudyConfig) -> tuple[Recipe, float] | None:
    """(the recipe, its pretraining share) that `known.params` give through `cfg`'s space and caps, or
    None when the space does not ask for exactly these parameters or does not offer their values, or
    the caps would change the model."""
    trial = optuna.trial.FixedTrial(known.params)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # FixedTrial warns about values outside the choices: checked below
            recipe, share = sample_trial(trial, cfg, cfg.search_space(), caps=UNCAPPED)
    except ValueError:  # a parameter the space asks for is missing
        return None
    asked = trial.distributions
    offered = all(_offers(d, known.params[name]) for name, d in asked.items())
    if set(asked) != set(known.params) or not offered or not get_profile(cfg.profile).caps.allows(recipe.spec):
        return None
    return recipe, share


def _offers(distribution: BaseDistribution, value) -> bool:
    """Whether the space offers `value` where it asks with `distribution` (a choice among its choices, a
    number within its range)."""
    if isinstance(distribution, CategoricalDistribution):
        return value in distribution.choices
    return distribution.low <= value <= distribution.high


def fits_budget(recipe: Recipe, share: float, cfg: StudyConfig, n_train: int) -> bool:
    """Whether the study's planner takes `recipe` over `n_train` items unshrunk (a known recipe is
    enqueued as it is, or not at all)."""
    try:
        return plan_trial(recipe, share, cfg, BudgetModel(efficiency=cfg.t4_efficiency), n_train)[1] is None
    except CapError:
        return False


def enqueue_known(study: optuna.Study, cfg: StudyConfig, data: StudyData) -> list[KnownRecipe]:
    """Enqueue, best first, the known recipes that `cfg`'s space, caps and budget take unchanged (MOS
    studies: the recipes were measured on MOS); the ones enqueued. Call it on a study with no trials."""
    if cfg.pairs:
        return []
    enqueued = []
    for known in known_recipes():
        rebuilt = rebuild(known, cfg)
        if rebuilt is None:
            continue
        recipe, share = rebuilt
        if fits_budget(recipe, share, cfg, len(data.train_val(recipe.spec.input.resize)[0])):
            study.enqueue_trial(known.params, user_attrs={"known_recipe": known.name})
            enqueued.append(known)
    return enqueued

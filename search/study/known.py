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
from typing import Sequence

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


FIELD_TYPES = {"name": str, "params": dict, "provenance": str, "cv": dict}
"""The fields of `KnownRecipe`, as each recipe in the file must give them."""
CV_FIGURES = ("score", "sd", "folds")
"""The cross-validated figures every recipe gives (a study prints them when it enqueues the recipe)."""
DAMAGED = "restore the file from the repository, or search with --no-seed-recipes"


def known_recipes(path: Path | None = None) -> list[KnownRecipe]:
    """The known recipes of `path` (default: `KNOWN_RECIPES`), best first; ValueError naming the file when
    it is not JSON holding a list of recipes under "recipes", each one as `KnownRecipe` holds it."""
    path = Path(path or KNOWN_RECIPES)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err}); {DAMAGED}") from None
    recipes = data.get("recipes") if isinstance(data, dict) else None
    if not isinstance(recipes, list):
        raise ValueError(f"{path}: no list of recipes under the key 'recipes'; {DAMAGED}")
    return [_known(entry, number, path) for number, entry in enumerate(recipes, 1)]


def _known(entry, number: int, path: Path) -> KnownRecipe:
    """Recipe `number` of the file `path`: exactly the fields of `FIELD_TYPES`, each of its type, and the
    `CV_FIGURES` as numbers; ValueError naming the file, the recipe and what is wrong."""
    where = f"{path}: recipe {number}"
    if not isinstance(entry, dict):
        raise ValueError(f"{where} is a {type(entry).__name__}, not an object; {DAMAGED}")
    unknown, missing = sorted(set(entry) - set(FIELD_TYPES)), [k for k in FIELD_TYPES if k not in entry]
    if unknown or missing:
        found = "; ".join(f"{what} key(s) {', '.join(map(repr, keys))}" for what, keys in
                          (("unknown", unknown), ("missing", missing)) if keys)
        raise ValueError(f"{where}: {found} (a recipe has {', '.join(FIELD_TYPES)}); {DAMAGED}")
    wrong = [k for k, kind in FIELD_TYPES.items() if not isinstance(entry[k], kind)]
    if not wrong:
        wrong = [f"cv.{k}" for k in CV_FIGURES if not _number(entry["cv"].get(k))]
    if wrong:
        raise ValueError(f"{where}: wrong type of {', '.join(wrong)}; {DAMAGED}")
    return KnownRecipe(**entry)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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


def enqueue_known(study: optuna.Study, cfg: StudyConfig, data: StudyData,
                  recipes: Sequence[KnownRecipe] | None = None) -> list[KnownRecipe]:
    """Enqueue, best first, the known `recipes` (default: `known_recipes()`) that `cfg`'s space, caps and
    budget take unchanged (only for task kinds that take them, `Kind.known_recipes`: the recipes were measured
    on MOS); the ones enqueued. Call it on a study with no trials."""
    if not cfg.task.known_recipes:
        return []
    enqueued = []
    for known in known_recipes() if recipes is None else recipes:
        rebuilt = rebuild(known, cfg)
        if rebuilt is None:
            continue
        recipe, share = rebuilt
        if fits_budget(recipe, share, cfg, len(data.train_val(recipe.spec.input.resize)[0])):
            study.enqueue_trial(known.params, user_attrs={"known_recipe": known.name})
            enqueued.append(known)
    return enqueued

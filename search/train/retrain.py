"""The final retrain: one recipe trained from scratch on all labelled data, within a deadline.

Used by export (costs from the T4 budget model, before anything is trained) and by the submission
notebook (costs measured on the machine it runs on, then a hard guard on the clock), and by the
quality benchmark. Planning picks the most MOS epochs, up to the wanted number, whose estimated time
(the teacher's training if distilling, pretraining, MOS epochs, and scoring the test images) ends
within the budget; the learning-rate schedule is then planned over exactly those epochs. Wanted
epochs are a number, or `FILL`: as many as the deadline allows (`wanted_epochs`).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from functools import partial
from typing import Callable

import torch
from torch import nn

from search.budget import BudgetModel
from search.data.imageset import ImageSet
from search.data.splits import grouped_holdout
from search.train.pretrain import pretrain
from search.train.snapshot import BestSnapshot
from search.train.recipe import Recipe, TrainConfig
from search.train.step import steps_per_epoch
from search.train.loop import TrainResult, predict, seed_everything, train_model
from space import ArchSpec, build_model, count_flops, train_flops
from space.model import Ensemble


FILL = "fill"
"""Wanted epochs meaning "train until the deadline": the plan takes the epochs that fit, and training
refits them (and the LR schedule) to the measured pace after every epoch."""
OPEN_EPOCHS = 1_000_000
"""The number `FILL` stands for: more epochs than any deadline fits, so the deadline alone ends training."""


CHECK_SHARE = 0.1
"""Of the prompts, the validation part the scored training checks itself on (`check_split`)."""


def check_split(data: ImageSet, seed: int) -> tuple[ImageSet, ImageSet]:
    """(what the scored training trains on, the validation part it is checked on): about `CHECK_SHARE` of
    the images, whole prompts only, so no validation image shares a prompt with a training image."""
    train, val = grouped_holdout(data.groups, CHECK_SHARE, seed)
    return data.subset(train), data.subset(val)


def wanted_epochs(epochs: int | str) -> int:
    """`epochs` (a whole number >= 1, or `FILL`) as the number of MOS epochs to plan for; ValueError
    naming the value otherwise."""
    if epochs == FILL:
        return OPEN_EPOCHS
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a whole number >= 1 or {FILL!r}, got {epochs!r}")
    return epochs


@dataclass(frozen=True)
class StepCosts:
    """Seconds per training step and per scored image of one recipe on one machine."""

    step_s: float
    """One MOS step of the student (with the teacher's forward pass when distilling)."""
    pretrain_step_s: float
    """One self-supervised pretraining step of the student."""
    teacher_step_s: float
    teacher_pretrain_step_s: float
    predict_image_s: float
    """Scoring one test image through all its evaluation views."""
    source: str
    """Where the numbers come from: the T4 budget model, or a measurement on a named device."""

    def times(self, members: int) -> "StepCosts":
        """The costs of an ensemble of `members` networks of these costs, trained and scored one after another."""
        return StepCosts(*(members * x for x in (self.step_s, self.pretrain_step_s, self.teacher_step_s,
                                                 self.teacher_pretrain_step_s, self.predict_image_s)), self.source)


def member_recipe(recipe: Recipe) -> Recipe:
    """`recipe` for one member of its ensemble (`ArchSpec.member`); a copy."""
    return replace(recipe, spec=recipe.spec.member())


def budget_costs(budget: BudgetModel, recipe: Recipe, images_per_item: int = 1) -> StepCosts:
    """The budget model's T4 estimate of `recipe`'s costs (per step: one batch of the recipe's batch size,
    of items of `images_per_item` images each: 2 for preference pairs), all members of an ensemble."""
    if recipe.spec.members > 1:
        return budget_costs(budget, member_recipe(recipe), images_per_item).times(recipe.spec.members)
    def per_step(spec, cfg: TrainConfig) -> tuple[float, float]:
        flops, bs = train_flops(spec), cfg.batch_size * images_per_item
        return budget.epoch_seconds(flops, bs, bs), budget.pretrain_seconds(flops, bs, 1, bs)

    step, pre = per_step(recipe.spec, recipe.train)
    teacher = per_step(recipe.teacher.spec, recipe.teacher.train) if recipe.teacher else (0.0, 0.0)
    if recipe.teacher:  # the teacher scores every student batch too
        step += budget.infer_seconds(count_flops(recipe.teacher.spec), recipe.train.batch_size)
    predict_s = budget.infer_seconds(count_flops(recipe.spec), 1000, recipe.train.eval_views) / 1000
    return StepCosts(step, pre, *teacher, predict_s, "the T4 budget model (good to a factor of about 2 either way)")


@dataclass(frozen=True)
class RetrainPlan:
    epochs: int
    """MOS epochs of the student (and of its teacher)."""
    pretrain_epochs: int
    teacher_pretrain_epochs: int
    seconds: float
    """Estimated seconds of the whole plan: training, pretraining, the teacher, and scoring."""
    student_s: float
    """Of which the student's own training (pretraining + MOS epochs)."""
    budget_s: float
    epoch_s: float
    """One MOS epoch of the student (with the teacher's forward passes)."""
    costs: StepCosts

    def describe(self, elapsed_s: float = 0.0, limit_s: float | None = None) -> str:
        """One line, e.g. "measured 41 s/epoch, 180 epochs fit, expected end 2 h 11 min of a 2 h 30 min
        limit" (times from the start of the clock, `elapsed_s` ago; the limit defaults to the budget)."""
        measured = "measured" if self.costs.source.startswith("measured") else "estimated"
        extra = f" after {self.pretrain_epochs} pretraining epochs" if self.pretrain_epochs else ""
        return (f"{measured} {self.epoch_s:.1f} s/epoch ({self.costs.source}), {self.epochs} epochs fit{extra}, "
                f"expected end {duration(elapsed_s + self.seconds)} "
                f"of a {duration(limit_s or elapsed_s + self.budget_s)} limit")


def duration(seconds: float) -> str:
    """Seconds as people read them: "41 s" under two minutes, else "7 min" or "2 h 05 min"."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def plan_retrain(recipe: Recipe, n_train: int, n_test: int, costs: StepCosts, budget_s: float,
                 wanted_epochs: int, least_epochs: int = 1) -> RetrainPlan:
    """The most MOS epochs in [`least_epochs`, `wanted_epochs`] whose estimated time ends within
    `budget_s`; the recipe's pretraining is kept when it fits beside `least_epochs`, dropped otherwise.
    Raises ValueError when not even `least_epochs` without pretraining fit."""
    steps = epoch_steps(n_train, recipe.train)
    teacher_steps = epoch_steps(n_train, (recipe.teacher or recipe).train)
    epoch_s = steps * costs.step_s + teacher_steps * costs.teacher_step_s
    fixed = n_test * costs.predict_image_s

    def total(epochs: int, pre: int, teacher_pre: int) -> float:
        return (fixed + epochs * epoch_s + pre * steps * costs.pretrain_step_s
                + teacher_pre * teacher_steps * costs.teacher_pretrain_step_s)

    pre, teacher_pre = recipe.train.pretrain_epochs, recipe.teacher.train.pretrain_epochs if recipe.teacher else 0
    if total(least_epochs, pre, teacher_pre) > budget_s:
        pre = teacher_pre = 0
    if total(least_epochs, pre, teacher_pre) > budget_s:
        raise ValueError(f"{least_epochs} epoch(s) are estimated at {total(least_epochs, 0, 0) / 3600:.2f} h by "
                         f"{costs.source}, over the budget of {budget_s / 3600:.2f} h")
    room = budget_s - total(0, pre, teacher_pre)
    epochs = max(least_epochs, min(wanted_epochs, int(room // epoch_s) if math.isfinite(room) else wanted_epochs))
    student_s = epochs * steps * costs.step_s + pre * steps * costs.pretrain_step_s
    return RetrainPlan(epochs, pre, teacher_pre, total(epochs, pre, teacher_pre), student_s, budget_s, epoch_s, costs)


def planned(recipe: Recipe, plan: RetrainPlan) -> Recipe:
    """`recipe` with the plan's epochs (its teacher trains as many MOS epochs as the student)."""
    teacher = None if recipe.teacher is None else replace(
        recipe.teacher, train=replace(recipe.teacher.train, epochs=plan.epochs,
                                      pretrain_epochs=plan.teacher_pretrain_epochs))
    return replace(recipe, train=replace(recipe.train, epochs=plan.epochs, pretrain_epochs=plan.pretrain_epochs),
                   teacher=teacher)


class Deadline:
    """A wall-clock limit that started at `start` (`time.time()`; default now)."""

    def __init__(self, seconds: float, start: float | None = None):
        self.seconds, self.start = seconds, time.time() if start is None else start

    def elapsed(self) -> float:
        return time.time() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()


FINALS = {
    "all": "all labelled data for the planned epochs (until the deadline with fill), keeping the last weights",
    "holdout": f"{1 - CHECK_SHARE:.0%} of the prompts, validated on the rest every few epochs, keeping the best "
               "snapshot and stopping once the score stopped improving",
    "refit": "the holdout run in half the time, then all labelled data for the epochs where it validated best",
}
"""The final-training strategies by name, each in a few words (`retrain`; bench/long_horizon.py measures them)."""
DEFAULT_FINAL = "all"
"""What export and the notebook use unless told: bench/NOTES.md, "The training that is scored, at length"."""


def check_final(final: str) -> str:
    """`final` when it names a strategy of `FINALS`; ValueError naming it otherwise."""
    if final not in FINALS:
        raise ValueError(f"final training {final!r} is not one of {', '.join(FINALS)}")
    return final


def retrain(recipe: Recipe, data: ImageSet, seed: int, device: torch.device | str = "cpu",
            deadline: Deadline | None = None, reserve_s: float = 0.0, progress: bool = False,
            final: str = "all") -> tuple[nn.Module, TrainResult]:
    """Train `recipe` from scratch on `data` by the strategy `final` (`FINALS`): the scored training of export
    and the notebook. "all" trains on all of `data` without validation; "holdout" trains on all but the
    validation part of `check_split`, validates it every few epochs and ends on the best validated
    snapshot (stopping when it stopped improving); "refit" runs the holdout in half the time left, then
    trains on all of `data` for the epochs where it validated best. With a `deadline`, training stops early,
    whatever the plan said, so that `reserve_s` seconds are left for saving and scoring. The result says
    what ran and why it stopped (`TrainResult.stop`). An ensemble trains member by member (`train_members`).
    Preference pairs: `search.train.pairs.retrain_pairs`."""
    if recipe.spec.members > 1:
        return train_members(partial(retrain, final=final), recipe, data, seed, device, deadline, reserve_s, progress)
    if check_final(final) == "all":
        return _train(recipe, data, None, seed, device, deadline, reserve_s, progress)
    train, val = check_split(data, seed)
    if final == "holdout":
        return _train(recipe, train, val, seed, device, deadline, reserve_s, progress)
    half = None if deadline is None else Deadline(deadline.left() / 2 + reserve_s / 2)
    _, calibration = _train(recipe, train, val, seed, device, half, reserve_s, progress, patience=False)
    refit = replace(recipe, train=replace(recipe.train, epochs=calibration.best_epoch or calibration.epochs_run))
    model, result = _train(refit, data, None, seed, device, deadline, reserve_s, progress)
    result.stop = (f"{result.stop}; refit on all data for the {refit.train.epochs} epochs where a holdout run "
                   f"({calibration.epochs_run} epochs: {calibration.stop}) validated best")
    result.best_epoch, result.curve = calibration.best_epoch, calibration.curve
    return model, result


MEMBER_SEED_STEP = 101
"""Member i of an ensemble trains with seed `seed + i * MEMBER_SEED_STEP` (apart from a teacher's `seed + 1`)."""


def train_members(train_one: Callable[..., tuple[nn.Module, TrainResult]], recipe: Recipe, data, seed: int,
                  device: torch.device | str, deadline: Deadline | None, reserve_s: float,
                  progress: bool) -> tuple[Ensemble, TrainResult]:
    """An ensemble recipe trained member by member, each from scratch by `train_one` (one network's retrain, called
    as `retrain` is) with its own seed and, under a `deadline`, an equal share of the time left; then put together.
    The result's history runs through every member's epochs; `member_epochs` says how many each ran."""
    n, single = recipe.spec.members, member_recipe(recipe)
    models, results = [], []
    for i in range(n):
        share = None if deadline is None else Deadline((deadline.left() - reserve_s) / (n - i) + reserve_s)
        model, result = train_one(single, data, seed + i * MEMBER_SEED_STEP, device, share, reserve_s, progress)
        models.append(model.cpu())
        results.append(result)
    stops = "; ".join(f"member {i + 1}: {r.stop}" for i, r in enumerate(results))
    joined = TrainResult([e for r in results for e in r.history], any(r.stopped_early for r in results),
                         sum(r.seconds for r in results), results[-1].target_metrics, results[-1].resident, stops,
                         member_epochs=[r.epochs_run for r in results])
    return Ensemble(recipe.spec, models), joined


def _train(recipe: Recipe, data: ImageSet, val: ImageSet | None, seed: int, device: torch.device | str,
           deadline: Deadline | None, reserve_s: float, progress: bool,
           patience: bool = True) -> tuple[nn.Module, TrainResult]:
    """`recipe` from scratch on `data`, its teacher first when it has one (seed `seed + 1`, as many MOS
    epochs as the student; it teaches and is dropped); with `val`, checked on it by a `BestSnapshot`."""
    teacher = None
    if recipe.teacher is not None:
        student_s = _student_share(recipe, deadline, reserve_s)
        teacher_cfg = replace(recipe.teacher.train, seed=seed + 1,
                              time_budget_s=time_left(deadline, reserve_s + student_s))
        seed_everything(teacher_cfg.seed)
        teacher = build_model(recipe.teacher.spec)
        train_model(teacher, data, None, teacher_cfg, device=device, progress=progress)
    cfg = replace(recipe.train, seed=seed, time_budget_s=time_left(deadline, reserve_s))
    seed_everything(seed)
    model = build_model(recipe.spec)
    watch = None if val is None else BestSnapshot(patience=patience)
    return model, train_model(model, data, val, cfg, device=device, progress=progress, teacher=teacher, watch=watch)


def time_left(deadline: Deadline | None, reserve_s: float) -> float | None:
    """Seconds training may take before `deadline` so that `reserve_s` are left (None: no deadline)."""
    return None if deadline is None else max(1e-3, deadline.left() - reserve_s)


def _student_share(recipe: Recipe, deadline: Deadline | None, reserve_s: float) -> float:
    """Seconds to keep for the student while its teacher trains: its share of what is left, in
    proportion to the two models' FLOPs."""
    if deadline is None:
        return 0.0
    student, teacher = train_flops(recipe.spec), train_flops(recipe.teacher.spec)
    return (deadline.left() - reserve_s) * student / (student + teacher)


def measure_costs(recipe: Recipe, data: ImageSet, device: torch.device | str, steps: int = 6,
                  test_images: torch.Tensor | None = None) -> StepCosts:
    """Step costs measured here: each model trains throwaway copies for two short epochs of `steps`
    steps on a slice of `data` (the second epoch is timed, after warm-up); scoring is timed on a slice
    of `test_images` (default: of `data`), through the recipe's test views (a patch grid included)."""
    if recipe.spec.members > 1:
        return measure_costs(member_recipe(recipe), data, device, steps, test_images).times(recipe.spec.members)
    device = torch.device(device)
    cfg = recipe.train
    sample = data.subset(list(range(min(len(data), steps * cfg.batch_size))))
    teacher = build_model(recipe.teacher.spec).to(device).eval() if recipe.teacher else None
    step = timed_step(partial(train_model, teacher=teacher), recipe.spec, cfg, sample, device)
    pre = _timed_pretrain_step(recipe.spec, cfg, sample, device) if cfg.pretrain_epochs else 3 * step
    teacher_costs = (0.0, 0.0)
    if recipe.teacher:
        tcfg = replace(recipe.teacher.train, distill_weight=0.0)
        t_step = timed_step(train_model, recipe.teacher.spec, tcfg, sample, device)
        teacher_costs = (t_step, _timed_pretrain_step(recipe.teacher.spec, tcfg, sample, device)
                         if tcfg.pretrain_epochs else 3 * t_step)
    scored = sample.images if test_images is None else test_images
    return StepCosts(step, pre, *teacher_costs, timed_predict(recipe, scored, device), measured_on(device))


def timed_predict(recipe: Recipe, images: torch.Tensor, device: torch.device, most: int = 64) -> float:
    """Seconds to score one image through all the recipe's test views (its patch grid too), timed on up
    to `most` of `images` after a warm-up pass."""
    model, images = build_model(recipe.spec), images[:most]
    for _ in range(2):
        start = time.perf_counter()
        predict(model, images, device=device, crop=recipe.spec.input.crop, views=recipe.train.eval_views,
                precision=recipe.train.precision)
    return (time.perf_counter() - start) / len(images)


def timed_step(train: Callable[..., TrainResult], spec: ArchSpec, cfg: TrainConfig, sample,
               device: torch.device) -> float:
    """Seconds of one step of `train` (`train_model`, or pair training) on `sample`, timed on the second
    of two short epochs."""
    probe = replace(cfg, epochs=2, pretrain_epochs=0, time_budget_s=None)
    result = train(build_model(spec), sample, None, probe, device=device)
    return (result.history[1].seconds - result.history[0].seconds) / epoch_steps(len(sample), cfg)


def _timed_pretrain_step(spec, cfg: TrainConfig, sample: ImageSet, device: torch.device) -> float:
    probe = replace(cfg, pretrain_epochs=1, time_budget_s=None)
    model = build_model(spec)
    pretrain(model, sample.images, probe, device)  # warm-up
    seconds = pretrain(model, sample.images, probe, device)
    return seconds / epoch_steps(len(sample), cfg)


def epoch_steps(n_images: int, cfg: TrainConfig) -> int:
    """Steps of one epoch over `n_images`, exactly as the trainer runs them."""
    return steps_per_epoch(n_images, min(cfg.batch_size, n_images))


def measured_on(device: torch.device) -> str:
    """`StepCosts.source` of a measurement on `device`."""
    return "measured on " + (torch.cuda.get_device_name(device) if device.type == "cuda"
                             else f"this CPU ({torch.get_num_threads()} threads)")

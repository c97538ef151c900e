"""Training from preference pairs alone: a Bradley-Terry (pairwise logistic) loss on the model's scores.

The model scores both images of a pair (random crops and flips, as in MOS training) and the loss is
softplus(-(s_winner - s_loser)): the log-likelihood of the observed preference under the Bradley-Terry
model. Validation is pair accuracy on pairs whose images training never saw (`split_pairs`). It runs
in the same epoch loop as MOS training (optimiser, EMA, precision, time budget, early stopping).
"""
from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from search.train.augment import random_crop_flip, to_model_input
from search.data.pairs import PairRows, PairSet
from search.train.recipe import Recipe, TrainConfig
from search.train.retrain import (
    Deadline, StepCosts, measured_on, member_recipe, time_left, timed_predict, timed_step, train_members,
)
from search.train.step import Images, TrainingDiverged, autocast, model_device, resolve_precision
from search.train.loop import EpochRecord, FitTask, TrainResult, fit, predict, seed_everything
from space import build_model

PREFERENCE = "preference"
"""The target name of a pairs study: its only metric is `pair_acc`."""


def bradley_terry_loss(winner: torch.Tensor, loser: torch.Tensor) -> torch.Tensor:
    """Mean of softplus(-(winner - loser)): minus the log-probability that the winner is preferred."""
    return F.softplus(loser - winner).mean()


def winner_accuracy(scores: np.ndarray, pairs: np.ndarray) -> float:
    """Share of (winner, loser) pairs whose winner scores higher (a tie counts one half)."""
    diff = scores[pairs[:, 0]] - scores[pairs[:, 1]]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def choose(scores: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """For (a, b) index pairs, 0 where `a` scores at least as high as `b`, else 1."""
    return (scores[pairs[:, 1]] > scores[pairs[:, 0]]).astype(np.int64)


def evaluate_pairs(model: nn.Module, data: PairSet, crop: int | None = None, views: int = 1,
                   device: torch.device | str | None = None, precision: str = "auto") -> dict[str, dict[str, float]]:
    """{"preference": {"pair_acc": ...}} of `model` on `data`'s pairs."""
    scores = predict(model, data.images.images, device=device, crop=crop, views=views, precision=precision)[:, 0]
    if not np.isfinite(scores).all():
        raise TrainingDiverged("non-finite scores on the validation pairs")
    return {PREFERENCE: {"pair_acc": winner_accuracy(scores, data.pairs)}}


def choices_frame(rows: PairRows, scores: dict[str, float]) -> tuple[pd.DataFrame, float | None]:
    """One row per pair of `rows`, in file order: `image_a, image_b, chosen` (the higher-scored image;
    `image_a` on a tie), with `winner` and the pair accuracy when the CSV names winners (else None)."""
    names = rows.names()
    index = {n: i for i, n in enumerate(names)}
    values = np.asarray([scores[n] for n in names], dtype=np.float64)
    ab = np.asarray([(index[a], index[b]) for a, b in zip(rows.a, rows.b)], dtype=np.int64)
    picks = choose(values, ab)
    frame = pd.DataFrame({"image_a": rows.a, "image_b": rows.b,
                          "chosen": [names[ab[i, p]] for i, p in enumerate(picks)]})
    if rows.a_wins is None:
        return frame, None
    frame["winner"] = np.where(rows.a_wins, rows.a, rows.b)
    return frame, winner_accuracy(values, np.where(rows.a_wins[:, None], ab, ab[:, ::-1]))


def _pair_loss(model: nn.Module, images: Images, pairs: torch.Tensor, cfg: TrainConfig,
               gen: torch.Generator) -> Callable[[torch.Tensor], torch.Tensor]:
    device = images.device
    crop = cfg.crop or images.data.shape[-1]
    channels_last = cfg.channels_last and device.type == "cuda"
    dtype = resolve_precision(cfg.precision, device)

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        both = pairs[idx].T.reshape(-1)  # winners, then losers
        x = to_model_input(random_crop_flip(images.batch(both), crop, gen, cfg.hflip), channels_last, model)
        with autocast(device, dtype):
            score = model(x).float()[:, 0]
        winner, loser = score.chunk(2)
        return bradley_terry_loss(winner, loser)

    return batch_loss


def train_pairs(model: nn.Module, train: PairSet, val: PairSet | None, cfg: TrainConfig,
                device: torch.device | str | None = None, on_epoch: Callable[[EpochRecord], bool] | None = None,
                progress: bool = False) -> TrainResult:
    """Train `model` (first output = score) on `train`'s pairs under `cfg`'s budget; pair accuracy on
    `val` after every epoch. Losses, pretraining and distillation of `cfg` do not apply to pairs."""
    cfg.validate()
    if cfg.pretrain_epochs or cfg.distill_weight:
        raise ValueError("training from pairs takes no pretraining epochs and no teacher")
    if len(train) < 2:
        raise ValueError(f"training needs at least 2 pairs, got {len(train)}")
    device = torch.device(device) if device is not None else model_device(model)
    seed_everything(cfg.seed)
    model.to(device)
    if cfg.channels_last and device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    images = Images(train.images.images, device)
    pairs = torch.from_numpy(train.pairs).to(images.index_device)
    gen = torch.Generator(device=device if device.type == "cuda" else "cpu").manual_seed(cfg.seed)

    def validate(scored: nn.Module, epoch: int) -> dict[str, dict[str, float]]:
        if val is None or len(val) == 0:
            return {}
        return evaluate_pairs(scored, val, cfg.crop, cfg.eval_views, device, cfg.precision)

    task = FitTask(_pair_loss(model, images, pairs, cfg, gen), len(train), images.index_device, validate,
                   images.resident)
    return fit(model, task, cfg, device, 0.0, on_epoch, progress)


def retrain_pairs(recipe: Recipe, data: PairSet, seed: int, device: torch.device | str = "cpu",
                  deadline: Deadline | None = None, reserve_s: float = 0.0,
                  progress: bool = False, final: str = "all") -> tuple[nn.Module, TrainResult]:
    """`search.train.retrain.retrain` from preference pairs: no teacher (distillation needs MOS training), and
    on all the pairs (`final` "all": the validation part of the other strategies is split by prompt)."""
    if recipe.spec.members > 1:
        return train_members(partial(retrain_pairs, final=final), recipe, data, seed, device, deadline, reserve_s,
                             progress)
    if final != "all":
        raise ValueError(f"training from preference pairs uses all of them (final 'all'), not {final!r}")
    if recipe.teacher is not None:
        raise ValueError("training from preference pairs takes no teacher (distillation needs MOS training)")
    cfg = replace(recipe.train, seed=seed, time_budget_s=time_left(deadline, reserve_s))
    seed_everything(seed)
    model = build_model(recipe.spec)
    return model, train_pairs(model, data, None, cfg, device=device, progress=progress)


def measure_pair_costs(recipe: Recipe, data: PairSet, device: torch.device | str, steps: int = 6,
                       test_images: torch.Tensor | None = None) -> StepCosts:
    """`search.train.retrain.measure_costs` of a pairs recipe: a pair step (both images of `batch_size`
    pairs) and scoring one image."""
    if recipe.spec.members > 1:
        return measure_pair_costs(member_recipe(recipe), data, device, steps, test_images).times(recipe.spec.members)
    device = torch.device(device)
    sample = data.select(np.arange(min(len(data), steps * recipe.train.batch_size)))
    step = timed_step(train_pairs, recipe.spec, recipe.train, sample, device)
    scored = sample.images.images if test_images is None else test_images
    return StepCosts(step, 3 * step, 0.0, 0.0, timed_predict(recipe, scored, device), measured_on(device))

"""The two kinds of task a model is trained for, each owning what differs between them (training,
scoring, output names, items, the final retrain).

`MOS`: images with mean opinion scores, trained with the MOS losses (`search.train.loop.train_model`)
and scored by the IQA metrics per target. `PAIRS`: preference pairs of images, trained with a
Bradley-Terry loss (`search.train.pairs.train_pairs`) and scored by pair accuracy. The study, the
retrain and export ask the kind (`task_of(data)`) instead of testing the data's type themselves.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from search.data.imageset import ImageSet
from search.data.pairs import PairSet
from search.train.loop import EpochRecord, TrainResult, evaluate, train_model
from search.train.pairs import PREFERENCE, evaluate_pairs, measure_pair_costs, retrain_pairs, train_pairs
from search.train.recipe import Recipe, TrainConfig
from search.train.retrain import DEFAULT_FINAL, Deadline, StepCosts, measure_costs, retrain

Data = ImageSet | PairSet


class TaskKind:
    """What one kind of task does with its data: train, score, name its outputs, take a part."""

    name: str
    images_per_item: int
    """Images scored per training item: one image, or both images of a pair."""

    def train(self, model: nn.Module, train: Data, val: Data | None, cfg: TrainConfig,
              device: torch.device | str | None = None, on_epoch: Callable[[EpochRecord], bool] | None = None,
              progress: bool = False) -> TrainResult:
        raise NotImplementedError

    def evaluate(self, model: nn.Module, data: Data, crop: int | None, views: int,
                 device: torch.device | str | None = None) -> dict[str, dict[str, float]]:
        """Validation metrics per target of `model` on `data`."""
        raise NotImplementedError

    def target_names(self, data: Data) -> list[str]:
        """The model's outputs, by name (what a checkpoint records)."""
        raise NotImplementedError

    def subset(self, data: Data, idx: Sequence[int] | np.ndarray) -> Data:
        """The items `idx` of `data` (images, or pairs)."""
        raise NotImplementedError

    def images(self, data: Data) -> ImageSet:
        """The images the items are made of."""
        raise NotImplementedError

    def measure(self, recipe: Recipe, data: Data, device: torch.device | str) -> StepCosts:
        """`recipe`'s step costs measured on `device` (throwaway copies trained a few steps on `data`)."""
        raise NotImplementedError

    default_final: str
    """The final-training strategy export uses unless told (`search.train.retrain.FINALS`)."""

    def retrain(self, recipe: Recipe, data: Data, seed: int, device: torch.device | str = "cpu",
                deadline: Deadline | None = None, reserve_s: float = 0.0,
                progress: bool = False, final: str = "all") -> tuple[nn.Module, TrainResult]:
        """`recipe` trained from scratch on `data` by the strategy `final`, within `deadline`."""
        raise NotImplementedError


class MosTask(TaskKind):
    name, images_per_item, default_final = "mos", 1, DEFAULT_FINAL

    def train(self, model, train, val, cfg, device=None, on_epoch=None, progress=False) -> TrainResult:
        return train_model(model, train, val, cfg, device=device, on_epoch=on_epoch, progress=progress)

    def evaluate(self, model, data, crop, views, device=None) -> dict[str, dict[str, float]]:
        return evaluate(model, data, crop, views, device=device)

    def target_names(self, data: ImageSet) -> list[str]:
        return list(data.target_names)

    def subset(self, data: ImageSet, idx) -> ImageSet:
        return data.subset(idx)

    def images(self, data: ImageSet) -> ImageSet:
        return data

    def retrain(self, recipe, data, seed, device="cpu", deadline=None, reserve_s=0.0, progress=False, final="all"):
        return retrain(recipe, data, seed, device, deadline, reserve_s, progress, final)

    def measure(self, recipe, data, device) -> StepCosts:
        return measure_costs(recipe, data, device)


class PairTask(TaskKind):
    name, images_per_item, default_final = "pairs", 2, "all"

    def train(self, model, train, val, cfg, device=None, on_epoch=None, progress=False) -> TrainResult:
        return train_pairs(model, train, val, cfg, device=device, on_epoch=on_epoch, progress=progress)

    def evaluate(self, model, data, crop, views, device=None) -> dict[str, dict[str, float]]:
        return evaluate_pairs(model, data, crop, views, device=device)

    def target_names(self, data: PairSet) -> list[str]:
        return [PREFERENCE]

    def subset(self, data: PairSet, idx) -> PairSet:
        return data.select(np.asarray(idx))

    def images(self, data: PairSet) -> ImageSet:
        return data.images

    def retrain(self, recipe, data, seed, device="cpu", deadline=None, reserve_s=0.0, progress=False, final="all"):
        return retrain_pairs(recipe, data, seed, device, deadline, reserve_s, progress, final)

    def measure(self, recipe, data, device) -> StepCosts:
        return measure_pair_costs(recipe, data, device)


MOS, PAIRS = MosTask(), PairTask()


def task_of(data: Data) -> TaskKind:
    """The kind of task `data` is for."""
    return PAIRS if isinstance(data, PairSet) else MOS

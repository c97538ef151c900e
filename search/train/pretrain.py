"""Self-supervised ranking pretraining: no labels, no external data (allowed by the rules).

The model learns to score each training crop above a mildly and a strongly degraded copy of itself
(`search.train.distort`); `train_model` runs it before the MOS epochs when `TrainConfig.pretrain_epochs` asks,
its time counted in the same budget.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from search.train.augment import random_crop_flip, to_model_input
from search.train.distort import graded_pair
from search.train.recipe import TrainConfig
from search.train.step import Batches, Images, Stepper, TrainingDiverged, autocast, generators, model_device, run_epoch

PRETRAIN_MARGIN = 0.5
"""Score gap, in standard deviations of the training MOS, that pretraining asks between an image and a
copy degraded one step further; a hinge, so scores stop growing once the order is clear."""


def pretrain(model: nn.Module, images: torch.Tensor | Images, cfg: TrainConfig,
             device: torch.device | str | None = None, seconds_left: float = math.inf) -> float:
    """`cfg.pretrain_epochs` self-supervised ranking epochs on uint8 `images` (no labels): the model's
    first output must score each crop `PRETRAIN_MARGIN` above a mildly degraded copy and that above a
    strongly degraded one (in units of `target_std` when the model has it). Stops early after
    `seconds_left`; returns the wall seconds spent. `train_model` calls it before the MOS epochs."""
    device = torch.device(device) if device is not None else model_device(model)
    model.to(device)
    images = images if isinstance(images, Images) else Images(images, device)
    crop = cfg.crop or images.data.shape[-1]
    scale = model.target_std[0] if hasattr(model, "target_std") else 1.0
    batches = Batches(len(images), min(cfg.batch_size, len(images)))
    steps = len(batches)
    optimise = Stepper(model, cfg, cfg.pretrain_epochs * steps, round(cfg.warmup_epochs * steps), device)
    channels_last = cfg.channels_last and device.type == "cuda"
    gen, host = generators(device, cfg.seed + 2)
    perm_gen = torch.Generator().manual_seed(cfg.seed + 4)

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        x = to_model_input(random_crop_flip(images.batch(idx), crop, gen, cfg.hflip))
        batch = torch.cat([x, *graded_pair(x, cfg.pretrain_distortions, host, gen)])
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with autocast(device, optimise.dtype):
            score = model(batch).float()[:, 0]
        clean, mild, strong = (score / scale).chunk(3)
        return (torch.relu(PRETRAIN_MARGIN - (clean - mild)) + torch.relu(PRETRAIN_MARGIN - (mild - strong))
                + torch.relu(2 * PRETRAIN_MARGIN - (clean - strong))).mean()

    spent = 0.0
    model.train()
    for _ in range(cfg.pretrain_epochs):
        stats = run_epoch(batch_loss, optimise, batches, images.index_device, perm_gen, seconds_left - spent)
        spent += stats.seconds
        if stats.skipped == stats.steps:
            raise TrainingDiverged("every step of a pretraining epoch had a non-finite loss")
        if stats.out_of_time:
            break
    model.eval()
    return spent

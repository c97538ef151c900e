"""One optimisation step and one epoch of steps: what every kind of training shares.

Precision by compute capability (`resolve_precision`): bf16 from 8.0 (Ampere) on, fp16 with real loss
scaling below it (a T4 is 7.5), fp32 on a CPU unless forced. A `Stepper` runs AdamW (fused on the device
side) under linear warm-up and a cosine whose length can be re-planned, with gradient clipping and a
GradScaler; on a GPU (and in fp16 anywhere) a non-finite step is skipped on the device, so a step never
waits for the GPU and the host syncs once per epoch (`run_epoch`); `Batches` draws an epoch's batches, each
from one source when a set combines several. `Images` keeps a uint8 set resident on the device when it
fits in a share of the free memory (`search.memory`), else on the host.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from search.memory import fits_on_device
from search.train.recipe import PRECISIONS, TrainConfig

def resolve_precision(precision: str, device: torch.device,
                      capability: tuple[int, int] | None = None) -> torch.dtype | None:
    """The autocast dtype of a run on `device` (None = fp32). "auto": bf16 on a GPU of compute capability
    8.0 or more (Ampere on), fp16 below it (a T4 is 7.5 and has no native bf16 convolutions, although
    `torch.cuda.is_bf16_supported()` says True there by emulation), fp32 on a CPU. "fp16" and "bf16"
    force that dtype on any device: the CPU runs fp16 autocast, loss scaling and fused AdamW too, which
    is how the test suite exercises the T4 path without a GPU. `capability` overrides the device's."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision != "auto":
        return {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    if device.type != "cuda":
        return None
    major, _ = capability or torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


class TrainingDiverged(RuntimeError):
    """Training produced non-finite losses or predictions (the recipe diverged for this model)."""


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the base LR at `step` (0-based): linear warm-up to 1 over `warmup_steps`, capped
    by a cosine from 1 at step 0 to 0 at `total_steps`."""
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, total_steps))))
    return min((step + 1) / max(1, warmup_steps), cosine)


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return torch.autocast(device_type=device.type, enabled=False)
    return torch.autocast(device_type=device.type, dtype=dtype)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and normalisation parameters (every parameter with ndim < 2)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


class WeightAverage:
    """An exponential moving average of a model's floating-point parameters and buffers, updated on
    the device without a host sync; the decay ramps up as min(decay, (1 + t) / (10 + t))."""

    def __init__(self, model: nn.Module, decay: float):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.updates = decay, 0
        pairs = list(zip(self.model.state_dict().values(), model.state_dict().values()))
        self._float = [p for p in pairs if p[0].is_floating_point()]
        self._other = [p for p in pairs if not p[0].is_floating_point()]

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        weight = 1 - min(self.decay, (1 + self.updates) / (10 + self.updates))
        averaged, live = zip(*self._float)
        torch._foreach_lerp_(list(averaged), list(live), weight)
        for averaged_t, live_t in self._other:
            averaged_t.copy_(live_t)


class Stepper:
    """One optimisation step per call: AdamW under linear warm-up and cosine decay, gradient clipping,
    and skipping of non-finite steps. On a GPU, and in fp16 anywhere, the skip is decided on the device:
    a GradScaler (scaling the loss for real in fp16, at scale 1 otherwise) feeds its found-inf flag to a
    fused AdamW, so a GPU caller never waits; in fp32 on the CPU it is decided on the host. Returns
    whether the loss was finite, as a tensor; fp16 steps skipped because the scaled gradients
    overflowed (the scale then backs off, as loss scaling does for its first steps) count in `overflows`."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, total_steps: int, warmup_steps: int, device: torch.device,
                 average: WeightAverage | None = None):
        self.model, self.clip, self.average, self.device = model, cfg.grad_clip, average, device
        self.dtype = resolve_precision(cfg.precision, device)
        self.fp16 = self.dtype == torch.float16
        self.device_side = device.type == "cuda" or self.fp16
        self.optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, fused=self.device_side)
        self.total_steps, self.warmup_steps = total_steps, warmup_steps
        self.annealing: tuple[int, float, int] | None = None
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._factor)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.device_side,
                                           **({} if self.fp16 else {"init_scale": 1.0, "growth_interval": 2**30}))
        self.overflows = torch.zeros((), device=device, dtype=torch.int64)

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def _factor(self, step: int) -> float:
        """The LR multiplier at `step`: `lr_factor`, or after `anneal` a cosine from where it was to zero."""
        if self.annealing is None:
            return lr_factor(step, self.warmup_steps, self.total_steps)
        start, factor, steps = self.annealing
        return factor * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - start) / max(1, steps))))

    def anneal(self, steps: int) -> None:
        """Decay the learning rate from where it is to zero over the next `steps` steps (a cosine), whatever the
        planned schedule: a run ended on evidence before its schedule did still ends annealed."""
        step = self.schedule.last_epoch
        self.annealing = (step, self._factor(step), steps)

    def __call__(self, loss: torch.Tensor) -> torch.Tensor:
        finite = torch.isfinite(loss.detach())
        self.optimizer.zero_grad(set_to_none=True)
        if self.device_side or bool(finite):
            self.scaler.scale(loss).backward()
            if self.clip:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.clip, foreach=True)
            # the scale backs off exactly when a step is skipped
            scale = self.scaler._scale.clone() if self.fp16 else None
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.schedule.step()
            if self.average:
                self.average.update()
            if scale is not None:
                self.overflows += (finite & (self.scaler._scale < scale).reshape(())).long()
        return finite


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimiser steps of one epoch over `n` items in batches of `batch_size`, exactly as the trainer runs
    them (the one owner: the budget model and the retrain planner count with it)."""
    return n // batch_size + (1 if n % batch_size > 1 else 0)  # a last batch of one would break BatchNorm


class Images:
    """Training images where the steps read them: resident on the device when the set fits in a share of
    its free memory (`search.memory`), else kept on the host with one batch copied per step."""

    def __init__(self, images: torch.Tensor, device: torch.device):
        self.device = device
        self.resident = fits_on_device(images.numel() * images.element_size(), device)
        self.data = images.to(device) if self.resident else images
        self.index_device = device if self.resident else torch.device("cpu")

    def __len__(self) -> int:
        return len(self.data)

    def batch(self, idx: torch.Tensor) -> torch.Tensor:
        """uint8 images `idx` (indices on `index_device`) on the training device."""
        return self.data[idx] if self.resident else self.data[idx].to(self.device, non_blocking=True)


@dataclass
class EpochStats:
    loss: float
    skipped: int
    steps: int
    images: int
    seconds: float
    out_of_time: bool


class Batches:
    """The batches of an epoch over `n` items: a fresh permutation cut into batches of `batch_size`, the
    last dropped when it would hold one item (`steps_per_epoch`). With `sources` (each item's source, when
    there are several), each source's items are permuted and cut apart and the batches shuffled: every
    batch holds one source, so the rank and normalised loss terms compare images scored on one scale, and
    each source gives batches in proportion to its size (all its items, once per epoch)."""

    def __init__(self, n: int, batch_size: int, sources: np.ndarray | None = None):
        self.n, self.batch_size = n, batch_size
        several = sources is not None and len(np.unique(sources)) > 1
        self.parts = [torch.from_numpy(np.flatnonzero(sources == s)) for s in np.unique(sources)] if several else None

    def __len__(self) -> int:
        """Steps of one epoch."""
        if self.parts is None:
            return steps_per_epoch(self.n, self.batch_size)
        return sum(steps_per_epoch(len(part), self.batch_size) for part in self.parts)

    def epoch(self, gen: torch.Generator, device: torch.device) -> list[torch.Tensor]:
        """The item indices (on `device`) of every batch of a new epoch, drawn with `gen`."""
        bs = self.batch_size
        if self.parts is None:
            order = torch.randperm(self.n, generator=gen).to(device)
            return [order[i * bs:(i + 1) * bs] for i in range(len(self))]
        batches = []
        for part in self.parts:
            order = part[torch.randperm(len(part), generator=gen)]
            batches += [order[i * bs:(i + 1) * bs] for i in range(steps_per_epoch(len(part), bs))]
        return [batches[i].to(device) for i in torch.randperm(len(batches), generator=gen).tolist()]


def run_epoch(batch_loss: Callable[[torch.Tensor], torch.Tensor], optimise: Stepper, batches: Batches,
               index_device: torch.device, perm_gen: torch.Generator, seconds_left: float) -> EpochStats:
    """One epoch of steps over a fresh draw of `batches` (of images or pairs), stopping early after
    `seconds_left`. The running sums stay on the device; the host waits once, at the end."""
    device = optimise.device
    loss_sum, finite_images, skipped = (torch.zeros((), device=device) for _ in range(3))
    start, seen, steps, out_of_time = time.perf_counter(), 0, 0, False
    for idx in batches.epoch(perm_gen, index_device):
        loss = batch_loss(idx)
        finite = optimise(loss)
        loss_sum += torch.where(finite, loss.detach(), 0.0) * len(idx)
        finite_images += finite * len(idx)
        skipped += ~finite
        seen += len(idx)
        steps += 1
        out_of_time = time.perf_counter() - start >= seconds_left
        if out_of_time:
            break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return EpochStats(loss_sum.item() / max(1, int(finite_images.item())), int(skipped.item()), steps, seen, seconds,
                       out_of_time)


def generators(device: torch.device, seed: int) -> tuple[torch.Generator, torch.Generator]:
    """(crop generator on the training device, permutation generator on the host), seeded."""
    gen = torch.Generator(device=device if device.type == "cuda" else "cpu").manual_seed(seed)
    return gen, torch.Generator().manual_seed(seed + 1)

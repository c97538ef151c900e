"""The T4 budget model: how long training and inference of a model would take on an NVIDIA T4.

Budgets are expressed in T4 seconds so that a study run on a CPU, an H100 or a T4 plans the same
trials. The estimate is a roofline from the model's forward FLOPs (one multiply-add = one FLOP, as
`space.count_flops` counts them):

    train seconds = epochs * images * 3 * 2 * flops / (T4 fp16 peak * efficiency) + steps * step overhead

(3 = forward + backward; 2 = hardware FLOPs per multiply-add.) Being a function of the spec alone, it
is deterministic: the same trial gets the same epochs on every machine, which keeps trials
reproducible. This module is the one place the calibration lives.

Calibration and its uncertainty: small from-scratch CNNs do not reach tensor-core peak. A plain ~1M
parameter CNN at 320 px (about 1.5 GFLOP per image) trains at ~6k images/s on an H100 with GPU-resident
data, i.e. ~50 TFLOP/s effective, and an H100 is 8-15x a T4 on such work, giving 3-6 TFLOP/s on a T4,
5-10 % of its 65 TFLOP/s fp16 peak. The default efficiency 0.07 sits in that range; treat estimates as
good to a factor of about 2 until measured on the GPU machine (bench/t4_budget.py), and override with
`--t4-efficiency` when you know better.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

T4_FP16_PEAK_FLOPS = 65e12
"""NVIDIA T4 fp16 tensor-core peak, FLOP/s (the exported notebook trains in fp16 autocast)."""


@dataclass(frozen=True)
class BudgetModel:
    """Estimates T4 seconds for training and inference from a model's forward FLOPs per image."""

    efficiency: float = 0.07
    """Fraction of the T4 fp16 peak that small convnets reach in training."""
    step_overhead_s: float = 0.004
    """Fixed cost of one optimiser step (kernel launches, optimiser, data gather)."""
    eval_overhead_s: float = 0.002
    """Fixed cost of one inference batch."""

    def __post_init__(self) -> None:
        if not 0 < self.efficiency <= 1:
            raise ValueError(f"t4 efficiency must be in (0, 1], got {self.efficiency}")
        if self.step_overhead_s < 0 or self.eval_overhead_s < 0:
            raise ValueError("t4 overheads must be >= 0")

    @property
    def effective_flops(self) -> float:
        return T4_FP16_PEAK_FLOPS * self.efficiency

    def epoch_seconds(self, flops: int, n_images: int, batch_size: int) -> float:
        """T4 seconds for one training epoch."""
        steps = math.ceil(n_images / batch_size)
        return n_images * 3 * 2 * flops / self.effective_flops + steps * self.step_overhead_s

    def train_seconds(self, flops: int, n_images: int, epochs: float, batch_size: int) -> float:
        """T4 seconds for `epochs` epochs of training over `n_images` images."""
        return epochs * self.epoch_seconds(flops, n_images, batch_size)

    def infer_seconds(self, flops: int, n_images: int, views: int = 1, batch_size: int = 64) -> float:
        """T4 seconds to score `n_images` images, each seen through `views` crops."""
        batches = math.ceil(n_images * views / batch_size)
        return n_images * views * 2 * flops / self.effective_flops + batches * self.eval_overhead_s

    def epochs_for(self, budget_s: float, flops: int, n_images: int, batch_size: int) -> int:
        """Whole epochs that fit in `budget_s` T4 seconds (at least 1)."""
        return max(1, int(budget_s // self.epoch_seconds(flops, n_images, batch_size)))

    def to_dict(self) -> dict:
        return asdict(self)

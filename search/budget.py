"""The T4 budget model: how long training and inference of a model would take on an NVIDIA T4.

Budgets are expressed in T4 seconds so that a study run on a CPU, an H100 or a T4 plans the same
trials. The estimate is a roofline from the model's forward FLOPs (one multiply-add = one FLOP, as
`space.count_flops` counts them):

    train seconds = epochs * images * 3 * 2 * flops / (T4 fp16 peak * efficiency) + steps * step overhead

(3 = forward + backward; 2 = hardware FLOPs per multiply-add.) Being a function of the spec alone, it
is deterministic: the same trial gets the same epochs on every machine, which keeps trials
reproducible. This module is the one place the calibration lives.

Calibration and its uncertainty (no T4 is at hand; the figures below are the evidence):
- Compute term. NVIDIA's DeepLearningExamples (ResNet-50 v1.5, PyTorch) list T4 mixed-precision
  inference at about 1,200 images/s (4.1 G multiply-adds each): ~15 % of the 65 TFLOP/s fp16 peak.
  Training runs at about a third of inference there (V100: 1,200 against 3,400 images/s), so ~15 %
  for training too. Our models are far narrower (16-256 channels) and fill the tensor cores worse,
  and a T4 throttles under sustained load (70 W): the default efficiency is a third of that, 0.05.
- Per-step term. Small models are launch-bound: on an H100 a plain 1M-parameter CNN at 320 px ran
  at 5-11 ms per step with GPU-resident data (../shared/README.md), and a searched 0.67M-parameter
  trial at about 27 ms per step including its per-epoch evaluation (bench/NOTES.md). That time is
  spent by the host (Python, kernel launches), and a Kaggle T4 host has 2 slow vCPUs, so 10 ms per
  step is a floor rather than a guess; evaluation batches get 4 ms.
Treat estimates as good to a factor of about 2 either way. `bench/t4_budget.py` prints measured time
against the estimate on the machine at hand; override the efficiency with `--t4-efficiency` once a
T4 has been measured.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from search.train.step import steps_per_epoch

T4_FP16_PEAK_FLOPS = 65e12
"""NVIDIA T4 fp16 tensor-core peak, FLOP/s (the exported notebook trains in fp16 autocast)."""
CALIBRATED_EFFICIENCY = 0.05
"""Fraction of the T4 fp16 peak that small convnets reach in training (the calibration above)."""
EFFICIENCY_RANGE = (CALIBRATED_EFFICIENCY / 100, 1.0)
"""Efficiencies the budget model takes: from a hundredth of the calibrated one (estimates 100x off, far beyond
the calibration's factor of 2: a typo, such as 1e-30, that would plan zero-epoch trials) to the whole peak."""


@dataclass(frozen=True)
class BudgetModel:
    """Estimates T4 seconds for training and inference from a model's forward FLOPs per image."""

    efficiency: float = CALIBRATED_EFFICIENCY
    """Fraction of the T4 fp16 peak that small convnets reach in training, in `EFFICIENCY_RANGE`."""
    step_overhead_s: float = 0.010
    """Fixed cost of one optimiser step (kernel launches, optimiser, data gather)."""
    eval_overhead_s: float = 0.004
    """Fixed cost of one inference batch."""

    def __post_init__(self) -> None:
        low, high = EFFICIENCY_RANGE
        if not low <= self.efficiency <= high:
            raise ValueError(f"t4 efficiency must be in [{low:g}, {high:g}] (a hundredth of the calibrated "
                             f"{CALIBRATED_EFFICIENCY:g} to the whole peak), got {self.efficiency:g}")
        if self.step_overhead_s < 0 or self.eval_overhead_s < 0:
            raise ValueError("t4 overheads must be >= 0")

    @property
    def effective_flops(self) -> float:
        return T4_FP16_PEAK_FLOPS * self.efficiency

    def epoch_seconds(self, flops: int, n_images: int, batch_size: int) -> float:
        """T4 seconds for one training epoch."""
        steps = steps_per_epoch(n_images, min(batch_size, n_images))
        return n_images * 3 * 2 * flops / self.effective_flops + steps * self.step_overhead_s

    def train_seconds(self, flops: int, n_images: int, epochs: float, batch_size: int,
                      pretrain_epochs: float = 0) -> float:
        """T4 seconds for `epochs` epochs of training over `n_images` images, after `pretrain_epochs`
        self-supervised pretraining epochs (`pretrain_seconds`)."""
        return epochs * self.epoch_seconds(flops, n_images, batch_size) + (
            self.pretrain_seconds(flops, n_images, pretrain_epochs, batch_size) if pretrain_epochs else 0.0)

    def pretrain_seconds(self, flops: int, n_images: int, epochs: float, batch_size: int) -> float:
        """T4 seconds for `epochs` self-supervised pretraining epochs (`search.train.pretrain.pretrain`): as many
        steps as a MOS epoch, each on three crops per image (the image and two degraded copies)."""
        return epochs * self.epoch_seconds(flops, 3 * n_images, 3 * batch_size)

    def infer_seconds(self, flops: int, n_images: int, views: int = 1, batch_size: int = 64) -> float:
        """T4 seconds to score `n_images` images, each seen through `views` crops."""
        batches = math.ceil(n_images * views / batch_size)
        return n_images * views * 2 * flops / self.effective_flops + batches * self.eval_overhead_s

    def epochs_for(self, budget_s: float, flops: int, n_images: int, batch_size: int) -> int:
        """Whole epochs that fit in `budget_s` T4 seconds (at least 1)."""
        return max(1, int(budget_s // self.epoch_seconds(flops, n_images, batch_size)))

    def to_dict(self) -> dict:
        return asdict(self)

"""Training losses for quality regression: MSE, PLCC, a pairwise rank loss and norm-in-norm, mixed by weights.

All take predictions and targets of shape [N, T] (on the standardised scale) and average over targets.
PLCC and rank losses need at least two samples; for a batch of one they contribute zero.
A loss is one entry of `LOSSES` (its function and its name in the paper); a trial samples one of
`LOSS_PRESETS`, the weighted mixes the search offers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the batch and targets."""
    return F.mse_loss(pred, target)


def plcc_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """(1 - Pearson correlation) / 2 over the batch, averaged over targets.

    `eps` is added to both variances: on standardised targets (variance ~1) it barely moves r, but it
    bounds the gradient when the predictions collapse to a constant (a fresh or zero-initialised head),
    where the exact Pearson gradient grows like 1 / std(pred).
    """
    if pred.shape[0] < 2:
        return pred.sum() * 0
    p = pred - pred.mean(dim=0, keepdim=True)
    t = target - target.mean(dim=0, keepdim=True)
    r = (p * t).mean(0) / torch.sqrt((p.pow(2).mean(0) + eps) * (t.pow(2).mean(0) + eps))
    return ((1 - r) / 2).mean()


def rank_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pairwise logistic (RankNet) loss, softplus(-sign(dt) * dp), averaged over every ordered pair of
    the batch whose targets differ (ties carry no order and are ignored), pooled over targets.
    Written without data-dependent branches so it never synchronises a GPU."""
    dp = pred.unsqueeze(0) - pred.unsqueeze(1)  # [N, N, T]
    sign = torch.sign(target.unsqueeze(0) - target.unsqueeze(1))
    valid = (sign != 0).to(pred.dtype)
    return (F.softplus(-sign * dp) * valid).sum() / valid.sum().clamp_min(1)


def norm_in_norm_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Norm-in-norm (Li et al., ACM MM 2020) with p = 2, q = 1: predictions and targets are centred and
    divided by their L2 norms, and the loss is the L1 distance between the two, scaled to [0, 1].

    Unlike PLCC (the squared L2 distance of the same normalised vectors, up to constants) it weighs
    every image's error linearly, so a few outliers do not dominate the batch. `eps` bounds the
    gradient when the predictions collapse to a constant, as in `plcc_loss`."""
    n = pred.shape[0]
    if n < 2:
        return pred.sum() * 0
    p = pred - pred.mean(dim=0, keepdim=True)
    t = target - target.mean(dim=0, keepdim=True)
    p = p / torch.sqrt(p.pow(2).sum(0) + n * eps)
    t = t / torch.sqrt(t.pow(2).sum(0) + n * eps)
    return ((p - t).abs().sum(0) / (2 * n ** 0.5)).mean()


@dataclass(frozen=True)
class Loss:
    """One loss as the project sees it: its function and how the paper names it."""

    fn: LossFn
    title: str
    """Its name in the paper's prose and recipe table (e.g. "norm-in-norm")."""


LOSSES: dict[str, Loss] = {
    "mse": Loss(mse_loss, "MSE"),
    "plcc": Loss(plcc_loss, "PLCC"),
    "rank": Loss(rank_loss, "pairwise rank"),
    "nin": Loss(norm_in_norm_loss, "norm-in-norm"),
}
"""Every loss by the name `TrainConfig.loss_weights` and `LOSS_PRESETS` use."""

LOSS_PRESETS: dict[str, dict[str, float]] = {
    "mse": {"mse": 1.0},
    "mse+plcc": {"mse": 1.0, "plcc": 1.0},
    "mse+rank": {"mse": 1.0, "rank": 1.0},
    "mse+plcc+rank": {"mse": 1.0, "plcc": 1.0, "rank": 1.0},
    "mse+nin": {"mse": 1.0, "nin": 1.0},
}
"""The loss mixes a trial samples from (`search.study.objective`). Every preset keeps an MSE term: PLCC and rank
losses ignore the scale and offset of predictions, and without it trials scored well on correlation but predicted
MOS off by 1.4-1.7 RMSE (the challenge breaks ties on RMSE)."""


def make_loss(weights: dict[str, float]) -> LossFn:
    """The weighted sum of the named losses."""
    unknown = sorted(set(weights) - set(LOSSES))
    if unknown:
        raise ValueError(f"unknown loss(es) {', '.join(unknown)}; choose from {', '.join(LOSSES)}")
    if any(w < 0 for w in weights.values()) or not any(w > 0 for w in weights.values()):
        raise ValueError(f"loss weights must be >= 0 with at least one positive, got {weights}")
    parts = [(LOSSES[name].fn, w) for name, w in weights.items() if w]

    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(w * fn(pred, target) for fn, w in parts)

    return loss

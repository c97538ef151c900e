"""Training losses for quality regression: MSE, PLCC and a pairwise rank loss, mixed by weights.

All take predictions and targets of shape [N, T] (on the standardised scale) and average over targets.
PLCC and rank losses need at least two samples; for a batch of one they contribute zero.
"""
from __future__ import annotations

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


LOSSES: dict[str, LossFn] = {"mse": mse_loss, "plcc": plcc_loss, "rank": rank_loss}


def make_loss(weights: dict[str, float]) -> LossFn:
    """The weighted sum of the named losses."""
    unknown = sorted(set(weights) - set(LOSSES))
    if unknown:
        raise ValueError(f"unknown loss(es) {', '.join(unknown)}; choose from {', '.join(LOSSES)}")
    if any(w < 0 for w in weights.values()) or not any(w > 0 for w in weights.values()):
        raise ValueError(f"loss weights must be >= 0 with at least one positive, got {weights}")
    parts = [(LOSSES[name], w) for name, w in weights.items() if w]

    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(w * fn(pred, target) for fn, w in parts)

    return loss

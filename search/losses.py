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
    return F.mse_loss(pred, target)


def plcc_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(1 - Pearson correlation) / 2 over the batch, per target."""
    if pred.shape[0] < 2:
        return pred.sum() * 0
    p = pred - pred.mean(dim=0, keepdim=True)
    t = target - target.mean(dim=0, keepdim=True)
    r = (p * t).sum(0) / (p.norm(dim=0) * t.norm(dim=0) + 1e-8)
    return ((1 - r) / 2).mean()


def rank_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pairwise logistic loss on every ordered pair: the better image should get the higher score."""
    if pred.shape[0] < 2:
        return pred.sum() * 0
    dp = pred.unsqueeze(0) - pred.unsqueeze(1)  # [N, N, T]
    dt = target.unsqueeze(0) - target.unsqueeze(1)
    sign = torch.sign(dt)
    valid = sign != 0
    if not valid.any():
        return pred.sum() * 0
    return F.softplus(-sign * dp)[valid].mean()


LOSSES: dict[str, LossFn] = {"mse": mse_loss, "plcc": plcc_loss, "rank": rank_loss}


def make_loss(weights: dict[str, float]) -> LossFn:
    """The weighted sum of the named losses."""
    unknown = sorted(set(weights) - set(LOSSES))
    if unknown:
        raise ValueError(f"unknown loss(es) {', '.join(unknown)}; choose from {', '.join(LOSSES)}")
    if not any(w > 0 for w in weights.values()):
        raise ValueError(f"loss weights must include a positive weight, got {weights}")
    parts = [(LOSSES[name], w) for name, w in weights.items() if w]

    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(w * fn(pred, target) for fn, w in parts)

    return loss

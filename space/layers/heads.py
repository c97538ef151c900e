"""Quality-aware heads: pool one or several stages (mean, mean + std, or attention pooling), fuse, regress."""
from __future__ import annotations

import torch
from torch import nn

from space.layers.conv import make_act


class Pool(nn.Module):
    """avg: global mean; avgstd: mean and standard deviation (contrast statistics carry quality cues);
    attn: a 1x1 conv scores every position, softmax weights the average."""

    def __init__(self, kind: str, channels: int):
        super().__init__()
        self.kind = kind
        self.score = nn.Conv2d(channels, 1, 1) if kind == "attn" else None

    def forward(self, x):
        if self.kind == "avg":
            return x.mean((2, 3))
        if self.kind == "avgstd":
            xf = x.float()
            return torch.cat([xf.mean((2, 3)), (xf.var((2, 3), unbiased=False) + 1e-6).sqrt()], 1).to(x.dtype)
        w = torch.softmax(self.score(x).flatten(2).float(), -1).to(x.dtype)  # [B, 1, HW]
        return (x.flatten(2) * w).sum(-1)


def pool_dim(kind: str, channels: int) -> int:
    return 2 * channels if kind == "avgstd" else channels


def pool_params(kind: str, channels: int) -> int:
    return channels + 1 if kind == "attn" else 0


def pool_flops(kind: str, channels: int, size: int) -> int:
    return channels * size * size if kind == "attn" else 0


class Head(nn.Module):
    """Concatenated pooled features -> [Linear -> act -> dropout ->] Linear to the outputs."""

    def __init__(self, in_dim: int, hidden: int, dropout: float, outputs: int, act: str):
        super().__init__()
        layers: list[nn.Module] = []
        if hidden:
            layers += [nn.Linear(in_dim, hidden), make_act(act)]
        layers += [nn.Dropout(dropout), nn.Linear(hidden or in_dim, outputs)]
        self.mlp = nn.Sequential(*layers)

    def output_linear(self) -> nn.Linear:
        return self.mlp[-1]

    def hidden_linear(self) -> nn.Linear | None:
        return self.mlp[0] if len(self.mlp) > 2 else None

    def forward(self, features):
        return self.mlp(features)


def head_params(in_dim: int, hidden: int, outputs: int) -> int:
    if hidden:
        return in_dim * hidden + hidden + hidden * outputs + outputs
    return in_dim * outputs + outputs


def head_flops(in_dim: int, hidden: int, outputs: int) -> int:
    return in_dim * hidden + hidden * outputs if hidden else in_dim * outputs

"""Quality-aware heads: pool one or several stages (mean, mean + std, or attention pooling), fuse, pool a
patch model's patches (`PatchPool`), regress."""
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


class PatchPool(nn.Module):
    """[N,K,D] features of each image's K patches -> one vector per image. mean: [N,D]; attn: a Linear
    scores each patch, softmax over the image's patches weights the sum, [N,D] (zero-initialised, so it
    starts as the mean); meanstd: mean and standard deviation, [N,2D] (the unbiased one, whose expectation
    does not depend on K, which differs between training and test)."""

    def __init__(self, kind: str, dim: int):
        super().__init__()
        self.kind = kind
        self.score = nn.Linear(dim, 1) if kind == "attn" else None
        if self.score is not None:
            nn.init.zeros_(self.score.weight)
            nn.init.zeros_(self.score.bias)

    def weights(self, feats: torch.Tensor) -> torch.Tensor:
        """attn: [N,K,1] weights of the patches, summing to 1 over each image's K."""
        return torch.softmax(self.score(feats).float(), 1).to(feats.dtype)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if self.kind == "mean":
            return feats.mean(1)
        if self.kind == "meanstd":
            f = feats.float()
            return torch.cat([f.mean(1), (f.var(1, unbiased=True) + 1e-6).sqrt()], 1).to(feats.dtype)
        return (feats * self.weights(feats)).sum(1)


def patch_pool_dim(kind: str, dim: int) -> int:
    return 2 * dim if kind == "meanstd" else dim


def patch_pool_params(kind: str, dim: int) -> int:
    return dim + 1 if kind == "attn" else 0


def patch_pool_flops(kind: str, dim: int, patches: int) -> int:
    """attn: the score Linear on each of an image's `patches` (the weighted sum, like a mean, is not counted)."""
    return patches * dim if kind == "attn" else 0


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

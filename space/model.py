"""IQANet: a from-scratch quality model built from an `ArchSpec`."""
from __future__ import annotations

import torch
from torch import nn

from space.layers import BLOCK_FAMILIES
from space.layers.conv import Stem
from space.layers.heads import Head, Pool, pool_dim
from space.spec import ArchSpec, block_plan


class IQANet(nn.Module):
    """stem -> stages -> pooled features of the last `fuse` stages -> head -> scores in target units.

    Input: float [N,3,H,W] in [0, 1]. Output: [N, num_outputs] = raw * target_std + target_mean, with
    the two buffers set by the trainer from the training targets, so saved weights predict MOS.
    """

    def __init__(self, spec: ArchSpec):
        super().__init__()
        spec.validate()
        self.spec = spec
        self.stem = Stem(spec.stem.kind, spec.stem.width, spec.stem.kernel, spec.act, spec.input.mscn)
        self.stages = nn.ModuleList(
            nn.Sequential(*(BLOCK_FAMILIES[b.block][0](b.cin, b.cout, b.stride, b.kernel, b.hidden, b.se_hidden, spec.act)
                            for b in blocks))
            for blocks in block_plan(spec)
        )
        fused = [s.width for s in spec.stages[-spec.head.fuse:]]
        self.pools = nn.ModuleList(Pool(spec.head.pool, c) for c in fused)
        self.head = Head(sum(pool_dim(spec.head.pool, c) for c in fused), spec.head.hidden, spec.head.dropout,
                         spec.num_outputs, spec.act)
        self.register_buffer("target_mean", torch.zeros(spec.num_outputs))
        self.register_buffer("target_std", torch.ones(spec.num_outputs))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled, fused feature vector the head regresses from."""
        x = self.stem(x)
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        fused = maps[-len(self.pools):]
        return torch.cat([pool(m) for pool, m in zip(self.pools, fused)], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)) * self.target_std + self.target_mean


def build_model(spec: ArchSpec) -> IQANet:
    return IQANet(spec)

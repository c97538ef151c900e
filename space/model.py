"""IQANet: a from-scratch quality model built from an `ArchSpec`."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from space.layers import BLOCK_FAMILIES
from space.layers.conv import Stem
from space.layers.heads import Head, Pool, pool_dim
from space.layers.patches import PatchView
from space.spec import ArchSpec, block_plan


class CropView(nn.Module):
    """A whole-image model's features of each image: the backbone's pooled features of the view itself."""

    def __init__(self, size: int, train_count: int, grid: int, global_size: int):
        super().__init__()

    def forward(self, features: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return features(x)


# what the backbone sees of an image -> the module that forms its features (`view_kind`)
VIEWS = {"crop": CropView, "patches": PatchView}


def view_kind(spec: ArchSpec) -> str:
    """"patches" for a patch model (`InputSpec.patch`), else "crop"."""
    return "patches" if spec.input.patch else "crop"


def streams(spec: ArchSpec) -> int:
    """Feature vectors the head reads side by side: 2 with a global stream beside the patches, else 1."""
    return 2 if spec.input.global_size else 1


class IQANet(nn.Module):
    """stem -> stages -> pooled features of the last `fuse` stages -> head -> scores in target units.
    A patch model (`InputSpec.patch`) runs the stem and stages on each patch, averages the patches'
    pooled features, and with a global stream appends those of the reduced whole image.

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
        inp = spec.input
        self.view = VIEWS[view_kind(spec)](inp.patch, inp.train_patches, inp.grid, inp.global_size)
        self.head = Head(streams(spec) * sum(pool_dim(spec.head.pool, c) for c in fused), spec.head.hidden,
                         spec.head.dropout, spec.num_outputs, spec.act)
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

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The feature vector of each image: of the view itself, or of its patches (and whole image)."""
        return self.view(self.features, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x)) * self.target_std + self.target_mean


def build_model(spec: ArchSpec) -> IQANet:
    return IQANet(spec)

"""Patches of the image at its own resolution: random windows in training; at test a fixed grid, also cut
from reduced copies of the image and mirrored when the spec asks; and a reduced whole-image view for a
global stream. Parameter-free, so they count no parameters; the FLOPs they cause are the backbone's, per
patch (`space.count`). The pooling over an image's patches is a head layer (`layers.heads.PatchPool`)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from space.layers.conv import unit_float
from space.layers.heads import PatchPool
from space.spec import InputSpec


def grid_offsets(size: int, patch: int, grid: int) -> list[int]:
    """`grid` evenly spaced offsets of a `patch` window in `size` px: first at 0, last at size - patch."""
    if grid == 1:
        return [(size - patch) // 2]
    return [round(i * (size - patch) / (grid - 1)) for i in range(grid)]


def reduce_image(x: torch.Tensor, size: int) -> torch.Tensor:
    """The whole image at `size` x `size` by area averaging (the global stream's and test scales' view)."""
    return F.adaptive_avg_pool2d(unit_float(x), size)


class Patches(nn.Module):
    """[N,C,S,S] -> [N*K,C,P,P], in image-major order. In training K = `train_count` windows at random
    (the global torch generator of the input's device, so a seeded run is repeatable). At test the
    `grid` x `grid` windows of `grid_offsets`, then those of the image reduced to each of `scales`, then,
    with `flip`, all of them again mirrored left-right: K = grid**2 * (1 + len(scales)) * (2 if flip)."""

    def __init__(self, size: int, train_count: int, grid: int, scales: list[int] | tuple[int, ...] = (),
                 flip: bool = False):
        super().__init__()
        self.size, self.train_count, self.grid, self.scales, self.flip = size, train_count, grid, tuple(scales), flip

    def count(self) -> int:
        if self.training:
            return self.train_count
        return self.grid ** 2 * (1 + len(self.scales)) * (2 if self.flip else 1)

    def _grid(self, x: torch.Tensor) -> torch.Tensor:
        """[N,C,H,W] -> [N, grid**2, C, P, P]: the grid's windows, row by row."""
        p = self.size
        rows, cols = grid_offsets(x.shape[-2], p, self.grid), grid_offsets(x.shape[-1], p, self.grid)
        return torch.stack([x[..., y:y + p, z:z + p] for y in rows for z in cols], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            views = torch.cat([self._grid(x)] + [self._grid(reduce_image(x, s)) for s in self.scales], 1)
            return (torch.cat([views, views.flip(-1)], 1) if self.flip else views).flatten(0, 1)
        n, c, h, w = x.shape
        p, k = self.size, self.train_count
        top = torch.randint(0, h - p + 1, (n, k, 1), device=x.device)
        left = torch.randint(0, w - p + 1, (n, k, 1), device=x.device)
        ar = torch.arange(p, device=x.device)
        rows, cols = top + ar, left + ar  # [n, k, p]
        idx_n = torch.arange(n, device=x.device)[:, None, None, None, None]
        idx_c = torch.arange(c, device=x.device)[None, None, :, None, None]
        out = x[idx_n, idx_c, rows[:, :, None, :, None], cols[:, :, None, None, :]]  # [n, k, c, p, p]
        return out.flatten(0, 1)


class PatchView(nn.Module):
    """A patch model's features of each image: the backbone's pooled features (`features`, `dim` wide) of
    its patches (`Patches`), pooled over the patches by `pool` (`PatchPool`), and with
    `InputSpec.global_size` those of the whole image reduced to that size beside them."""

    def __init__(self, inp: InputSpec, pool: str, dim: int):
        super().__init__()
        self.patches = Patches(inp.patch, inp.train_patches, inp.grid, inp.test_scales, inp.test_flip)
        self.pool, self.global_size = PatchPool(pool, dim), inp.global_size

    def kept_whole(self) -> list[tuple[list[nn.Module], str]]:
        """The patch-attention score Linear (one output: the score) with why, when the pool has one."""
        if self.pool.score is None:
            return []
        return [([self.pool.score], "view.pool.score (patch-attention score Linear)")]

    def forward(self, features: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(features(self.patches(x)).unflatten(0, (len(x), self.patches.count())))
        if not self.global_size:
            return pooled
        return torch.cat([pooled, features(reduce_image(x, self.global_size))], 1)

"""Patches of the image at its own resolution: random windows in training, a fixed grid at test, and a
reduced whole-image view for a global stream. Parameter-free, so they count no parameters; the FLOPs
they cause are the backbone's, per patch (`space.count`)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


def grid_offsets(size: int, patch: int, grid: int) -> list[int]:
    """`grid` evenly spaced offsets of a `patch` window in `size` px: first at 0, last at size - patch."""
    if grid == 1:
        return [(size - patch) // 2]
    return [round(i * (size - patch) / (grid - 1)) for i in range(grid)]


class Patches(nn.Module):
    """[N,C,S,S] -> [N*K,C,P,P]: in training K = `train_count` windows at random (the global torch
    generator of the input's device, so a seeded run is repeatable), at test the `grid` x `grid` windows
    of `grid_offsets` (K = grid**2), in image-major order."""

    def __init__(self, size: int, train_count: int, grid: int):
        super().__init__()
        self.size, self.train_count, self.grid = size, train_count, grid

    def count(self) -> int:
        return self.train_count if self.training else self.grid ** 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        p = self.size
        if not self.training:
            rows, cols = grid_offsets(h, p, self.grid), grid_offsets(w, p, self.grid)
            windows = [x[..., y:y + p, z:z + p] for y in rows for z in cols]
            return torch.stack(windows, 1).flatten(0, 1)
        k = self.train_count
        top = torch.randint(0, h - p + 1, (n, k, 1), device=x.device)
        left = torch.randint(0, w - p + 1, (n, k, 1), device=x.device)
        ar = torch.arange(p, device=x.device)
        rows, cols = top + ar, left + ar  # [n, k, p]
        idx_n = torch.arange(n, device=x.device)[:, None, None, None, None]
        idx_c = torch.arange(c, device=x.device)[None, None, :, None, None]
        out = x[idx_n, idx_c, rows[:, :, None, :, None], cols[:, :, None, None, :]]  # [n, k, c, p, p]
        return out.flatten(0, 1)


def reduce_image(x: torch.Tensor, size: int) -> torch.Tensor:
    """The whole image at `size` x `size` by area averaging (the global stream's view)."""
    return F.adaptive_avg_pool2d(x, size)


class PatchView(nn.Module):
    """A patch model's features of each image: the backbone's pooled features (`features`) of its patches,
    averaged, and with `global_size` those of the whole image reduced to that size beside them."""

    def __init__(self, size: int, train_count: int, grid: int, global_size: int):
        super().__init__()
        self.patches, self.global_size = Patches(size, train_count, grid), global_size

    def forward(self, features: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        pooled = features(self.patches(x)).unflatten(0, (len(x), self.patches.count())).mean(1)
        if not self.global_size:
            return pooled
        return torch.cat([pooled, features(reduce_image(x, self.global_size))], 1)

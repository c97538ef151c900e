"""Fragments (FAST-VQA's grid mini-patches): an S x S grid over the image at its own resolution, one
f x f patch per cell, spliced into one S*f x S*f view. The view keeps native-resolution texture (where
AIGC artefacts live) and the whole layout at the cost of one small image. Parameter-free, so it counts
no parameters; the FLOPs are the backbone's on the spliced view (`space.count`)."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def cell_edges(size: int, grid: int) -> list[int]:
    """The `grid` + 1 edges of the `grid` cells that tile `size` px (their sides differ by at most 1 px)."""
    return [i * size // grid for i in range(grid + 1)]


class Fragments(nn.Module):
    """[N,C,H,W] -> [N,C,S*f,S*f]: the f x f fragment of each of the `grid` x `grid` cells, in place. In
    training each fragment lies at random in its cell (the global torch generator of the input's
    device, so a seeded run is repeatable), at test at the cell's centre."""

    def __init__(self, grid: int, size: int):
        super().__init__()
        self.grid, self.size = grid, size

    def _starts(self, n: int, side: int, device: torch.device) -> torch.Tensor:
        """[n, S, S]: the first pixel, along an axis of `side` px, of each cell's fragment, the cells along
        that axis on dim 1."""
        edges = torch.tensor(cell_edges(side, self.grid), device=device)
        room = edges[1:] - edges[:-1] - self.size  # free pixels of each cell along the axis
        if self.training:
            shift = (torch.rand(n, self.grid, self.grid, device=device) * (room[:, None] + 1)).long()
        else:
            shift = (room // 2)[:, None].expand(n, -1, self.grid)
        return edges[:-1, None] + shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if min(h, w) // self.grid < self.size:
            raise ValueError(f"{h}x{w} images have cells smaller than {self.size} px fragments "
                             f"({self.grid}x{self.grid} grid)")
        ar = torch.arange(self.size, device=x.device)
        rows = self._starts(n, h, x.device)[..., None] + ar  # [n, row cell, column cell, f]
        cols = self._starts(n, w, x.device).transpose(1, 2)[..., None] + ar
        idx_n = torch.arange(n, device=x.device)[:, None, None, None, None, None]
        idx_c = torch.arange(c, device=x.device)[None, :, None, None, None, None]
        out = x[idx_n, idx_c, rows.transpose(2, 3)[:, None, :, :, :, None], cols[:, None, :, None, :, :]]
        return out.reshape(n, c, self.grid * self.size, self.grid * self.size)  # [n, c, S, f, S, f] spliced


class FragmentView(nn.Module):
    """A fragment model's features of each image: the backbone's pooled features of its spliced fragments."""

    def __init__(self, grid: int, size: int):
        super().__init__()
        self.fragments = Fragments(grid, size)

    def kept_whole(self) -> list[tuple[list[nn.Module], str]]:
        """None: the view has no layers (`IQANet.kept_whole`)."""
        return []

    def forward(self, features: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return features(self.fragments(x))

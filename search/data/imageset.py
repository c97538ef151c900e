"""Decoded images in memory: what the trainer consumes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class ImageSet:
    """`images` uint8 [N,3,S,S] on the CPU, `targets` float32 [N,T], one group (prompt) per image."""

    images: torch.Tensor
    targets: torch.Tensor
    groups: np.ndarray
    names: list[str]
    target_names: list[str]

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be uint8 [N,3,S,S], got {self.images.dtype} {tuple(self.images.shape)}")
        if self.images.shape[2] != self.images.shape[3]:
            raise ValueError(f"images must be square, got {tuple(self.images.shape[2:])}")
        if self.targets.ndim != 2 or self.targets.shape != (n, len(self.target_names)):
            raise ValueError(f"targets must be [N={n}, T={len(self.target_names)}], got {tuple(self.targets.shape)}")
        if len(self.groups) != n or len(self.names) != n:
            raise ValueError(f"{n} images but {len(self.groups)} groups and {len(self.names)} names")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def size(self) -> int:
        return self.images.shape[-1]

    def subset(self, idx) -> "ImageSet":
        idx = np.asarray(idx, dtype=np.int64)
        t = torch.from_numpy(idx)
        return ImageSet(self.images[t], self.targets[t], self.groups[idx], [self.names[i] for i in idx], list(self.target_names))

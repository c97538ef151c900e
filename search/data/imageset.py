"""Decoded images in memory: what the trainer consumes; several labelled sources combined into one set.

A combined set (`combine`) puts every source's MOS on one scale: each source's scores are standardised
by the mean and standard deviation of all its labels (`SourceScale.of`) and then given the first
source's mean and standard deviation (`on_scale`). All its labels, not its training part: the scale is
a property of how the source's MOS was collected, not of a split, so every split, fold, the export and
the notebook map a source alike (only two moments of the validation labels enter, and no correlation
within a source changes). The first source keeps its own scores exactly, so a model trained on the
combined set predicts on the first source's scale.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class SourceScale:
    """One labelled source of a combined set: its name and the mean and std of its labels, per target."""

    name: str
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def of(cls, name: str, targets: np.ndarray) -> SourceScale:
        """The scale of `targets` [N, T] (all of the source's labels); a constant target keeps std 1."""
        std = targets.std(0)
        return cls(name, tuple(map(float, targets.mean(0))), tuple(float(s) if s > 1e-6 else 1.0 for s in std))


def on_scale(values: np.ndarray, source: SourceScale, common: SourceScale) -> np.ndarray:
    """`values` [N, T] on `source`'s scale, standardised by its mean and std and put on `common`'s (the one
    owner of the mapping; swap the two scales to map back)."""
    standard = (values - np.asarray(source.mean)) / np.asarray(source.std)
    return standard * np.asarray(common.std) + np.asarray(common.mean)


def prefixed(source: str, values) -> np.ndarray:
    """Names or prompts of a source in a combined set, `source/value`: unique across sources, so prompts of
    two sources never form one group and two sources may list the same file name."""
    return np.asarray([f"{source}/{v}" for v in values], dtype=object)


@dataclass(frozen=True)
class ImageSet:
    """`images` uint8 [N,3,S,S] on the CPU, `targets` float32 [N,T], one group (prompt) per image.

    A combined set (`combine`) also says where each image comes from: `sources` (int [N], an index into
    `scales`) and the sources' `scales`; `targets` are then on the first source's scale. One source:
    `scales` is empty and `sources` all zero. `digests`: each image file's size and hash (`search.data.cache`),
    what the study fingerprint checks the images by; None for images that are not files (the synthetic set)."""

    images: torch.Tensor
    targets: torch.Tensor
    groups: np.ndarray
    names: list[str]
    target_names: list[str]
    sources: np.ndarray | None = None
    scales: tuple[SourceScale, ...] = ()
    digests: list[str] | None = None

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
        if self.digests is not None and len(self.digests) != n:
            raise ValueError(f"{n} images but {len(self.digests)} digests")
        if self.sources is None:
            object.__setattr__(self, "sources", np.zeros(n, dtype=np.int64))
        n_sources = max(1, len(self.scales))
        if len(self.sources) != n or (n and not 0 <= self.sources.min() <= self.sources.max() < n_sources):
            raise ValueError(f"{n} images need a source each, an index into the {len(self.scales)} scales")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def size(self) -> int:
        return self.images.shape[-1]

    def subset(self, idx) -> "ImageSet":
        idx = np.asarray(idx, dtype=np.int64)
        t = torch.from_numpy(idx)
        return ImageSet(self.images[t], self.targets[t], self.groups[idx], [self.names[i] for i in idx],
                        list(self.target_names), self.sources[idx], self.scales,
                        None if self.digests is None else [self.digests[i] for i in idx])

    def own_scale(self, values: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """(indices, `values` [N, T] of those images on their source's own scale) per source present:
        how predictions and targets of a combined set are scored. One source: all images, unchanged."""
        if not self.scales:
            return [(np.arange(len(self)), values)]
        parts = []
        for s in np.unique(self.sources):
            idx = np.flatnonzero(self.sources == s)
            parts.append((idx, on_scale(values[idx], self.scales[0], self.scales[s])))
        return parts


def combine(sources: list[tuple[str, ImageSet]]) -> ImageSet:
    """The sources' images one after the other, each source's targets put on the first's scale (`on_scale`
    with `SourceScale.of` all its labels), names and prompts `prefixed` by the source's name."""
    widths = {len(data.target_names) for _, data in sources}
    if len(widths) > 1:
        raise ValueError(f"the sources {', '.join(name for name, _ in sources)} have different numbers of targets "
                         f"({', '.join(str(len(d.target_names)) for _, d in sources)}): "
                         "give --targets each of them has")
    scales = tuple(SourceScale.of(name, data.targets.numpy().astype(np.float64)) for name, data in sources)
    targets = [on_scale(data.targets.numpy().astype(np.float64), scale, scales[0])
               for (_, data), scale in zip(sources, scales)]
    return ImageSet(torch.cat([data.images for _, data in sources]),
                    torch.from_numpy(np.concatenate(targets).astype(np.float32)),
                    np.concatenate([prefixed(name, data.groups) for name, data in sources]),
                    [n for name, data in sources for n in prefixed(name, data.names)],
                    list(sources[0][1].target_names),
                    np.concatenate([np.full(len(data), i, dtype=np.int64) for i, (_, data) in enumerate(sources)]),
                    scales, None if any(data.digests is None for _, data in sources) else
                    [d for _, data in sources for d in data.digests])

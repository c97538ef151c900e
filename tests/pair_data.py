"""Preference pairs drawn from MOS-labelled images, for the pairs tests."""
from __future__ import annotations

import numpy as np
import torch

from search.data import ImageSet
from search.data.pairs import PairSet


def pairs_from_scores(images: ImageSet, n_pairs: int, min_gap: float, seed: int = 0) -> PairSet:
    """Pairs drawn from scored images (the first target): two images of different groups whose scores
    differ by at least `min_gap`, the higher one preferred. For tests and demos on MOS-labelled data."""
    rng = np.random.default_rng(seed)
    scores, groups = images.targets[:, 0].numpy(), images.groups
    pairs: set[tuple[int, int]] = set()
    for _ in range(50 * n_pairs):
        a, b = rng.integers(0, len(images), 2)
        if groups[a] != groups[b] and abs(scores[a] - scores[b]) >= min_gap:
            pairs.add((a, b) if scores[a] > scores[b] else (b, a))
            if len(pairs) == n_pairs:
                break
    unlabelled = ImageSet(images.images, torch.zeros((len(images), 0)), images.groups, images.names, [],
                          digests=images.digests)
    return PairSet(unlabelled, np.asarray(sorted(pairs), dtype=np.int64))

"""Splits grouped by prompt: no validation image shares a prompt with a training image."""
from __future__ import annotations

import numpy as np


def _shuffled_groups(groups, seed: int) -> tuple[np.ndarray, np.ndarray]:
    groups = np.asarray(groups)
    unique, inverse = np.unique(groups, return_inverse=True)
    order = np.random.default_rng(seed).permutation(len(unique))
    return order, inverse


def grouped_kfold(groups, k: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """`k` (train, val) index pairs; each group lands in exactly one val fold, folds balanced by image count."""
    order, inverse = _shuffled_groups(groups, seed)
    if len(order) < k:
        raise ValueError(f"{len(order)} groups cannot make {k} folds")
    sizes = np.bincount(inverse, minlength=len(order))
    fold_of_group = np.empty(len(order), dtype=np.int64)
    load = np.zeros(k, dtype=np.int64)
    for g in order:  # greedy: the next group (in seeded random order) goes to the lightest fold
        f = int(np.argmin(load))
        fold_of_group[g] = f
        load[f] += sizes[g]
    fold = fold_of_group[inverse]
    idx = np.arange(len(fold), dtype=np.int64)
    return [(idx[fold != f], idx[fold == f]) for f in range(k)]


def grouped_holdout(groups, val_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices with about `val_fraction` of the images in val, whole groups only."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    order, inverse = _shuffled_groups(groups, seed)
    if len(order) < 2:
        raise ValueError(f"a grouped hold-out needs at least 2 groups (prompts), got {len(order)}")
    sizes = np.bincount(inverse, minlength=len(order))
    target = val_fraction * len(inverse)
    val_groups, count = [], 0
    for g in order:
        if count >= target or len(val_groups) == len(order) - 1:
            break
        val_groups.append(g)
        count += sizes[g]
    in_val = np.isin(inverse, val_groups)
    idx = np.arange(len(inverse), dtype=np.int64)
    return idx[~in_val], idx[in_val]

"""Checks of a dataset before a study is created, so a mistake is reported in one line and never stored.

`check_dataset` reads only the labels (no image is decoded): the dataset name, its folder, the labels
file and its columns, one row per image, every listed image present, and targets that vary; for a
combined dataset (`search.data.sources`) the same for every source, each in its own folder.
`check_split_sizes` refuses a split with a part too small to train or to be measured on. A pairs
dataset is checked the same way: the pairs CSV (`search.data.pairs.load_pairs`) and its image-disjoint
split (`check_pair_split`). Each raises ValueError (FileNotFoundError for a missing folder or image)
naming the file, the line, the column or the value.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from search.data.cache import check_images
from search.data.labels import LOADERS, LabelTable, load_labels
from search.data.pairs import PAIR_COLUMNS, PairTable, load_pairs, split_pair_rows
from search.data.sources import check_combination, is_combined, source_roots
from search.data.synthetic import SYNTHETIC_TARGETS

PAIRS = "pairs"
"""The preference-pairs dataset: ROOT/pairs.csv of `image_a, image_b, winner` and the images (no MOS)."""
DATASETS = ("synthetic", *LOADERS, PAIRS)
"""Datasets a study trains on: the generated one, every labelled format with a loader, and pairs; and any
'+'-joined list of labelled formats (`search.data.sources`)."""

MIN_PART_IMAGES = 4
MIN_PART_PAIRS = 4
"""Fewest pairs of a training, validation or test part of a pairs study."""
"""Fewest images of a training, validation or test part: validation needs 2 to give any metric at all,
and correlations over fewer than 4 images say nothing."""


def _check_targets(table: LabelTable) -> None:
    for name in table.targets:
        values = table.frame[name].to_numpy()
        if len(values) > 1 and np.ptp(values) == 0:
            raise ValueError(f"{table.source}: column {name!r} holds the same score ({values[0]:g}) in every row: "
                             "there is nothing to learn from it")


def check_dataset_name(dataset: str) -> None:
    """A name in `DATASETS`, or a combination of labelled formats."""
    if is_combined(dataset):
        check_combination(dataset)
    elif dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}, or join labelled ones "
                         "with '+' (e.g. agiqa3k+agiqa1k)")


def require_dataset(dataset: str, root: str | Path | None) -> None:
    """A known dataset name, with a root unless it is the synthetic set (one per source when combined)."""
    check_dataset_name(dataset)
    if is_combined(dataset):
        source_roots(dataset, root)
    elif dataset != "synthetic" and root is None:
        raise ValueError(f"dataset {dataset!r} needs --root (the folder holding its labels and images)")


def check_dataset(dataset: str, root: str | Path | None, targets: Sequence[str] | None = None,
                  pair_columns: Sequence[str] = PAIR_COLUMNS) -> LabelTable | PairTable | list[LabelTable] | None:
    """The dataset's labels, checked (None for the synthetic set, which only needs known targets; the
    pairs table, with `pair_columns`, for preference pairs; each source's labels, in order, for a
    combined dataset)."""
    require_dataset(dataset, root)
    if is_combined(dataset):
        return [check_dataset(name, path, targets) for name, path in source_roots(dataset, root).items()]
    if dataset == PAIRS:
        if targets:
            raise ValueError(f"--targets does not apply to --data {PAIRS}: preference pairs carry no score columns")
        if not Path(root).exists():
            raise FileNotFoundError(f"dataset folder not found: {root}")
        return load_pairs(root, tuple(pair_columns))
    repeated = sorted({t for t in targets or () if list(targets).count(t) > 1})
    if repeated:
        raise ValueError(f"target(s) given more than once: {', '.join(repeated)}")
    if dataset == "synthetic":
        unknown = [t for t in targets or () if t not in SYNTHETIC_TARGETS]
        if unknown:
            raise ValueError(f"unknown synthetic target(s) {', '.join(unknown)}; "
                             f"choose from {', '.join(SYNTHETIC_TARGETS)}")
        return None
    if not Path(root).exists():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    table = load_labels(dataset, root, targets)
    check_images(table)
    _check_targets(table)
    return table


def _counts_if_small(parts: dict[str, np.ndarray], least: int) -> str | None:
    """The parts' sizes, e.g. "1900 training, 3 validation", when one (name -> indices) holds fewer than `least`."""
    if all(len(idx) >= least for idx in parts.values()):
        return None
    return ", ".join(f"{len(idx)} {name}" for name, idx in parts.items())


def check_split_sizes(source: str, groups: np.ndarray, parts: dict[str, np.ndarray],
                      least: int = MIN_PART_IMAGES) -> None:
    """Refuse a split (part name -> image indices) of the images of `groups` (their prompts) from `source`
    (the labels file, named in the message) with a part of fewer than `least` images."""
    counts = _counts_if_small(parts, least)
    if counts:
        raise ValueError(f"{source}: {len(groups)} images in {len(set(groups))} prompts split into "
                         f"{counts} images; each part needs at least {least}: label more images "
                         "(of more prompts) or change --val-fraction / --test-fraction")


def check_pair_split(table: PairTable, val_fraction: float, test_fraction: float, seed: int,
                     least: int = MIN_PART_PAIRS) -> None:
    """Refuse an image-disjoint split of the pairs (`split_pair_rows`) with a part of fewer than `least` pairs."""
    parts = dict(zip(("training", "validation", "test"),
                     split_pair_rows(len(table.names), table.pairs, val_fraction, test_fraction, seed)))
    if not test_fraction:
        del parts["test"]
    counts = _counts_if_small(parts, least)
    if counts:
        raise ValueError(f"{table.source}: {len(table.pairs)} pairs over {len(table.names)} images split by image into "
                         f"{counts} pairs (pairs across the split are dropped); each part needs at least {least}: "
                         "give more pairs or change --val-fraction / --test-fraction")

"""Datasets: real label formats, the synthetic set, decode-once caching, grouped splits, input checks,
several labelled sources combined on one scale."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from search.data.cache import decode_images
from search.data.check import (
    DATASETS, PAIRS, check_dataset, check_dataset_name, check_pair_split, check_split_sizes, require_dataset,
)
from search.data.imageset import ImageSet, combine
from search.data.labels import (
    LOADERS, LabelTable, load_agiqa1k, load_agiqa3k, load_aigiqa20k, load_csv, load_folder, load_labels,
)
from search.data.sources import absolute_root, is_combined, load_sources, source_roots
from search.data.splits import grouped_holdout, grouped_kfold
from search.data.synthetic import make_synthetic

PREDICT_DATASETS = ("folder", *LOADERS)
"""What `load_labels` (and so prediction) reads: a folder of unlabelled images or a labelled format."""


def load_imageset(dataset: str, root=None, size: int = 64, cache_dir: Path | str = ".cache/images",
                  targets: Sequence[str] | None = None, seed: int = 0, n_images: int = 600,
                  progress: bool = True) -> ImageSet:
    """Images and targets of `dataset` at `size` px: generated for "synthetic", else decoded once (each
    source of a combined dataset, put on one scale)."""
    require_dataset(dataset, root)
    if dataset == "synthetic":
        return make_synthetic(n_images=n_images, size=size, seed=seed, targets=targets)
    if is_combined(dataset):
        return load_sources(dataset, root, size, cache_dir, targets, progress)
    return decode_images(load_labels(dataset, root, targets), size, cache_dir, progress=progress)


__all__ = ["DATASETS", "LOADERS", "PAIRS", "PREDICT_DATASETS", "ImageSet", "LabelTable", "absolute_root",
           "check_dataset", "check_dataset_name", "check_pair_split", "check_split_sizes", "combine", "decode_images",
           "grouped_holdout", "grouped_kfold", "is_combined", "load_agiqa1k", "load_agiqa3k", "load_aigiqa20k",
           "load_csv", "load_folder", "load_imageset", "load_labels", "make_synthetic", "source_roots"]

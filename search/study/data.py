"""`StudyData`: a study's labelled images per resolution, loaded once per process, and its split.

The split is by prompt (group): test prompts (when the study holds some out) first, then validation
prompts from the rest. It is computed from the image names' groups, which do not depend on the
resolution, so every resolution splits alike; the validation fingerprint names it. A pairs study
(`StudyConfig.pairs`) holds `PairSet`s instead, split by image (`split_pair_rows`: test images first,
then validation images), so no image of a validation or test pair is seen in training.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from search.data import ImageSet, check_dataset, check_pair_split, check_split_sizes, grouped_holdout, load_imageset
from search.data.imageset import prefixed
from search.memory import check_host_memory
from search.data.cache import decode_pairs
from search.data.pairs import PairSet, PairTable, load_pairs, split_pair_rows
from search.study.settings import StudyConfig, space_config

FINGERPRINT_VERSION = "v3"
"""v3: every image's file too (its size and hash: the same names with other images went unnoticed); v2: every
item of the split with its targets (pairs with their winners) and part; before it (unversioned), the
validation images' names alone (a resume on inverted scores or fewer pairs went unnoticed)."""
FINGERPRINT_VERSIONS = ("", "v2", FINGERPRINT_VERSION)
"""The versions a stored fingerprint is compared in ("": unversioned), so older studies resume."""


def study_split(groups: np.ndarray, val_fraction: float, test_fraction: float,
                seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) indices by prompt group; test is empty unless `test_fraction` > 0."""
    if not test_fraction:
        train, val = grouped_holdout(groups, val_fraction, seed=seed)
        return train, val, np.zeros(0, dtype=np.int64)
    rest, test = grouped_holdout(groups, test_fraction, seed=seed)
    train, val = grouped_holdout(groups[rest], val_fraction / (1 - test_fraction), seed=seed + 1)
    return rest[train], rest[val], test


def check_study_inputs(cfg: StudyConfig) -> None:
    """Every data-side check before a study exists: the dataset and its labels (or pairs), the split the
    study will make (enough images or pairs in every part; of a combined dataset, each source could be split
    on its own too, so none is too small to standardise or to matter) and host memory for the largest input
    the space may decode. ValueError (one line, naming the file) on the first problem."""
    table = check_dataset(cfg.dataset, cfg.root, cfg.targets, cfg.pair_columns)
    if isinstance(table, PairTable):
        check_pair_split(table, cfg.val_fraction, cfg.test_fraction, cfg.seed)
        return
    if table is None:  # the synthetic set: generated, split and sized by code
        return
    if isinstance(table, list):  # a combined dataset: its sources' prompts, as its set prefixes them
        for t in table:
            _check_split(cfg, t.frame["group"].to_numpy(dtype=object), str(t.source))
        groups = np.concatenate([prefixed(t.name, t.frame["group"]) for t in table])
        source = " + ".join(str(t.source) for t in table)
    else:
        groups, source = table.frame["group"].to_numpy(dtype=object), str(table.source)
    _check_split(cfg, groups, source)
    check_host_memory(len(groups), cfg.search_space().largest_input, f"images of {cfg.dataset} (the largest input "
                      f"the {cfg.space} space may choose; --patches 0 --fragments 0 keeps whole images)")


def _check_split(cfg: StudyConfig, groups: np.ndarray, source: str) -> None:
    """Refuse the study's split of the images of `groups` (their prompts) from `source` when it cannot be made
    or leaves a part too small (`check_split_sizes`)."""
    try:
        train, val, test = study_split(groups, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    except ValueError as err:  # fewer prompts than the split has parts
        raise ValueError(f"{source}: {err}") from None
    parts = {"training": train, "validation": val, **({"test": test} if cfg.test_fraction else {})}
    check_split_sizes(source, groups, parts)


class StudyData:
    """The images (or preference pairs) a study trains, validates and tests on (the search, compress and
    export stages)."""

    def __init__(self, cfg: StudyConfig, progress: bool = False):
        self.cfg = cfg
        self.progress = progress
        self._images: dict[int, ImageSet | PairSet] = {}
        self._split: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._pairs: PairTable | None = None

    def all(self, size: int) -> ImageSet | PairSet:
        """Every labelled image (every pair, in a pairs study) at `size` px: train, validation and test,
        what export retrains on."""
        if size not in self._images:
            cfg = self.cfg
            if cfg.pairs:
                self._pairs = self._pairs or load_pairs(cfg.root, tuple(cfg.pair_columns))
                self._images[size] = decode_pairs(self._pairs, size, Path(cfg.cache_dir), progress=self.progress)
            else:
                self._images[size] = load_imageset(cfg.dataset, cfg.root, size=size, cache_dir=Path(cfg.cache_dir),
                                                   targets=cfg.targets, seed=cfg.seed, n_images=cfg.n_synthetic,
                                                   progress=self.progress)
        return self._images[size]

    def split(self, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(train, val, test) indices into `all(size)`: images, or pairs in a pairs study."""
        data = self.all(size)
        if self._split is None:
            cfg = self.cfg
            self._split = (split_pair_rows(len(data.images), data.pairs, cfg.val_fraction, cfg.test_fraction, cfg.seed)
                           if cfg.pairs else study_split(data.groups, cfg.val_fraction, cfg.test_fraction, cfg.seed))
        return self._split

    def _part(self, size: int, idx: np.ndarray) -> ImageSet | PairSet:
        return self.cfg.task.subset(self.all(size), idx)

    def train_val(self, size: int) -> tuple[ImageSet, ImageSet] | tuple[PairSet, PairSet]:
        """The training and validation sets at `size` px."""
        train, val, _ = self.split(size)
        return self._part(size, train), self._part(size, val)

    def test(self, size: int) -> ImageSet | PairSet | None:
        """The held-out test prompts (test pairs) at `size` px (None without a test share)."""
        test = self.split(size)[2]
        return self._part(size, test) if len(test) else None

    def val_fingerprint(self, version: str = FINGERPRINT_VERSION) -> str:
        """A short hash of the split and what it is scored against: every item (image with its target
        values and its file's digest; pair as winner > loser) with its part (training, validation, test, or
        dropped across the split), so every stage and every resume checks it trains and scores on the same
        data and split. Versioned (`version:`); an older `version` (`FINGERPRINT_VERSIONS`) is computed as
        studies stored it: "v2" without the digests, "" the unversioned hash of the validation images' names
        alone. Uses a resolution already loaded, else the space's smallest."""
        size = next(iter(self._images), None) or min(space_config(self.cfg.space).resizes)
        data, parts = self.all(size), self.split(size)
        if not version:
            val = parts[1]
            names = data.select(val).images.names if isinstance(data, PairSet) else [data.names[i] for i in val]
            return hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:16]
        part = np.full(len(data), "dropped", dtype=object)
        for name, idx in zip(("training", "validation", "test"), parts):
            part[idx] = name
        if isinstance(data, PairSet):
            names, header = _with_files(data.images, version), "winner > loser"
            items = [f"{names[w]} > {names[l]}" for w, l in data.pairs.tolist()]
        else:
            header = " ".join(data.target_names)
            items = [f"{n} = {' '.join(f'{v:.9g}' for v in row)}"
                     for n, row in zip(_with_files(data, version), data.targets.tolist())]
        text = "\n".join([header, *sorted(f"{p}: {item}" for p, item in zip(part, items))])
        return f"{version}:{hashlib.sha256(text.encode()).hexdigest()[:16]}"

    def matches(self, fingerprint: str) -> bool:
        """Whether a stored fingerprint is this data's: compared in its own version (`FINGERPRINT_VERSIONS`)."""
        version = fingerprint.partition(":")[0] if ":" in fingerprint else ""
        return version in FINGERPRINT_VERSIONS and fingerprint == self.val_fingerprint(version)


def _with_files(images: ImageSet, version: str) -> list[str]:
    """The images' names, each with its file's digest ("name @ size:hash") from fingerprint version v3 on (names
    alone for images that are not files)."""
    if version == "v2" or images.digests is None:
        return list(images.names)
    return [f"{name} @ {digest}" for name, digest in zip(images.names, images.digests)]

"""`StudyData`: a study's labelled images per resolution, loaded once per process, and its split.

The split is by prompt (group): test prompts (when the study holds some out) first, then validation
prompts from the rest. It is computed from the image names' groups, which do not depend on the
resolution, so every resolution splits alike; the validation fingerprint names it. What the items are,
how they are read and split, is the study's task kind's (`search.study.kinds`): a pairs study holds
`PairSet`s instead, split by image, so no image of a validation or test pair is seen in training.
"""
from __future__ import annotations

import hashlib

import numpy as np

from search.study.kinds import Data
from search.study.settings import StudyConfig, space_config

FINGERPRINT_VERSION = "v3"
"""v3: every image's file too (its size and hash: the same names with other images went unnoticed); v2: every
item of the split with its targets (pairs with their winners) and part; before it (unversioned), the
validation images' names alone (a resume on inverted scores or fewer pairs went unnoticed)."""
FINGERPRINT_VERSIONS = ("", "v2", FINGERPRINT_VERSION)
"""The versions a stored fingerprint is compared in ("": unversioned), so older studies resume."""


def check_study_inputs(cfg: StudyConfig) -> None:
    """Every data-side check before a study exists: the dataset and its labels (or pairs), the split the
    study will make (enough images or pairs in every part; of a combined dataset, each source could be split
    on its own too, so none is too small to standardise or to matter) and host memory for the largest input
    the space may decode. ValueError (one line, naming the file) on the first problem."""
    cfg.task.check_inputs(cfg)


class StudyData:
    """The images (or preference pairs) a study trains, validates and tests on (the search, compress and
    export stages)."""

    def __init__(self, cfg: StudyConfig, progress: bool = False):
        self.cfg = cfg
        self.progress = progress
        self._images: dict[int, Data] = {}
        self._split: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._memo: dict = {}
        """What the task kind keeps between resolutions (a pairs study's parsed CSV)."""

    def all(self, size: int) -> Data:
        """Every labelled image (every pair, in a pairs study) at `size` px: train, validation and test,
        what export retrains on."""
        if size not in self._images:
            self._images[size] = self.cfg.task.load(self.cfg, size, self.progress, self._memo)
        return self._images[size]

    def split(self, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(train, val, test) indices into `all(size)`: images, or pairs in a pairs study."""
        data = self.all(size)
        if self._split is None:
            self._split = self.cfg.task.split(self.cfg, data)
        return self._split

    def _part(self, size: int, idx: np.ndarray) -> Data:
        return self.cfg.task.subset(self.all(size), idx)

    def train_val(self, size: int) -> tuple[Data, Data]:
        """The training and validation sets at `size` px."""
        train, val, _ = self.split(size)
        return self._part(size, train), self._part(size, val)

    def test(self, size: int) -> Data | None:
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
        data, parts, kind = self.all(size), self.split(size), self.cfg.task
        if not version:
            names = kind.names(data, parts[1])
            return hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:16]
        part = np.full(len(data), "dropped", dtype=object)
        for name, idx in zip(("training", "validation", "test"), parts):
            part[idx] = name
        header, items = kind.fingerprint(data, version)
        text = "\n".join([header, *sorted(f"{p}: {item}" for p, item in zip(part, items))])
        return f"{version}:{hashlib.sha256(text.encode()).hexdigest()[:16]}"

    def matches(self, fingerprint: str) -> bool:
        """Whether a stored fingerprint is this data's: compared in its own version (`FINGERPRINT_VERSIONS`)."""
        version = fingerprint.partition(":")[0] if ":" in fingerprint else ""
        return version in FINGERPRINT_VERSIONS and fingerprint == self.val_fingerprint(version)


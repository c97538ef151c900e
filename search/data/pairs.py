"""Preference pairs: a CSV of `image_a, image_b, winner` and the images beside it, with no MOS.

NTIRE 2026 RAIM track 1 gives pairs of high-quality images and which of the two people preferred.
`read_pairs` reads the rows of such a CSV (the winner column optional, for pairs to predict) and
`load_pairs` the training pairs of one (column names configurable; the winner given as `a`/`b` or as the
winning file's name) and refuses a pair whose image is missing, a self-pair, or an unknown winner,
naming the file, the row and the value. `PairSet` holds the decoded unique images and the pairs as
(winner, loser) indices; `split_pairs` splits by image, so no image of a validation pair is seen in
training (pairs that straddle the split are dropped and counted).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from search.data.imageset import ImageSet
from search.files import check_inside, read_csv_file

PAIR_COLUMNS = ("image_a", "image_b", "winner")
"""Default column names: the two images and which of them was preferred."""
PAIRS_FILE = "pairs.csv"


@dataclass(frozen=True)
class PairTable:
    """The unique images of a pairs CSV and its pairs as (winner, loser) indices into `names`."""

    source: Path
    image_dir: Path
    names: list[str]
    pairs: np.ndarray
    """int64 [P, 2]: (index of the preferred image, index of the other)."""


@dataclass(frozen=True)
class PairSet:
    """Decoded images (`images.targets` is empty: pairs carry no MOS) and (winner, loser) pairs."""

    images: ImageSet
    pairs: np.ndarray
    dropped: int = field(default=0)
    """Pairs left out because their two images fell on different sides of a split."""

    def __len__(self) -> int:
        return len(self.pairs)

    def select(self, rows: np.ndarray, dropped: int = 0) -> PairSet:
        """The pairs `rows` over just their images (re-indexed)."""
        pairs = self.pairs[np.asarray(rows, dtype=np.int64)]
        used, local = np.unique(pairs, return_inverse=True)
        return PairSet(self.images.subset(used), local.reshape(-1, 2).astype(np.int64), dropped)


def _image_dir(root: Path) -> Path:
    return root / "images" if (root / "images").is_dir() else root


@dataclass(frozen=True)
class PairRows:
    """The rows of a pairs CSV in file order: both images of each pair and, when the CSV has its winner
    column, whether `a` won. What prediction answers row by row (`search.train.pairs.choices_frame`)."""

    source: Path
    image_dir: Path
    a: list[str]
    b: list[str]
    a_wins: np.ndarray | None
    """bool [P]; None when the CSV has no winner column (and it was not required)."""

    def names(self) -> list[str]:
        """The unique images, in order of first appearance."""
        return list(dict.fromkeys(n for pair in zip(self.a, self.b) for n in pair))

    def winner_pairs(self, names: list[str]) -> np.ndarray:
        """int64 [P, 2]: (winner, loser) indices into `names` (the CSV must have had its winner column)."""
        if self.a_wins is None:
            raise ValueError(f"{self.source} has no winner column: it gives pairs to choose from, not to train on")
        index = {n: i for i, n in enumerate(names)}
        pairs = [(index[a], index[b]) if a_wins else (index[b], index[a])
                 for a, b, a_wins in zip(self.a, self.b, self.a_wins)]
        return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


def read_pairs(source: str | Path, columns: tuple[str, str, str] = PAIR_COLUMNS, need_winner: bool = True) -> PairRows:
    """The rows of the CSV `source` (images in `images/` beside it, or beside it); ValueError naming the
    file, the line and the value for a missing column, image or winner, a self-pair, or an unreadable file."""
    source = Path(source)
    if not source.is_file():
        raise FileNotFoundError(f"pairs file {source} not found")
    try:
        frame = read_csv_file(source, dtype=str).fillna("")
    except pd.errors.EmptyDataError as err:
        raise ValueError(f"{source} is not a readable CSV: {' '.join(str(err).split())}") from None
    col_a, col_b, col_w = columns
    has_winner = col_w in frame.columns
    missing = [c for c in (col_a, col_b, *([col_w] if need_winner else [])) if c not in frame.columns]
    if missing:
        raise ValueError(f"{source} has no column(s) {', '.join(missing)}; its columns are {', '.join(frame.columns)}")
    image_dir = _image_dir(source.parent)
    a_col, b_col = list(frame[col_a].str.strip()), list(frame[col_b].str.strip())
    w_col = list(frame[col_w].str.strip()) if has_winner else [None] * len(frame)
    a_wins = []
    for row, (a, b, w) in enumerate(zip(a_col, b_col, w_col), 2):
        for name in (a, b):
            check_inside(name, image_dir, f"{source} line {row}")
            if not name or not (image_dir / name).is_file():
                raise ValueError(f"{source} line {row}: image {name!r} not found in {image_dir}")
        if a == b:
            raise ValueError(f"{source} line {row}: {a!r} is paired with itself")
        if w is not None:
            if w.lower() not in ("a", "b", a, b):
                raise ValueError(f"{source} line {row}: winner {w!r} is neither 'a', 'b', {a!r} nor {b!r}")
            a_wins.append(w.lower() == "a" or w == a)
    if not a_col:
        raise ValueError(f"{source} holds no pairs")
    return PairRows(source, image_dir, a_col, b_col, np.asarray(a_wins, dtype=bool) if has_winner else None)


def load_pairs(root: str | Path, columns: tuple[str, str, str] = PAIR_COLUMNS, filename: str = PAIRS_FILE) -> PairTable:
    """The pairs of `root/filename` (images in `root/images/` or beside the CSV); ValueError naming the
    file, the row and the value for a missing column, image or winner, or a self-pair."""
    rows = read_pairs(Path(root) / filename, columns)
    names = rows.names()
    return PairTable(rows.source, rows.image_dir, names, rows.winner_pairs(names))


def _hold_out(n_images: int, pairs: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held) masks over `pairs`: a seeded `fraction` of the images is held out; held pairs have
    both images held out, kept pairs neither (the others straddle and belong to neither)."""
    held = np.zeros(n_images, dtype=bool)
    held[np.random.default_rng(seed).permutation(n_images)[:max(1, round(fraction * n_images))]] = True
    inside = held[pairs]
    return (~inside).all(1), inside.all(1)


def split_pair_rows(n_images: int, pairs: np.ndarray, val_fraction: float, test_fraction: float = 0.0,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) row indices into `pairs` (over `n_images` images), split by image: the test
    images (when `test_fraction` > 0) first, then validation images among the rest, so no image of a
    validation or test pair is seen in training. Parts may be empty; the caller checks their sizes."""
    if not (0 < val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"need 0 < val_fraction, 0 <= test_fraction and their sum < 1; "
                         f"got {val_fraction} and {test_fraction}")
    rows, test = np.arange(len(pairs)), np.zeros(0, dtype=np.int64)
    if test_fraction:
        kept, held = _hold_out(n_images, pairs, test_fraction, seed)
        rows, test = rows[kept], rows[held]
        seed, val_fraction = seed + 1, val_fraction / (1 - test_fraction)
    used, local = np.unique(pairs[rows], return_inverse=True)
    kept, held = _hold_out(len(used), local.reshape(-1, 2), val_fraction, seed)
    return rows[kept], rows[held], test


def split_pairs(data: PairSet, val_fraction: float, seed: int = 0) -> tuple[PairSet, PairSet]:
    """(train, validation) by image: a seeded `val_fraction` of the images is held out, validation keeps
    the pairs of two held-out images, training the pairs of two others; straddling pairs are dropped."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    train, val, _ = split_pair_rows(len(data.images), data.pairs, val_fraction, seed=seed)
    if len(train) < 1 or len(val) < 1:
        raise ValueError(f"{len(data)} pairs over {len(data.images)} images leave no training or no validation pair "
                         f"at val_fraction {val_fraction}: more pairs are needed")
    dropped = len(data) - len(train) - len(val)
    return data.select(train, dropped), data.select(val, dropped)

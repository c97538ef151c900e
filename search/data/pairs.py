"""Preference pairs: a CSV of `image_a, image_b, winner` and the images beside it, with no MOS.

NTIRE 2026 RAIM track 1 gives pairs of high-quality images and which of the two people preferred.
`load_pairs` reads such a CSV (column names configurable; the winner given as `a`/`b` or as the
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
import torch

from search.data.cache import decode_images
from search.data.imageset import ImageSet
from search.data.labels import LabelTable

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


def _image_dir(root: Path) -> Path:
    return root / "images" if (root / "images").is_dir() else root


def load_pairs(root: str | Path, columns: tuple[str, str, str] = PAIR_COLUMNS, filename: str = PAIRS_FILE) -> PairTable:
    """The pairs of `root/filename` (images in `root/images/` or beside the CSV); ValueError naming the
    file, the row and the value for a missing column, image or winner, or a self-pair."""
    root = Path(root)
    source = root / filename
    if not source.is_file():
        raise FileNotFoundError(f"pairs file {source} not found")
    frame = pd.read_csv(source, dtype=str).fillna("")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{source} has no column(s) {', '.join(missing)}; its columns are {', '.join(frame.columns)}")
    image_dir = _image_dir(root)
    col_a, col_b, col_w = columns
    index: dict[str, int] = {}
    pairs = []
    for row, (a, b, w) in enumerate(zip(frame[col_a].str.strip(), frame[col_b].str.strip(), frame[col_w].str.strip()), 2):
        for name in (a, b):
            if not (image_dir / name).is_file():
                raise ValueError(f"{source} line {row}: image {name!r} not found in {image_dir}")
        if a == b:
            raise ValueError(f"{source} line {row}: {a!r} is paired with itself")
        if w.lower() not in ("a", "b", a, b):
            raise ValueError(f"{source} line {row}: winner {w!r} is neither 'a', 'b', {a!r} nor {b!r}")
        a_wins = w.lower() == "a" or w == a
        ia, ib = (index.setdefault(n, len(index)) for n in (a, b))
        pairs.append((ia, ib) if a_wins else (ib, ia))
    if not pairs:
        raise ValueError(f"{source} holds no pairs")
    return PairTable(source, image_dir, list(index), np.asarray(pairs, dtype=np.int64))


def decode_pairs(table: PairTable, size: int, cache_dir: Path | str = ".cache/images", progress: bool = True) -> PairSet:
    """The table's images decoded at `size` px (through the decode-once cache) with its pairs."""
    frame = pd.DataFrame({"image": table.names, "group": table.names})
    images = decode_images(LabelTable(f"pairs-{table.source.parent.name}", table.source, table.image_dir, frame, []),
                           size, cache_dir, progress=progress)
    return PairSet(images, table.pairs)


def split_pairs(data: PairSet, val_fraction: float, seed: int = 0) -> tuple[PairSet, PairSet]:
    """(train, validation) by image: a seeded `val_fraction` of the images is held out, validation keeps
    the pairs of two held-out images, training the pairs of two others; straddling pairs are dropped."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    n = len(data.images)
    held = np.zeros(n, dtype=bool)
    held[np.random.default_rng(seed).permutation(n)[:max(1, round(val_fraction * n))]] = True
    inside = held[data.pairs]
    val, train = inside.all(1), (~inside).all(1)
    if train.sum() < 1 or val.sum() < 1:
        raise ValueError(f"{len(data)} pairs over {n} images leave no training or no validation pair at "
                         f"val_fraction {val_fraction}: more pairs are needed")
    dropped = int(len(data) - train.sum() - val.sum())
    return _keep(data, train, dropped), _keep(data, val, dropped)


def _keep(data: PairSet, mask: np.ndarray, dropped: int) -> PairSet:
    """The pairs under `mask` over just their images (re-indexed)."""
    pairs = data.pairs[mask]
    used = np.unique(pairs)
    remap = np.full(len(data.images), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return PairSet(data.images.subset(used), remap[pairs], dropped)


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
    unlabelled = ImageSet(images.images, torch.zeros((len(images), 0)), images.groups, images.names, [])
    return PairSet(unlabelled, np.asarray(sorted(pairs), dtype=np.int64))

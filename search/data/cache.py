"""Decode once: images are decoded and resized a single time into a uint8 cache, reused by every trial.

The cache key covers the dataset name, every image's relative path, file size and modification time,
and the working size, so a changed file or size gives a new cache. Files are written to a temporary
name and renamed, so a crash never leaves a half-written cache; an unreadable cache is rebuilt. The
images of a pairs CSV go through the same cache (`decode_pairs`).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from search.data.decode import decode_image
from search.data.imageset import ImageSet
from search.data.labels import LabelTable
from search.data.pairs import PairSet, PairTable
from search.memory import check_host_memory

CACHE_VERSION = 2
"""2: 16-bit greyscale images are scaled to 8 bits (version 1 clipped them to white)."""


def cache_key(table: LabelTable, size: int) -> str:
    """Hash of what the decoded array depends on."""
    h = hashlib.sha256(f"v{CACHE_VERSION}|{table.name}|{size}".encode())
    for name in table.frame["image"]:
        st = (table.image_dir / name).stat()
        h.update(f"|{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def check_images(table: LabelTable) -> None:
    """Every image the labels list is a file in the table's image folder."""
    missing = [n for n in table.frame["image"] if not (table.image_dir / n).is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FileNotFoundError(f"image listed in {table.source} not found: {table.image_dir / missing[0]}{more}")


def _write_atomic(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is shared like any data file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _read(path: Path, n: int, size: int) -> np.ndarray | None:
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError):
        return None
    return array if array.shape == (n, 3, size, size) and array.dtype == np.uint8 else None


def decode_images(table: LabelTable, size: int, cache_dir: Path | str = ".cache/images", progress: bool = True,
                  threads: int | None = None) -> ImageSet:
    """The table's images decoded at `size` x `size`, from the cache when it is current."""
    if size < 8:
        raise ValueError(f"image size must be at least 8, got {size}")
    check_images(table)
    path = Path(cache_dir) / f"{table.name}-{size}-{cache_key(table, size)}.npy"
    n = len(table)
    check_host_memory(n, size, f"images of {table.name}")  # before decoding or copying the cache
    array = _read(path, n, size) if path.exists() else None
    if array is None:
        files = [table.image_dir / name for name in table.frame["image"]]
        array = np.empty((n, 3, size, size), dtype=np.uint8)
        with ThreadPoolExecutor(threads or min(8, os.cpu_count() or 1)) as pool:
            decoded = pool.map(lambda f: decode_image(f, size), files)
            for i, img in enumerate(tqdm(decoded, total=n, desc=f"decoding {table.name} at {size}px",
                                         unit="img", disable=not progress)):
                array[i] = img
        _write_atomic(path, array)
    images = torch.from_numpy(np.array(array))  # a writable in-memory copy of the (memory-mapped) cache
    targets = torch.tensor(table.frame[table.targets].to_numpy(dtype=np.float32).reshape(n, len(table.targets)))
    return ImageSet(images, targets, table.frame["group"].to_numpy(dtype=object), list(table.frame["image"]), list(table.targets))


def decode_pair_images(source: Path, image_dir: Path, names: list[str], size: int,
                       cache_dir: Path | str = ".cache/images", progress: bool = True) -> ImageSet:
    """The images `names` of a pairs CSV `source` at `size` px, in that order (no targets), through the
    decode-once cache."""
    frame = pd.DataFrame({"image": names, "group": names})
    return decode_images(LabelTable(f"pairs-{source.parent.name}", source, image_dir, frame, []), size, cache_dir,
                         progress=progress)


def decode_pairs(table: PairTable, size: int, cache_dir: Path | str = ".cache/images", progress: bool = True) -> PairSet:
    """The table's images decoded at `size` px (through the decode-once cache) with its pairs."""
    return PairSet(decode_pair_images(table.source, table.image_dir, table.names, size, cache_dir, progress), table.pairs)

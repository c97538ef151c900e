"""Decode once: images are decoded and resized a single time into a uint8 cache, reused by every trial.

The cache key covers the dataset name, every image's relative path, file size and modification time,
and the working size, so a changed file or size gives a new cache. Files are written to a temporary
name and renamed, so a crash never leaves a half-written cache; an unreadable cache is rebuilt. The
images of a pairs CSV go through the same cache (`decode_pairs`). Beside each cache, the files' digests
(size and a fast hash of the bytes: `file_digests`), which the study fingerprint checks the images by.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from search.data.decode import decode_all
from search.data.imageset import ImageSet
from search.data.labels import LabelTable
from search.data.pairs import PairSet, PairTable
from search.files import atomic_write
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


def _read(path: Path, n: int, size: int) -> np.ndarray | None:
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError):
        return None
    return array if array.shape == (n, 3, size, size) and array.dtype == np.uint8 else None


def _digest(path: Path) -> str:
    """A file's size and a fast hash of its bytes, e.g. "48213:9f86d081884c7d65" ("unreadable": decoding says why)."""
    try:
        data = path.read_bytes()
    except OSError:
        return "unreadable"
    return f"{len(data)}:{hashlib.blake2b(data, digest_size=8).hexdigest()}"


def file_digests(files: list[Path], kept: Path, threads: int | None = None) -> list[str]:
    """Each of `files`' `_digest`, read from `kept` when it holds them (it is named by the decode cache's key,
    which covers every file's size and modification time), else computed and kept there: the files are
    read once, when they are decoded (or, for a cache made before digests, on its next use)."""
    try:
        digests = json.loads(kept.read_text())
    except (OSError, ValueError):
        digests = None
    if isinstance(digests, list) and len(digests) == len(files):
        return digests
    with ThreadPoolExecutor(threads or min(8, os.cpu_count() or 1)) as pool:
        digests = list(pool.map(_digest, files))
    with atomic_write(kept) as tmp:
        tmp.write_text(json.dumps(digests))
    return digests


def decode_readable(table: LabelTable, size: int, cache_dir: Path | str = ".cache/images", progress: bool = True,
                    threads: int | None = None) -> tuple[ImageSet, dict[str, str]]:
    """The table's images that decode at `size` x `size` (from the cache when it is current; a cache is
    written only when every image decodes), and the others by name with why (`decode_all`)."""
    if size < 8:
        raise ValueError(f"image size must be at least 8, got {size}")
    check_images(table)
    path = Path(cache_dir) / f"{table.name}-{size}-{cache_key(table, size)}.npy"
    n = len(table)
    check_host_memory(n, size, f"images of {table.name}")  # before decoding or copying the cache
    array = _read(path, n, size) if path.exists() else None
    files = [table.image_dir / name for name in table.frame["image"]]
    unreadable: dict[int, str] = {}
    if array is None:
        array, unreadable = decode_all(files, size, f"decoding {table.name} at {size}px", progress, threads)
        if not unreadable:
            with atomic_write(path) as tmp, open(tmp, "wb") as f:
                np.save(f, array)
    digests = file_digests(files, path.with_suffix(".digests.json"), threads)
    keep = np.array([i for i in range(n) if i not in unreadable], dtype=np.int64)
    images = torch.from_numpy(np.array(array[keep]))  # a writable in-memory copy of the (memory-mapped) cache
    frame = table.frame.iloc[keep]
    targets = torch.tensor(frame[table.targets].to_numpy(dtype=np.float32).reshape(len(keep), len(table.targets)))
    readable = ImageSet(images, targets, frame["group"].to_numpy(dtype=object), list(frame["image"]),
                        list(table.targets), digests=[digests[i] for i in keep])
    return readable, {table.frame["image"].iloc[i]: why for i, why in unreadable.items()}


def decode_images(table: LabelTable, size: int, cache_dir: Path | str = ".cache/images", progress: bool = True,
                  threads: int | None = None) -> ImageSet:
    """The table's images decoded at `size` x `size`, from the cache when it is current; ValueError naming
    the unreadable ones (a study trains on every labelled image or on none)."""
    images, unreadable = decode_readable(table, size, cache_dir, progress, threads)
    if unreadable:
        first, *others = unreadable.values()
        more = f" (and {len(others)} more: {', '.join(list(unreadable)[1:4])}{', ...' if len(others) > 3 else ''})" \
            if others else ""
        raise ValueError(f"{table.source}: {first}{more}: replace or unlist it")
    return images


def decode_pair_images(source: Path, image_dir: Path, names: list[str], size: int,
                       cache_dir: Path | str = ".cache/images", progress: bool = True) -> ImageSet:
    """The images `names` of a pairs CSV `source` at `size` px, in that order (no targets), through the
    decode-once cache."""
    frame = pd.DataFrame({"image": names, "group": names})
    return decode_images(LabelTable(f"pairs-{source.parent.name}", source, image_dir, frame, []), size, cache_dir,
                         progress=progress)


def decode_pairs(table: PairTable, size: int, cache_dir: Path | str = ".cache/images",
                 progress: bool = True) -> PairSet:
    """The table's images decoded at `size` px (through the decode-once cache) with its pairs."""
    images = decode_pair_images(table.source, table.image_dir, table.names, size, cache_dir, progress)
    return PairSet(images, table.pairs)

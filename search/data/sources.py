"""Several labelled datasets trained as one: `--data agiqa3k+agiqa1k --root agiqa3k=PATH,agiqa1k=PATH`.

A combined dataset is a '+'-joined list of two or more labelled formats (`LOADERS`), each with its own
folder, given in `--root` as `NAME=PATH` items joined by commas. Its set is the sources' images one
after the other (`search.data.imageset.combine`): names and prompts prefixed with the source, each
source's MOS standardised by its own labels and put on the first source's scale, so one model learns
one scale and predicts on the first source's.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from search.data.cache import decode_images
from search.data.imageset import ImageSet, combine
from search.data.labels import LOADERS, load_labels

SEPARATOR = "+"


def is_combined(dataset: str) -> bool:
    """Whether `dataset` names several sources."""
    return SEPARATOR in dataset


def source_names(dataset: str) -> list[str]:
    """The sources of a combined dataset, in order (the first one's scale is the common scale)."""
    return dataset.split(SEPARATOR)


def check_combination(dataset: str) -> None:
    """Two or more distinct labelled formats joined by '+'."""
    names = source_names(dataset)
    unknown = [n for n in names if n not in LOADERS]
    if unknown:
        raise ValueError(f"dataset {dataset!r}: {', '.join(map(repr, unknown))} is not a labelled dataset; join two "
                         f"or more of {', '.join(LOADERS)} with '{SEPARATOR}'")
    if len(set(names)) < len(names):
        raise ValueError(f"dataset {dataset!r} names a source more than once")


def _form(dataset: str) -> str:
    return ",".join(f"{n}=PATH" for n in source_names(dataset))


def source_roots(dataset: str, root: str | Path | None) -> dict[str, str]:
    """Each source's folder, in the dataset's order, from `root` = "NAME=PATH,NAME=PATH" (one item per source)."""
    form = _form(dataset)
    if root is None:
        raise ValueError(f"dataset {dataset!r} needs --root {form} (the folder of each source)")
    roots: dict[str, str] = {}
    for item in str(root).split(","):
        name, equals, path = (part.strip() for part in item.partition("="))
        if not (equals and path):
            raise ValueError(f"--root {root!r}: {item!r} is not NAME=PATH; give --root {form}")
        if name not in source_names(dataset):
            raise ValueError(f"--root {root!r}: {name!r} is not a source of dataset {dataset!r}; give --root {form}")
        if name in roots:
            raise ValueError(f"--root {root!r} names {name!r} more than once")
        roots[name] = path
    missing = [n for n in source_names(dataset) if n not in roots]
    if missing:
        raise ValueError(f"--root {root!r} gives no folder for {', '.join(missing)}; give --root {form}")
    return {n: roots[n] for n in source_names(dataset)}


def absolute_root(root: str | None) -> str | None:
    """`root` with its folder made absolute (what a study stores): a plain folder, or each PATH of a
    combined dataset's `NAME=PATH,...` (recognised by every item starting with a word and '='). An empty
    folder is refused: it would resolve to the current folder and read whatever lies there."""
    if root is None:
        return None
    items = [item.partition("=") for item in root.split(",")]
    if all(eq and re.fullmatch(r"\w+", name.strip()) for name, eq, _ in items):
        empty = [name.strip() for name, _, path in items if not path.strip()]
        if empty:
            raise ValueError(f"--root {root!r} gives an empty folder for {empty[0]}: give NAME=PATH with its folder")
        return ",".join(f"{name.strip()}={Path(path.strip()).resolve()}" for name, _, path in items)
    if not root.strip():
        raise ValueError("--root is empty: give the dataset folder")
    return str(Path(root).resolve())


def load_sources(dataset: str, root: str | Path, size: int, cache_dir: Path | str, targets: Sequence[str] | None,
                 progress: bool = True) -> ImageSet:
    """The combined set of `dataset` at `size` px: each source decoded once (its own cache) and `combine`d."""
    roots = source_roots(dataset, root)
    return combine([(name, decode_images(load_labels(name, roots[name], targets), size, cache_dir, progress=progress))
                    for name in source_names(dataset)])

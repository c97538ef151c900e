"""Label loaders for the real IQA label formats, each returning a `LabelTable`.

Every loader checks what it reads: a missing column, a score that is not a finite number, or an image
listed twice raises an error that names the file, the column and the row (1-based, the header being
row 1). AGIQA-1K's one known duplicate is the documented exception (merged, with a warning).
"""
from __future__ import annotations

import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from search.data.decode import list_images
from search.files import check_inside, read_csv_file


@dataclass(frozen=True)
class LabelTable:
    """Labels of one dataset: `frame` has columns `image` (relative to `image_dir`), `group`, and targets."""

    name: str
    source: Path
    image_dir: Path
    frame: pd.DataFrame
    targets: list[str]

    def __len__(self) -> int:
        return len(self.frame)


class MissingColumnsError(ValueError):
    """A labels file without columns it needs (`missing`), so a caller that chose them can say where from."""

    def __init__(self, message: str, missing: list[str]):
        super().__init__(message)
        self.missing = missing


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], source: Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise MissingColumnsError(f"{source}: missing column(s) {', '.join(map(repr, missing))}; "
                                  f"columns found: {', '.join(map(str, frame.columns))}", missing)


def _scores(frame: pd.DataFrame, column: str, source: Path, first_row: int = 2) -> np.ndarray:
    """The column as float64; the first non-numeric or non-finite cell is reported by file row."""
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        i = int(bad[0])
        cell = frame[column].iloc[i]
        shown = "empty" if pd.isna(cell) else repr(cell)
        raise ValueError(f"{source}: column {column!r}, row {i + first_row}: score {shown} is not a "
                         f"finite number ({bad.size} bad value(s) in that column)")
    return values


def _table(name: str, source: Path, image_dir: Path, images, groups, scores: dict[str, np.ndarray]) -> LabelTable:
    frame = pd.DataFrame({"image": pd.Series(images, dtype=str).str.strip().to_numpy(),
                          "group": pd.Series(groups).astype(str).to_numpy()})
    for col, vals in scores.items():
        frame[col] = vals
    if frame.empty:
        raise ValueError(f"{source}: no labelled rows")
    for image in frame["image"]:  # not `name`: the table's name, given above
        check_inside(image, image_dir, str(source))
    _refuse_duplicates(frame["image"], source)
    return LabelTable(name, source, image_dir, frame, list(scores))


def _refuse_duplicates(names: pd.Series, source: Path) -> None:
    """One row per image: a name listed twice (with its own prompt and scores) would be trained on twice
    and could land in training and validation at once."""
    dup = names[names.duplicated(keep=False)]
    if dup.empty:
        return
    groups = dup.groupby(dup, sort=True).groups
    rows = {name: ", ".join(str(i + 2) for i in idx) for name, idx in groups.items()}  # the header is file row 1
    shown = "; ".join(f"{name} (rows {r})" for name, r in list(rows.items())[:5])
    more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
    raise ValueError(f"{source}: image name(s) listed more than once: {shown}{more}; keep one row per image")


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"label file not found: {path}")
    # newline handling of the csv engine accepts LF and CRLF alike; strip stray whitespace in headers
    try:
        frame = read_csv_file(path, keep_default_na=True)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: empty file (expected a header row and one row per image)") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def load_agiqa3k(root, targets: Sequence[str] | None = None) -> LabelTable:
    """AGIQA-3K: `labels.csv` or the official `data.csv` (CRLF) with `name, prompt, ..., mos_quality, mos_align`.

    Images are read from `root/images/` when it exists, else from `root`. Default target: `mos_quality`.
    """
    root = Path(root)
    source = next((root / n for n in ("labels.csv", "data.csv") if (root / n).is_file()), root / "data.csv")
    frame = _read_csv(source)
    targets = list(targets or ["mos_quality"])
    _require_columns(frame, ["name", "prompt", *targets], source)
    image_dir = root / "images" if (root / "images").is_dir() else root
    scores = {t: _scores(frame, t, source) for t in targets}
    return _table("agiqa3k", source, image_dir, frame["name"], frame["prompt"], scores)


def load_agiqa1k(root, targets: Sequence[str] | None = None) -> LabelTable:
    """AGIQA-1K: `AIGC_MOS_Zscore.xlsx` with `Image, Prompt, MOS` (`root` is the file or its folder).

    The distributed file lists `dreamStudio_8_9_1_1.jpg` twice with different MOS: duplicated names are
    merged into one row with the mean MOS, and a warning names them. (`dreamStudio_8_5_0_0.jpg` is in
    the image archive but not in the labels; an unlabelled image is simply not used.)
    """
    root = Path(root)
    source = root if root.suffix == ".xlsx" else root / "AIGC_MOS_Zscore.xlsx"
    if not source.is_file():
        raise FileNotFoundError(f"label file not found: {source}")
    try:
        frame = pd.read_excel(source)
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise ValueError(f"{source}: not a readable Excel file ({' '.join(str(err).split())})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    targets = list(targets or ["MOS"])
    _require_columns(frame, ["Image", "Prompt", *targets], source)
    scores = {t: _scores(frame, t, source) for t in targets}
    merged = pd.DataFrame({"Image": frame["Image"].astype(str).str.strip(), "Prompt": frame["Prompt"], **scores})
    dup = merged["Image"].duplicated(keep=False)
    if dup.any():
        detail = "; ".join(f"{name}: {', '.join(f'{v:.4g}' for v in g[targets[0]])}"
                           for name, g in merged[dup].groupby("Image"))
        warnings.warn(f"{source}: duplicated image name(s) merged by averaging their scores ({detail})", stacklevel=2)
        how = {"Prompt": "first", **{t: "mean" for t in targets}}
        merged = merged.groupby("Image", sort=False, as_index=False).agg(how)
    image_dir = source.parent / "images" if (source.parent / "images").is_dir() else source.parent
    scores = {t: merged[t].to_numpy() for t in targets}
    return _table("agiqa1k", source, image_dir, merged["Image"], merged["Prompt"], scores)


def load_aigiqa20k(root, targets: Sequence[str] | None = None) -> LabelTable:
    """AIGIQA-20K: `info_train.csv` with `name, prompt, mos` (`.png` names; `root` is the file or its folder)."""
    root = Path(root)
    source = root if root.suffix == ".csv" else root / "info_train.csv"
    frame = _read_csv(source)
    targets = list(targets or ["mos"])
    _require_columns(frame, ["name", "prompt", *targets], source)
    image_dir = source.parent / "images" if (source.parent / "images").is_dir() else source.parent
    scores = {t: _scores(frame, t, source) for t in targets}
    return _table("aigiqa20k", source, image_dir, frame["name"], frame["prompt"], scores)


def load_csv(csv_path, image_col: str, score_cols: Sequence[str], group_col: str | None = None,
             image_dir=None) -> LabelTable:
    """Any CSV: chosen image and score columns; the group (for grouped splits) defaults to the image."""
    source = Path(csv_path)
    frame = _read_csv(source)
    _require_columns(frame, [image_col, *score_cols] + ([group_col] if group_col else []), source)
    groups = frame[group_col] if group_col else frame[image_col]
    return _table("csv", source, Path(image_dir) if image_dir else source.parent, frame[image_col], groups,
                  {c: _scores(frame, c, source) for c in score_cols})


def load_folder(image_dir) -> LabelTable:
    """Unlabelled images in a folder (for prediction): every image file, sorted, no targets."""
    image_dir = Path(image_dir)
    names = list_images(image_dir)
    return _table("folder", image_dir, image_dir, names, names, {})


@dataclass(frozen=True)
class LabelFormat:
    """One labelled dataset format: how its labels are read, and what the notebook and the paper say of it."""

    load: Callable[..., LabelTable]
    """(root, targets or None) -> its `LabelTable`."""
    title: str
    """The dataset's name in the paper's text (e.g. "AGIQA-3K")."""
    cite: str | None
    """Its BibTeX key in `results.paper.bib.BIB`; None: named, not cited."""
    kaggle: str
    """Where its folder (labels file, images) is on Kaggle by default (the notebook's settings)."""


LOADERS: dict[str, LabelFormat] = {
    "agiqa3k": LabelFormat(load_agiqa3k, "AGIQA-3K", "li2024agiqa3k", "/kaggle/input/agiqa-3k"),
    "agiqa1k": LabelFormat(load_agiqa1k, "AGIQA-1K", "zhang2023agiqa1k", "/kaggle/input/agiqa-1k"),
    "aigiqa20k": LabelFormat(load_aigiqa20k, "AIGIQA-20K", "li2024aigiqa20k", "/kaggle/input/aigiqa-20k"),
}
"""The labelled dataset formats by name (`--data`); any other CSV goes through `load_csv` with its columns."""


def load_labels(dataset: str, root, targets: Sequence[str] | None = None) -> LabelTable:
    """Dispatch on the dataset name: a labelled format in `LOADERS`, or "folder" (unlabelled images)."""
    if dataset == "folder":
        return load_folder(root)
    if dataset not in LOADERS:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {', '.join([*LOADERS, 'folder'])}")
    return LOADERS[dataset].load(root, targets)

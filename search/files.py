"""Files in and out. Writing whole or not at all: every file the project writes goes to a temporary name
beside its place and is moved there once complete, so a crash or a full disk never leaves a half-written
file. Reading CSV files with one-line errors that name the file; refusing a file name read from a file that
would leave its folder."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import Iterator

import pandas as pd


@contextmanager
def atomic_write(path: str | Path, mode: int = 0o644) -> Iterator[Path]:
    """A temporary path beside `path` to write to: moved onto `path` (with `mode`; mkstemp makes it private,
    and the project's files are shared like any data file) when the block ends, removed when it raises.
    An OSError without a file name (a full disk inside a writer) is re-raised naming `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as err:
        if err.filename is None:
            raise OSError(err.errno, err.strerror or str(err), str(path)) from err
        raise
    finally:
        tmp.unlink(missing_ok=True)


def check_inside(name: str, folder: Path, where: str) -> None:
    """Refuse an image name read from a labels or pairs file (`where`: the file, and the line when known) that
    leaves `folder`, the folder it is relative to: an absolute path, or one with a `..` part, could read any
    file of the machine, such as /etc/passwd."""
    if PurePath(name).is_absolute() or ".." in PurePath(name).parts:
        raise ValueError(f"{where}: image {name!r} leaves the image folder {folder}: give names relative to it, "
                         "without '..'")


def read_csv_file(path: Path, **kwargs) -> pd.DataFrame:
    """`pd.read_csv(path)`, one-line errors naming the file: not a readable CSV, with a hint when it is
    separated by ';' (a spreadsheet's export in some locales). EmptyDataError is left to the caller."""
    try:
        frame = pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable CSV file ({' '.join(str(err).split())})"
                         f"{_separator_hint(path)}") from None
    if len(frame.columns) == 1 and _separator_hint(path):
        raise ValueError(f"{path}: one column {frame.columns[0]!r}{_separator_hint(path)}")
    return frame


def _separator_hint(path: Path) -> str:
    """A hint when the file's first line is separated by ';' rather than ','."""
    with open(path, encoding="utf-8", errors="replace") as f:
        header = f.readline()
    return ("; its first line is separated by ';': save it with ',' separators" if header.count(";") > header.count(",")
            else "")

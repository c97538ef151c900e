"""What may name a file or folder: study and team names, and the date in exported file names. The
command line and export both check with these, so they cannot disagree."""
from __future__ import annotations

import datetime
import re

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
"""A study or team name: it names a folder or file, so no path separators and no leading dot."""


def check_name(text: str, what: str | None = None) -> str:
    """`text` when it can name a folder or file, else ValueError naming `what` (if given) and the rule."""
    if not NAME.fullmatch(text):
        raise ValueError(f"{what + ' ' if what else ''}{text!r} is not a name: use letters, digits, '.', '_' and '-', "
                         "starting with a letter or digit (it names a folder or a file)")
    return text


def check_date(text: str) -> str:
    """`text` when it is a real day written YYYYMMDD (as the exported files are named), else ValueError."""
    try:
        if len(text) == 8 and text.isdigit():
            datetime.datetime.strptime(text, "%Y%m%d")
            return text
    except ValueError:  # no such day
        pass
    raise ValueError(f"{text!r} is not a date as YYYYMMDD (it names the exported files)")

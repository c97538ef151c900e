"""How the paper writes things: LaTeX escaping, numbers, plurals, tables, TODO marks and readable names."""
from __future__ import annotations

import unicodedata

from search.profiles import Profile

WRAPPED = ">{\\raggedright\\arraybackslash}p{0.3\\columnwidth}"
"""A table column of text that wraps, ragged right (needs the array package)."""
_TEX_SPECIAL = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#",
                "^": r"\^{}", "_": r"\_", "%": r"\%", "~": r"\textasciitilde{}"}


def tex_escape(text: object) -> str:
    """`text` as literal LaTeX text (data such as study names and ids may hold `_`, `%`, `&`...)."""
    return "".join(_TEX_SPECIAL.get(c, c) for c in str(text))


def unsettable(text: str) -> str:
    """The characters of `text` the paper's pdflatex template cannot set, each once, in order: those beyond
    Latin-1 (its fonts hold no CJK, Cyrillic, Greek or emoji glyphs) and control characters."""
    return "".join(dict.fromkeys(c for c in text if ord(c) > 0xFF or unicodedata.category(c) == "Cc"))


def tex_int(n: int) -> str:
    """An integer with thousands separators, e.g. 12{,}345 (pdftotext reads it back as 12,345)."""
    return f"{int(n):,}".replace(",", "{,}")


def tex_sci(x: float) -> str:
    """A float in scientific notation, e.g. $1.23\\times 10^{-3}$."""
    mantissa, exponent = f"{x:.2e}".split("e")
    return rf"${mantissa}\times 10^{{{int(exponent)}}}$"


def fixed(x: float, digits: int = 3, sign: bool = False) -> str:
    """`x` with `digits` decimals, never "-0.000" (a value that rounds to zero has no sign); `sign`: "+" on
    positive values."""
    text = f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"
    return text[1:] if float(text) == 0 and text[0] in "+-" else text


def mflops(flops: float) -> str:
    return f"{flops / 1e6:.2f}"


def plural(n: int, word: str, many: str | None = None) -> str:
    """"1 stage", "3 stages" ("1 epoch", "2 epochs"); `many` for irregular plurals."""
    return f"{n:g} {word if n == 1 else many or word + 's'}"


def todo(text: str) -> str:
    """A visible mark of what the team must write or check (`\\todo`, defined in paper.tex)."""
    return f"\\todo{{{text}}}"


def challenge_title(profile: Profile) -> str:
    """The challenge a profile encodes, in prose (`Profile.title`, else its description)."""
    return tex_escape(profile.title or profile.description)


def challenge_cite(profile: Profile) -> str:
    """`~\\cite{KEY}` of the profile's challenge (`Profile.cite`), or nothing when it has none."""
    return f"~\\cite{{{profile.cite}}}" if profile.cite else ""


def score_words(profile: Profile) -> str:
    """The profile's score in words (`Profile.score_words`, else its column name with spaces; never the bare
    column name)."""
    return tex_escape(profile.score_words or profile.score_name.replace("_", " "))


def table(label: str, caption: str, columns: str, header: str, rows: list[str]) -> str:
    """A one-column float, scaled down to the column width when wider."""
    body = "\n".join(rows)
    return (f"\\begin{{table}}[!htb]\n\\centering\n\\footnotesize\n\\caption{{{caption}}}\n\\label{{{label}}}\n"
            f"\\resizebox{{\\ifdim\\width>\\columnwidth\\columnwidth\\else\\width\\fi}}{{!}}{{%\n"
            f"\\begin{{tabular}}{{{columns}}}\n"
            f"\\hline\n{header} \\\\\n\\hline\n{body}\n\\hline\n\\end{{tabular}}}}\n\\end{{table}}\n")

"""ruff, as the tests run it: the project's own lint settings (pyproject.toml `[tool.ruff]`) over the tree, and
pyflakes' undefined-name check over generated code (the notebook's library)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ruff(*args: str, code: str | None = None) -> subprocess.CompletedProcess:
    """`ruff ARGS` in the repository root (`code` on its standard input), without a cache folder."""
    return subprocess.run([sys.executable, "-m", "ruff", *args, "--no-cache"], cwd=ROOT, input=code,
                          capture_output=True, text=True)


def undefined_names(code: str) -> str:
    """ruff's report of every undefined name in `code` (F821, F822), one per line; empty when there is none."""
    done = ruff("check", "--isolated", "--select", "F821,F822", "--output-format", "concise",
                "--stdin-filename", "notebook.py", "-", code=code)
    return "\n".join(line for line in done.stdout.splitlines() if "F82" in line)

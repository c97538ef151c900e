"""The code base passes `ruff check` with the project's settings (pyproject.toml `[tool.ruff]`: pycodestyle and
pyflakes at 120 characters a line)."""
from __future__ import annotations

from lint import ruff


def test_ruff_finds_nothing():
    done = ruff("check", "--output-format", "concise", ".")
    assert done.returncode == 0, done.stdout + done.stderr

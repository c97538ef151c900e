"""The paper kit: a study's own facts as LaTeX for the challenge's 4-page IEEE paper, never copied by hand.

`write_paper_kit` writes `runs/NAME/paper/`:
- `method.tex`, a fragment (needs `graphicx` and `amsmath`): the exported architecture per stage with
  exact parameter and FLOP counts and its input policy, the training recipe, the search, the compressed
  variants and the validation metrics with their formulas. "Exported" is the trial in
  `export/export.json` (with the recipe export retrained), else the first of the report's ranking.
- `figures/`: the Pareto front (parameters, log axis, against the profile's score, with the size-tier
  boundaries) and the learning curves, as vector PDFs with PNG copies.
- `refs.bib`: what the study used (its dataset, Optuna, PyTorch, Torch-Pruning, the challenge).
- `paper.tex`: a compilable wrapper (IEEEtran when the class is installed, else article);
  `compile_paper` builds `paper.pdf` with pdflatex and bibtex.
"""
from __future__ import annotations

from results.paper.bib import refs_bib
from results.paper.kit import compile_paper, write_paper_kit
from results.paper.tex import tex_escape

__all__ = ["compile_paper", "refs_bib", "tex_escape", "write_paper_kit"]

"""The paper kit: a study's own facts as the challenge's 4-page IEEE paper, never copied by hand.

`write_paper_kit` writes `runs/NAME/paper/`:
- `paper.tex`: title block (`--title`, `--authors`), abstract and Index Terms with the study's numbers,
  introduction, related work, `\\input{method}`, conclusion (IEEEtran when the class is installed, else
  article); what only the team can write is a red `\\todo{...}`. `compile_paper` builds `paper.pdf`.
- `method.tex`: method and experiments: the exported architecture per stage with exact parameter and FLOP
  counts and its input policy, the training recipe, the search, the compressed variants, the metric
  formulas, the Pareto-optimal trials, the ranking export takes from (the finalists' confirmed mean +- sd
  and their protocol), ablations from the benchmarks' JSON, the final retrain (`export/export.json`) and published
  systems. "Exported" is the candidate in `export/export.json`, else the one `results.candidates` ranks first.
- `figures/`: the Pareto front (parameters, log axis, against the profile's score, with the size-tier
  boundaries) and the learning curves, as vector PDFs with PNG copies.
- `refs.bib`: checked entries for everything the paper cites.
"""
from __future__ import annotations

from results.paper.bib import refs_bib
from results.paper.fmt import tex_escape
from results.paper.kit import compile_paper, write_paper_kit

__all__ = ["compile_paper", "refs_bib", "tex_escape", "write_paper_kit"]

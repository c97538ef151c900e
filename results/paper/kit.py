"""Writing the paper kit folder and compiling it."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Sequence

import optuna
import pandas as pd

from results.candidates import candidates_frame, rank
from results.paper.ablations import read_ablation
from results.paper.bib import refs_bib
from results.paper.facts import exported_model, trial_counts
from results.paper.figures import write_figures
from results.paper.sections import check_title_block
from results.paper.tex import method_tex, paper_tex
from search.profiles import get_profile
from search.study import StudyConfig


def write_paper_kit(study: optuna.Study, cfg: StudyConfig, run_dir: Path, variants: pd.DataFrame | None = None,
                    ablations: Sequence[Path] = (), title: str | None = None, authors: list[str] | None = None) -> Path:
    """Write method.tex, figures/, refs.bib and paper.tex under `run_dir/paper`; return that folder.
    `variants`: the study's compressed variants (`compress.variants.VariantStore(...).frame()`); `ablations`:
    `--out` JSON files of bench/quality.py and bench/ladder.py; `title`, `authors`: the paper's (TODO if none),
    checked before anything is written (`check_title_block`)."""
    check_title_block(title, authors)
    profile = get_profile(cfg.profile)
    frame = candidates_frame(study, profile, variants)
    ranked = rank(frame)
    exp = exported_model(study, run_dir, ranked, variants)
    benches = [read_ablation(path) for path in ablations]
    out = Path(run_dir) / "paper"
    write_figures(frame, profile, exp, out / "figures")
    (out / "method.tex").write_text(method_tex(study, cfg, exp, ranked, frame, variants, benches))
    (out / "refs.bib").write_text(refs_bib())
    compressed = variants is not None and not variants.empty
    (out / "paper.tex").write_text(paper_tex(cfg, exp, ranked, trial_counts(study)["completed"], compressed,
                                             title, authors))
    return out


def compile_paper(paper_dir: Path, timeout_s: float = 120.0) -> Path:
    """Build `paper.pdf` in `paper_dir` (pdflatex, bibtex, pdflatex twice); RuntimeError with the log's
    tail when pdflatex is missing or fails."""
    if shutil.which("pdflatex") is None:
        raise RuntimeError("pdflatex is not installed (Debian: texlive-latex-base)")
    steps = [["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "paper.tex"]]
    steps += [["bibtex", "paper"]] if shutil.which("bibtex") else []
    steps += [steps[0], steps[0]]
    for step in steps:
        done = subprocess.run(step, cwd=paper_dir, capture_output=True, text=True, timeout=timeout_s)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(step)} failed in {paper_dir}:\n{done.stdout[-3000:]}")
    return Path(paper_dir) / "paper.pdf"

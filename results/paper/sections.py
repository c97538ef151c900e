"""The paper's prose around the generated method and experiments: title block, abstract, Index Terms,
introduction, related work and conclusion. Numbers come from the study; what only the team can say is a
visible TODO, never an invented claim."""
from __future__ import annotations

import pandas as pd

from results.paper.bib import dataset_title
from results.paper.experiments import candidate_name, confirmed_parts
from results.paper.facts import Exported
from results.paper.fmt import (
    challenge_cite, challenge_title, fixed, mflops, plural, score_words, tex_escape, tex_int, todo, unsettable,
)
from search.profiles import Profile
from search.study import StudyConfig

DEFAULT_TITLE = ("Searching Small: Lightweight From-Scratch Quality Assessment of AI-Generated Images by "
                 "Multi-Objective Architecture Search")
INDEX_TERMS = ("image quality assessment", "AI-generated content", "neural architecture search",
               "lightweight neural networks", "network pruning")


def check_title_block(title: str | None, authors: list[str] | None) -> None:
    """Refuse a title or author name with characters the template cannot set (`unsettable`), naming the
    option and the characters: pdflatex would fail on them after the whole kit was written."""
    for option, texts in (("--title", [title] if title else []), ("--authors", authors or [])):
        bad = unsettable("".join(texts))
        if bad:
            more = f" and {len(bad) - 6} more" if len(bad) > 6 else ""
            shown = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in bad[:6]) + more
            raise ValueError(f"{option}: the paper's LaTeX template (pdflatex) cannot set {shown}: write it in "
                             "Latin-1 characters (Latin letters, with accents)")


def title_block(title: str | None, authors: list[str] | None, ieee: bool) -> str:
    """\\title and \\author; without authors a TODO stands in their place."""
    names = [tex_escape(a) for a in authors] if authors else [todo("authors and affiliations")]
    author = "\\and ".join(f"\\IEEEauthorblockN{{{n}}}" if ieee else n for n in names)
    return f"\\title{{{tex_escape(title) if title else DEFAULT_TITLE}}}\n\\author{{{author}}}\n\\maketitle"


def result_phrase(row: pd.Series, profile: Profile) -> str:
    """"a validation correlation score of 0.512 (0.498 $\\pm$ 0.012 over 3 prompt-grouped folds)"."""
    again = confirmed_parts(row)
    return (f"a validation {score_words(profile)} of {fixed(row['score'])}"
            + (f" ({again[0]} over {again[1]})" if again else ""))


def abstract(cfg: StudyConfig, profile: Profile, exp: Exported, row: pd.Series, completed: int, ieee: bool) -> str:
    """The abstract with the study's numbers; the test result is the team's to add."""
    data = dataset_title(cfg.dataset)[0]
    text = (f"Quality models for AI-generated images are usually large and start from pretrained weights. For "
            f"{challenge_title(profile)}, which asks for models trained from scratch under "
            f"{tex_int(profile.caps.params)} parameters, we search architectures and training recipes jointly: a "
            f"multi-objective study maximises the validation {score_words(profile)} while minimising the parameter "
            f"count, trains every candidate from scratch on a budget of estimated T4 seconds and stops hopeless "
            f"candidates early. On {data}, {plural(completed, 'trial')} completed; the exported model "
            f"({candidate_name(exp.candidate)}) has {tex_int(row['params'])} parameters and "
            f"{mflops(row['flops'])} MFLOPs per image and reaches {result_phrase(row, profile)}. "
            f"{todo('one sentence on the test-set result and the size tier')}")
    keywords = ", ".join(INDEX_TERMS)
    terms = (f"\\begin{{IEEEkeywords}}\n{keywords}\n\\end{{IEEEkeywords}}" if ieee
             else f"\\noindent\\textbf{{Index Terms}}---{keywords}")
    return f"\\begin{{abstract}}\n{text}\n\\end{{abstract}}\n{terms}"


def introduction(profile: Profile, compressed: bool) -> str:
    """Why the problem matters, the challenge's rules (from the profile) and the contributions."""
    points = {"test performance": profile.performance_points, "model size": profile.size_points_max,
              **profile.out_of_reach}
    ranking = ", ".join(f"{v:g} for {k}" for k, v in points.items())
    contributions = [
        "a search over architectures and training recipes together, every candidate trained from scratch on a "
        "budget of estimated T4 seconds, with validation split by prompt so that no prompt is seen in training "
        "and validation;",
        "a multi-objective selection of score against parameter count, with the challenge's size tiers drawn into "
        "the Pareto front;",
    ]
    if compressed:
        contributions.append("compression of the Pareto-optimal models by structural pruning, retraining the pruned "
                             "architectures from scratch;")
    contributions.append("a self-contained notebook that retrains the exported model on all labelled images within "
                         "the time limit.")
    items = "\n".join(f"\\item {c}" for c in contributions)
    return "\n".join([
        "\\section{Introduction}",
        "Text-to-image generators produce images of very uneven quality, and quality models that agree with "
        "human ratings are needed to filter and rank their outputs~\\cite{li2024agiqa3k}. "
        + todo("motivate why small models trained from scratch matter (deployment, cost)"),
        "",
        f"{challenge_title(profile)[0].upper()}{challenge_title(profile)[1:]}{challenge_cite(profile)} asks for "
        f"no-reference models of at most "
        f"{tex_int(profile.caps.params)} parameters, trained from scratch without pretrained weights or external "
        f"data, in a notebook that trains and predicts within {plural(round(profile.notebook_limit_s / 3600), 'hour')} "
        f"on an NVIDIA T4. Entries earn up to {sum(points.values()):g} points: {ranking}. Our contributions are",
        f"\\begin{{itemize}}\n{items}\n\\end{{itemize}}",
        todo("state the main finding in one sentence"),
    ])


def related_work() -> str:
    """Lightweight and classical IQA, AIGC IQA datasets, architecture search and pruning, with references."""
    return "\n".join([
        "\\section{Related Work}",
        "\\textbf{Lightweight and classical IQA.} Natural-scene-statistics models such as "
        "BRISQUE~\\cite{mittal2012brisque} and NIQE~\\cite{mittal2013niqe} describe an image by the statistics of "
        "its mean-subtracted contrast-normalised (MSCN) coefficients; our optional MSCN input channel follows them. "
        "CNNIQA~\\cite{kang2014cnniqa} learned quality with a shallow CNN on small patches. Efficient backbones "
        "build on inverted residual blocks~\\cite{sandler2018mobilenetv2} and compound "
        "scaling~\\cite{tan2019efficientnet}, and fragment sampling~\\cite{wu2022fastvqa} keeps native-resolution "
        "detail at low cost, as our patch inputs do. "
        "FineQA~\\cite{fineqa2026} trains a compact AIGC quality model from scratch. " + todo("position against them"),
        "",
        "\\textbf{AIGC IQA datasets.} AGIQA-1K~\\cite{zhang2023agiqa1k} holds 1{,}080 generated images with mean "
        "opinion scores; AGIQA-3K~\\cite{li2024agiqa3k} holds 2{,}982 images from six generators rated for perceptual "
        "quality and text alignment; AIGIQA-20K~\\cite{li2024aigiqa20k} extends the scale. "
        + todo("the quality models these papers benchmark, and their reliance on pretraining"),
        "",
        "\\textbf{Architecture search and pruning.} Neural architecture search~\\cite{elsken2019nas} automates the "
        "choice of search space, strategy and performance estimate; we use Optuna~\\cite{akiba2019optuna} with a "
        "multi-objective sampler and early stopping of weak trials. Structural pruning with dependency "
        "graphs~\\cite{fang2023depgraph} removes coupled channels together, and pruned architectures trained from "
        "scratch can match fine-tuned ones~\\cite{liu2019rethinking}, which a from-scratch challenge requires.",
    ])


def conclusion(profile: Profile, exp: Exported, row: pd.Series) -> str:
    """What was found, in the study's numbers; limits and future work are the team's to write."""
    return "\n".join([
        "\\section{Conclusion}",
        f"A multi-objective search trained from scratch found a model of {tex_int(row['params'])} parameters "
        f"({candidate_name(exp.candidate)}) with {result_phrase(row, profile)}, under the cap of "
        f"{tex_int(profile.caps.params)} parameters. "
        + todo("limitations (validation split, budget model) and future work"),
    ])

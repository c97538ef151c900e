"""LaTeX of the study's facts: `method.tex` (tables and text) and the `paper.tex` wrapper."""
from __future__ import annotations

import shutil
import subprocess

import optuna
import pandas as pd

from results.paper.ablations import Ablation, ablation_table
from results.paper.bib import dataset_title
from results.paper.experiments import comparison_table, ranking_table, retrain_text
from results.paper.facts import Exported, exported_row, front_trials, trial_counts, wall_hours
from results.paper.figures import FIGURES
from results.paper.fmt import (
    challenge_cite, challenge_title, fixed, mflops, plural, score_words, table, tex_escape, tex_int, tex_sci, todo,
)
from results.paper.sections import abstract, conclusion, introduction, related_work, title_block
from search.profiles import Profile, get_profile
from search.study import StudyConfig
from search.train.losses import LOSSES
from search.train.recipe import Recipe
from space import ArchSpec, count_flops, count_params, stage_sizes
from space.count import backbone_views, part_costs
from space.layers import BLOCK_FAMILIES
from space.spec import family, has_se

ACTIVATIONS = {"relu": "ReLU", "silu": "SiLU", "gelu": "GELU"}
POOL_NAMES = {"avg": "average pooling", "avgstd": "mean and std pooling", "attn": "attention pooling"}
SAMPLER_NAMES = {"tpe": "multivariate TPE", "nsga2": "NSGA-II", "random": "random sampling"}
PRECISIONS = {
    "auto": "mixed: fp16 autocast with loss scaling on a T4 (bf16 on GPUs of compute capability 8.0 or more, "
            "fp32 on a CPU)",
    "fp16": "fp16 autocast with loss scaling", "bf16": "bf16 autocast", "fp32": "fp32",
}
METRIC_FORMULAS = r"""\begin{align}
\mathrm{PLCC} &= \frac{\sum_i (\hat y_i-\bar{\hat y})(y_i-\bar y)}
  {\sqrt{\sum_i (\hat y_i-\bar{\hat y})^2}\sqrt{\sum_i (y_i-\bar y)^2}},\\
\mathrm{SRCC} &= \mathrm{PLCC}\bigl(\mathrm{rank}(\hat y),\mathrm{rank}(y)\bigr),\\
\mathrm{KRCC} &= \frac{N_c-N_d}{\sqrt{(N_0-T_{\hat y})(N_0-T_y)}},\\
\mathrm{RMSE} &= \sqrt{\tfrac{1}{N}\textstyle\sum_i (\hat y_i-y_i)^2},
\end{align}"""
VARIANT_KINDS = {
    "pruned": "Channels were pruned with the dependency graph of Torch-Pruning~\\cite{fang2023depgraph} to the "
              "requested parameter reduction (ratio), then fine-tuned.",
    "scratch": "Scratch variants train a pruned architecture from scratch with its trial's recipe.",
    "int8": "int8 variants store the weights as 8-bit integers (symmetric, per output channel).",
    "fp16": "fp16 variants store the weights in half precision.",
}
PATCH_POOLING = {
    "mean": "averages the patches' pooled features",
    "attn": "weights the patches' pooled features by a softmax over a learned linear score of each",
    "meanstd": "concatenates the mean and standard deviation of the patches' pooled features",
}
"""How the method text describes each `HeadSpec.patch_pool`."""


def _input_policy(spec: ArchSpec, eval_views: int) -> str:
    s, c, p = spec.input.resize, spec.input.crop, spec.input.patch
    mscn = "an MSCN (local-contrast-normalised) luminance channel is appended as a fourth input" if spec.input.mscn \
        else "RGB input only (no MSCN channel)"
    if spec.input.fragments:
        g, f = spec.input.fragments, spec.input.fragment
        return (f"images at ${s}\\times{s}$; the model cuts a ${g}\\times{g}$ grid of cells and one ${f}\\times{f}$ "
                f"fragment per cell (at random in its cell in training, at its centre at test) and splices them into "
                f"one ${g * f}\\times{g * f}$ view; {mscn}")
    if p:
        g, stream = spec.input.grid, spec.input.global_size
        glob = (f"; a second stream runs the same backbone on the whole image reduced to ${stream}\\times{stream}$ "
                "by area averaging and its features are concatenated" if stream else "")
        scales = "".join(f", also cut from the image reduced to ${r}\\times{r}$" for r in spec.input.test_scales)
        flip = ", each also mirrored" if spec.input.test_flip else ""
        return (f"images at ${s}\\times{s}$; the model cuts ${p}\\times{p}$ patches itself, "
                f"{spec.input.train_patches} at random per image per training step and a fixed ${g}\\times{g}$ "
                f"grid at test{scales}{flip}, and {PATCH_POOLING[spec.head.patch_pool]}{glob}; {mscn}")
    views = f"the centre ${c}\\times{c}$ crop" if eval_views == 1 else f"{eval_views} ${c}\\times{c}$ views"
    crop = f"trained on random ${c}\\times{c}$ crops and evaluated on {views}" if c < s \
        else "trained and evaluated on the whole image"
    return f"images resized to ${s}\\times{s}$, {crop}; {mscn}"


def _scored_views(spec: ArchSpec) -> str:
    return " + ".join(f"{n} $\\times$ ${size}\\times{size}$" if n > 1 else f"${size}\\times{size}$"
                      for size, n in backbone_views(spec))


def architecture_table(exp: Exported) -> str:
    """Table: per stage block, width, depth, kernel, expansion, SE, output size, parameters and FLOPs."""
    spec, parts = exp.recipe.spec, part_costs(exp.recipe.spec)
    sizes = stage_sizes(spec)
    stem_size = parts[0].out_sizes[0]  # at the first view, InputSpec.view
    stem_kind = f"{spec.stem.kind} stem" + ("" if spec.stem.kind == "conv" else f" ({spec.stem.kernel}-px patches)")
    rows = [f"Stem & {stem_kind} & {spec.stem.width} & 1 & {spec.stem.kernel} & -- & -- & ${stem_size}^2$ & "
            f"{tex_int(parts[0].params)} & {mflops(parts[0].flops)} \\\\"]
    for i, (stage, size, part) in enumerate(zip(spec.stages, sizes, parts[1:-1]), 1):
        traits = family(stage)
        kernel = str(stage.kernel) if traits.kernel else "--"
        expansion = ("h " + "/".join(map(str, stage.hidden)) if stage.hidden
                     else f"{stage.expansion:g}" if traits.expansion else "--")
        se = "yes" if has_se(stage) else "no" if traits.has_se else "--"
        rows.append(f"Stage {i} & {tex_escape(traits.title)} & {stage.width} & {stage.depth} & {kernel} & {expansion} "
                    f"& {se} & ${size}^2$ & {tex_int(part.params)} & {mflops(part.flops)} \\\\")
    head = spec.head
    regressor = f"MLP, {head.hidden} hidden" if head.hidden else "linear"
    stages = "the last stage" if head.fuse == 1 else f"the last {head.fuse} stages"
    rows.append(f"Head & \\multicolumn{{7}}{{l}}{{{POOL_NAMES[head.pool]} of {stages}, {regressor}}}"
                f" & {tex_int(parts[-1].params)} & {mflops(parts[-1].flops)} \\\\")
    rows.append(f"\\hline\nTotal & \\multicolumn{{7}}{{l}}{{}} & {tex_int(count_params(spec))} & "
                f"{mflops(count_flops(spec))} \\\\")
    caption = (f"Exported architecture (trial {exp.trial}). FLOPs per scored image ({_scored_views(spec)}), one "
               f"multiply-add counted as one FLOP; Exp.: expansion ratio (h: per-block hidden widths set by pruning); "
               f"Out: output feature map at the ${spec.input.view}\\times{spec.input.view}$ view."
               + (f" An ensemble of {spec.members} networks trained apart, their scores averaged: the rows are one "
                  "network, the total is all of them." if spec.members > 1 else ""))
    return table("tab:arch", caption, "llrrrrcrrr",
                 "Part & Block & Width & Depth & Kernel & Exp. & SE & Out & Params & MFLOPs", rows)


def _loss(weights: dict[str, float]) -> str:
    return " + ".join(("" if w == 1 else f"{w:g}$\\times$") + tex_escape(LOSSES[k].title if k in LOSSES else k)
                      for k, w in weights.items())


def recipe_rows(exp: Exported) -> dict[str, str]:
    """The training recipe as (setting, value) rows."""
    t, spec = exp.recipe.train, exp.recipe.spec
    augment = (f"random ${t.crop}\\times{t.crop}$ crops of the ${spec.input.resize}\\times{spec.input.resize}$ image"
               if t.crop and t.crop < spec.input.resize else
               f"random ${spec.input.patch}\\times{spec.input.patch}$ patches" if spec.input.patch else
               "fragments at random in their cells" if spec.input.fragments else "none (whole image)")
    augment += " + horizontal flips" if t.hflip else ""
    teacher = exp.recipe.teacher
    return {
        "Trained on": "all labelled images (final retrain)" if exp.retrained else "the training split of the search",
        "Loss": _loss(t.loss_weights),
        "Optimiser": f"AdamW, lr {tex_sci(t.lr)}, weight decay {tex_sci(t.weight_decay)}",
        "Schedule": f"linear warm-up over {plural(t.warmup_epochs, 'epoch')}, cosine decay to 0",
        "MOS epochs": str(t.epochs),
        "Pretraining epochs": str(t.pretrain_epochs),
        "Batch size": str(t.batch_size),
        "Augmentation": augment,
        "Gradient clipping": f"norm {t.grad_clip:g}" if t.grad_clip else "none",
        "EMA decay": f"{t.ema_decay:g}" if t.ema_decay else "none",
        "Distillation": "none" if teacher is None else
        (f"weight {t.distill_weight:g}, teacher "
         + (f"trial {exp.teacher_trial}'s architecture, " if exp.teacher_trial is not None else "")
         + f"{tex_int(count_params(teacher.spec))} params"),
        "Precision": PRECISIONS[t.precision],
        "Seed": str(t.seed),
    }


def search_rows(study: optuna.Study, cfg: StudyConfig, profile: Profile, front_size: int) -> dict[str, str]:
    """The search as (setting, value) rows."""
    data, key = dataset_title(cfg.dataset)
    data += f"~\\cite{{{key}}}" if key else ""
    if cfg.dataset == "synthetic":
        data += f", {tex_int(cfg.n_synthetic)} images"
    if cfg.targets:
        data += ", targets " + ", ".join(f"\\texttt{{{tex_escape(t)}}}" for t in cfg.targets)
    space = cfg.search_space()
    objectives = "max.\\ score, min.\\ parameters" + (", min.\\ FLOPs" if cfg.flops_objective else "")
    sampler = SAMPLER_NAMES[cfg.sampler] + "~\\cite{akiba2019optuna}"
    split = f"{cfg.val_fraction:.0%} of prompts, grouped by prompt"
    if cfg.test_fraction:
        split += f"; {cfg.test_fraction:.0%} held out as test"
    counts = trial_counts(study)
    patches = (f" or {'/'.join(str(p) for p in space.patches if p)} px patches of the {space.native} px image"
               if any(space.patches) else "")
    fragments = (f" or {'/'.join(f'{g}x{g}' for g in space.fragments if g)} grids of "
                 f"{'/'.join(map(str, space.fragment_sizes))} px fragments" if any(space.fragments) else "")
    blocks = ", ".join(tex_escape(BLOCK_FAMILIES[b].title) for b in space.blocks)
    flops_cap = f", {tex_int(profile.caps.flops)} FLOPs" if profile.caps.flops else ""
    return {
        "Dataset": data,
        "Validation": split.replace("%", r"\%"),
        "Parameter cap": tex_int(profile.caps.params) + flops_cap,
        "Search space": (f"\\texttt{{{tex_escape(cfg.space)}}} preset: inputs {'/'.join(map(str, space.resizes))} px"
                         f"{patches}{fragments}, {space.stages[0]}--{space.stages[1]} stages of {blocks}, widths "
                         f"{min(space.widths)}--{max(space.widths)}, depths {space.depths[0]}--{space.depths[1]}"),
        "Sampler": f"{sampler}; {objectives}",
        "Early stopping": (f"Pareto-aware rungs at {', '.join(f'{f:.0%}' for f in cfg.rung_fractions)} of the planned "
                           "epochs".replace("%", r"\%") if cfg.early_stop == "rungs" else tex_escape(cfg.early_stop)),
        "Budget per trial": f"{cfg.trial_budget_s:g} T4 s, at most {cfg.max_epochs} epochs",
        "Trials": " / ".join(str(v) for v in counts.values()) + " (" + " / ".join(counts) + ")",
        "Pareto-optimal trials": str(front_size),
        "Wall time": f"{wall_hours(study):.2f} h",
    }


def _rows_table(label: str, caption: str, rows: dict[str, str]) -> str:
    lines = [f"{k} & {v} \\\\" for k, v in rows.items()]
    return table(label, caption, "lp{0.62\\columnwidth}", "Setting & Value", lines)


def metrics_table(frame: pd.DataFrame, exp: Exported, profile: Profile) -> str:
    """Validation metrics of the Pareto-optimal trials and the exported one (marked)."""
    trials = frame[frame["kind"] == "trial"]
    shown = trials[trials["trial"].isin(set(front_trials(frame)["trial"]) | {exp.trial})]
    rows = []
    for _, r in shown.sort_values("params").iterrows():
        mark = "$^\\ast$" if r["trial"] == exp.trial else ""
        cells = [f"{int(r['trial'])}{mark}", tex_int(r["params"]), mflops(r["flops"])]
        cells += [fixed(r[m]) for m in ("plcc", "srcc", "krcc", "rmse", "score")]
        rows.append(" & ".join(cells) + " \\\\")
    caption = (f"Validation metrics of the Pareto-optimal trials ($^\\ast$: the exported architecture, trial "
               f"{exp.trial}) on the search's validation split; score: the {score_words(profile)}.")
    return table("tab:metrics", caption, "rrrrrrrr", "Trial & Params & MFLOPs & PLCC & SRCC & KRCC & RMSE & Score",
                 rows)


def compression_part(variants: pd.DataFrame | None) -> str:
    """The compressed variants as a table, or a sentence saying there are none."""
    if variants is None or variants.empty:
        return "No compressed variants were recorded for this study.\n"
    rows = []
    for _, v in variants.sort_values(["trial", "params"]).iterrows():
        ratio = f"{v['ratio']:g}" if pd.notna(v.get("ratio")) else "--"
        delta = fixed(v["d_score"], sign=True) if pd.notna(v.get("d_score")) else "--"
        rows.append(f"{tex_escape(v['id'])} & {tex_escape(v['kind'])} & {ratio} & {tex_int(v['params'])} & "
                    f"{tex_int(v['bytes'])} & {fixed(v['score'])} & {delta} \\\\")
    kinds = [text for kind, text in VARIANT_KINDS.items() if kind in set(variants["kind"])]
    text = " ".join(kinds) + " Table~\\ref{tab:compress} lists every variant measured on the validation split.\n\n"
    return text + table("tab:compress", "Compressed variants on the validation split ($\\Delta$: score change "
                        "against the parent).", "llrrrrr",
                        "Variant & Kind & Ratio & Params & Bytes & Score & $\\Delta$", rows)


def training_text(recipe: Recipe) -> str:
    """What the recipe does, in words; pretraining and distillation only when it uses them."""
    t = recipe.train
    text = "Training minimises the loss of Table~\\ref{tab:recipe} with AdamW, linear warm-up and cosine decay."
    if t.pretrain_epochs:
        text += (f" The first {t.pretrain_epochs} epochs are self-supervised: without labels, the model learns to "
                 "score each training crop above a mildly and a strongly degraded copy of itself ("
                 + ", ".join(map(tex_escape, t.pretrain_distortions)) + ").")
    if recipe.teacher is not None:
        text += (" A teacher network is first trained from scratch on the same data; the model then also regresses "
                 "the teacher's scores on the same crops.")
    return text


def figures_tex() -> str:
    """The figure floats (files written by `results.paper.figures`)."""
    return "\n".join(f"\\begin{{figure}}[!htb]\n\\centering\n"
                     f"\\includegraphics[width=\\columnwidth]{{figures/{stem}.pdf}}\n"
                     f"\\caption{{{caption}}}\n\\label{{fig:{stem}}}\n\\end{{figure}}" for stem, caption in FIGURES)


def ablations_part(ablations: list[Ablation]) -> str:
    """A subsection per benchmark file given, or a TODO naming what to run."""
    if not ablations:
        return ("\\subsection{Ablations}\n" + todo("ablations: run the quality and ladder benchmarks (bench/) and "
                                                    "pass their JSON files to the paper command") + "\n")
    refs = ", ".join(f"Table~\\ref{{tab:ablation{i}}}" for i in range(1, len(ablations) + 1))
    return "\n".join(["\\subsection{Ablations}",
                      f"Outside the search, fixed recipes isolate single choices ({refs}); every row is trained "
                      "from scratch on the same folds as its reference, so the paired gain cancels the folds' "
                      "difficulty. " + todo("interpret the ablations"), ""]
                     + [ablation_table(a, i) for i, a in enumerate(ablations, 1)])


def method_tex(study: optuna.Study, cfg: StudyConfig, exp: Exported, ranked: pd.DataFrame, frame: pd.DataFrame,
               variants: pd.DataFrame | None, ablations: list[Ablation]) -> str:
    """The LaTeX fragment: method and experiments sections of this study's facts. `ranked`: the ranking export
    takes from (`results.candidates.ranked_candidates`); `frame`: every candidate (`candidates_frame`)."""
    profile = get_profile(cfg.profile)
    front = front_trials(frame)
    formula = profile.formula or r"S = \text{" + tex_escape(profile.description) + "}"
    source = ("retrained from scratch by the export on all labelled images (Table~\\ref{tab:recipe})"
              if exp.retrained else "as trained in the search")
    return "\n".join([
        f"% Generated by results/paper from study {tex_escape(study.study_name)}: regenerate, do not edit.",
        "% Needs \\usepackage{graphicx}, \\usepackage{amsmath}, \\usepackage{array} and a \\todo command.",
        "\\section{Method}",
        f"Models are trained from scratch under the rules of {challenge_title(profile)}{challenge_cite(profile)}; no "
        "pretrained weights or external data are used. The architecture and its training recipe were found by a "
        f"multi-objective search with Optuna~\\cite{{akiba2019optuna}} in PyTorch~\\cite{{paszke2019pytorch}}.",
        "",
        "\\subsection{Architecture}",
        f"Table~\\ref{{tab:arch}} gives the exported model, trial {exp.trial} of the search, {source}. It takes "
        f"{_input_policy(exp.recipe.spec, exp.recipe.train.eval_views)}; its activation is "
        f"{ACTIVATIONS[exp.recipe.spec.act]}.",
        "",
        architecture_table(exp),
        "\\subsection{Training}",
        training_text(exp.recipe),
        "",
        _rows_table("tab:recipe", "Training recipe of the exported model.", recipe_rows(exp)),
        "\\subsection{Architecture search}",
        "Each trial samples an architecture within the cap and a recipe, trains it on a budget of estimated "
        "NVIDIA T4 seconds (turned into epochs from its FLOPs) and reports its validation score and parameter count "
        "(Table~\\ref{tab:search}).",
        "",
        _rows_table("tab:search", "The search.", search_rows(study, cfg, profile, len(front))),
        "\\subsection{Compression}",
        compression_part(variants),
        "\\section{Experiments}",
        "Predictions $\\hat y_i$ are compared with the mean opinion scores $y_i$ of the $N$ validation images:",
        METRIC_FORMULAS,
        "where $N_c$ and $N_d$ count concordant and discordant pairs, $N_0=N(N-1)/2$ and $T$ the pairs tied in "
        f"one variable (Kendall's $\\tau_b$). The {score_words(profile)} is",
        f"\\begin{{equation}}\n{formula}.\n\\end{{equation}}",
        "\\subsection{Search results}",
        f"Of the completed trials, {plural(len(front), 'trial')} {'is' if len(front) == 1 else 'are'} Pareto-optimal "
        "(Fig.~\\ref{fig:pareto}, Table~\\ref{tab:metrics}); Fig.~\\ref{fig:curves} shows the learning curves. "
        "Table~\\ref{tab:ranking} gives the ranking the export takes its model from.",
        "",
        figures_tex(),
        metrics_table(frame, exp, profile),
        ranking_table(ranked, exp, profile),
        ablations_part(ablations),
        "\\subsection{Final model}",
        retrain_text(exp, profile),
        "",
        "\\subsection{Published systems}",
        "Table~\\ref{tab:published} places the exported model beside published systems; their numbers come from "
        "other splits and are not a comparison on equal terms.",
        "",
        comparison_table(ranked, exp, cfg, profile),
    ])


def _installed(name: str) -> bool:
    """Whether TeX finds file `name` (e.g. IEEEtran.cls); False without kpsewhich."""
    if shutil.which("kpsewhich") is None:
        return False
    return bool(subprocess.run(["kpsewhich", name], capture_output=True, text=True).stdout.strip())


def paper_tex(cfg: StudyConfig, exp: Exported, ranked: pd.DataFrame, completed: int, compressed: bool,
              title: str | None = None, authors: list[str] | None = None) -> str:
    """The paper around `method.tex`: title block, abstract, Index Terms, introduction, related work,
    conclusion and references; IEEEtran if installed, else article. `completed`: the study's completed trials."""
    ieee = _installed("IEEEtran.cls")
    profile = get_profile(cfg.profile)
    row = exported_row(ranked, exp)
    return "\n".join([
        "\\documentclass[conference]{IEEEtran}" if ieee else "\\documentclass[10pt,twocolumn]{article}",
        "\\usepackage{graphicx}", "\\usepackage{amsmath}", "\\usepackage{array}", "\\usepackage{color}",
        "\\usepackage{url}",
        "\\newcommand{\\todo}[1]{\\textcolor{red}{[TODO: #1]}}",
        "\\begin{document}",
        title_block(title, authors, ieee),
        abstract(cfg, profile, exp, row, completed, ieee),
        introduction(profile, compressed),
        related_work(),
        "\\input{method}",
        conclusion(profile, exp, row),
        f"\\bibliographystyle{{{'IEEEtran' if _installed('IEEEtran.bst') else 'plain'}}}",
        "\\bibliography{refs}",
        "\\end{document}", "",
    ])

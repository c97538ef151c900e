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

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import optuna
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from optuna.trial import TrialState

from results.candidates import add_composite, candidates_frame, rank, trials_frame
from results.report import pareto_front
from results.score import tier_boundaries
from search.profiles import Profile, get_profile
from search.recipe import Recipe
from search.study import StudyConfig, TrialRecord, space_config
from space import ArchSpec, count_flops, count_params, stage_sizes
from space.layers import BLOCK_FAMILIES
from space.layers.conv import stem_flops, stem_out, stem_params
from space.spec import block_plan, has_se

BLOCK_NAMES = {"residual": "Residual", "mbconv": "MBConv", "convnext": "ConvNeXt", "attention": "Attention"}
ACTIVATIONS = {"relu": "ReLU", "silu": "SiLU", "gelu": "GELU"}
POOL_NAMES = {"avg": "average pooling", "avgstd": "mean and std pooling", "attn": "attention pooling"}
LOSS_NAMES = {"mse": "MSE", "plcc": "PLCC", "rank": "pairwise rank", "nin": "norm-in-norm"}
SAMPLER_NAMES = {"tpe": "multivariate TPE", "nsga2": "NSGA-II", "random": "random sampling"}
PRECISIONS = {
    "auto": "mixed: fp16 autocast with loss scaling on a T4 (bf16 on GPUs of compute capability 8.0 or more, "
            "fp32 on a CPU)",
    "fp16": "fp16 autocast with loss scaling", "bf16": "bf16 autocast", "fp32": "fp32",
}
DATASETS = {  # study dataset -> (name in the text, BibTeX key or None)
    "synthetic": ("the built-in synthetic AIGC-like set (procedural scenes with known distortions)", None),
    "agiqa3k": ("AGIQA-3K", "li2024agiqa3k"),
    "agiqa1k": ("AGIQA-1K", "zhang2023agiqa1k"),
    "aigiqa20k": ("AIGIQA-20K", "li2024aigiqa20k"),
}
SCORE_FORMULAS = {  # profile -> its score in LaTeX math
    "icme2026-aigc": r"S = \tfrac{1}{3}\bigl(\max(\mathrm{PLCC},0)+\max(\mathrm{SRCC},0)+\max(\mathrm{KRCC},0)\bigr)",
    "vquala2025-fiqa": r"S = \tfrac{1}{2}(\mathrm{SRCC}+\mathrm{PLCC})",
    "siqa-s": r"S = \tfrac{100}{D}\sum_{d=1}^{D}\max\bigl(\tfrac{1}{2}(\mathrm{SRCC}_d+\mathrm{PLCC}_d),0\bigr)",
    "ntire-pairwise": r"S = \text{share of MOS-ordered image pairs whose order the model predicts}",
    "aigiqa20k": r"S = \tfrac{1}{2}(\mathrm{SRCC}+\mathrm{PLCC}_{\text{logistic}})",
}
METRIC_FORMULAS = r"""\begin{align}
\mathrm{PLCC} &= \frac{\sum_i (\hat y_i-\bar{\hat y})(y_i-\bar y)}{\sqrt{\sum_i (\hat y_i-\bar{\hat y})^2}\sqrt{\sum_i (y_i-\bar y)^2}},\\
\mathrm{SRCC} &= \mathrm{PLCC}\bigl(\mathrm{rank}(\hat y),\mathrm{rank}(y)\bigr),\\
\mathrm{KRCC} &= \frac{N_c-N_d}{\sqrt{(N_0-T_{\hat y})(N_0-T_y)}},\\
\mathrm{RMSE} &= \sqrt{\tfrac{1}{N}\textstyle\sum_i (\hat y_i-y_i)^2},
\end{align}"""
BIB = {
    "li2024agiqa3k": """@article{li2024agiqa3k,
  author  = {Li, Chunyi and Zhang, Zicheng and Wu, Haoning and Sun, Wei and Min, Xiongkuo and Liu, Xiaohong and Zhai, Guangtao and Lin, Weisi},
  title   = {{AGIQA-3K}: An Open Database for {AI}-Generated Image Quality Assessment},
  journal = {IEEE Transactions on Circuits and Systems for Video Technology},
  volume  = {34},
  number  = {8},
  pages   = {6833--6846},
  year    = {2024},
  doi     = {10.1109/TCSVT.2023.3319020}
}""",
    "zhang2023agiqa1k": """@inproceedings{zhang2023agiqa1k,
  author    = {Zhang, Zicheng and Li, Chunyi and Sun, Wei and Liu, Xiaohong and Min, Xiongkuo and Zhai, Guangtao},
  title     = {A Perceptual Quality Assessment Exploration for {AIGC} Images},
  booktitle = {IEEE International Conference on Multimedia and Expo Workshops (ICMEW)},
  pages     = {440--445},
  year      = {2023}
}""",
    "li2024aigiqa20k": """@inproceedings{li2024aigiqa20k,
  author    = {Li, Chunyi and Kou, Tengchuan and Gao, Yixuan and Cao, Yuqin and Sun, Wei and Zhang, Zicheng and Zhou, Yingjie and Zhang, Zhichao and Zhang, Weixia and Wu, Haoning and others},
  title     = {{AIGIQA-20K}: A Large Database for {AI}-Generated Image Quality Assessment},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR) Workshops},
  pages     = {6327--6336},
  year      = {2024}
}""",
    "akiba2019optuna": """@inproceedings{akiba2019optuna,
  author    = {Akiba, Takuya and Sano, Shotaro and Yanase, Toshihiko and Ohta, Takeru and Koyama, Masanori},
  title     = {Optuna: A Next-generation Hyperparameter Optimization Framework},
  booktitle = {Proceedings of the 25th ACM SIGKDD International Conference on Knowledge Discovery \\& Data Mining},
  pages     = {2623--2631},
  year      = {2019},
  doi       = {10.1145/3292500.3330701}
}""",
    "fang2023depgraph": """@inproceedings{fang2023depgraph,
  author    = {Fang, Gongfan and Ma, Xinyin and Song, Mingli and Mi, Michael Bi and Wang, Xinchao},
  title     = {{DepGraph}: Towards Any Structural Pruning},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {16091--16101},
  year      = {2023}
}""",
    "paszke2019pytorch": """@inproceedings{paszke2019pytorch,
  author    = {Paszke, Adam and Gross, Sam and Massa, Francisco and Lerer, Adam and Bradbury, James and Chanan, Gregory and Killeen, Trevor and Lin, Zeming and Gimelshein, Natalia and Antiga, Luca and Desmaison, Alban and K{\\"o}pf, Andreas and Yang, Edward and DeVito, Zachary and Raison, Martin and Tejani, Alykhan and Chilamkurthy, Sasank and Steiner, Benoit and Fang, Lu and Bai, Junjie and Chintala, Soumith},
  title     = {{PyTorch}: An Imperative Style, High-Performance Deep Learning Library},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  volume    = {32},
  pages     = {8024--8035},
  year      = {2019}
}""",
    "icme2026challenge": """@misc{icme2026challenge,
  title        = {{ICME} 2026 Grand Challenge on Lightweight Neural Networks for {AIGC} Image Quality Assessment},
  howpublished = {IEEE International Conference on Multimedia and Expo (ICME) Grand Challenge},
  year         = {2026}
}""",
}
ALWAYS_CITED = ("li2024agiqa3k", "akiba2019optuna", "fang2023depgraph", "paszke2019pytorch", "icme2026challenge")
VARIANT_KINDS = {
    "pruned": "Channels were pruned with the dependency graph of Torch-Pruning~\\cite{fang2023depgraph} to the "
              "requested parameter reduction (ratio), then fine-tuned.",
    "scratch": "Scratch variants train a pruned architecture from scratch with its trial's recipe.",
    "int8": "int8 variants store the weights as 8-bit integers (symmetric, per output channel).",
    "fp16": "fp16 variants store the weights in half precision.",
}
SCATTER_STYLES = {  # (kind, state) -> (legend label, marker, colour) in the Pareto figure
    ("trial", "COMPLETE"): ("trial", "o", "#1f77b4"), ("trial", "PRUNED"): ("stopped early", "x", "#aaaaaa"),
    ("scratch", "COMPLETE"): ("pruned spec, from scratch", "*", "#2ca02c"),
    ("pruned", "COMPLETE"): ("pruned + fine-tuned", "D", "#d62728"),
    ("int8", "COMPLETE"): ("int8 weights", "s", "#9467bd"), ("fp16", "COMPLETE"): ("fp16 weights", "^", "#8c564b"),
}
FIGURES = (  # (file stem, caption)
    ("pareto", "Validation score against parameters (log axis) of every trial and compressed variant; the line "
               "is the Pareto front, the ring the exported model, dotted lines the size-tier boundaries of the "
               "reference distribution."),
    ("curves", "Validation score per epoch of every trial (dotted: stopped early; bold: the exported model)."),
)
_TEX_SPECIAL = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#",
                "^": r"\^{}", "_": r"\_", "%": r"\%", "~": r"\textasciitilde{}"}


def tex_escape(text: object) -> str:
    """`text` as literal LaTeX text (data such as study names and ids may hold `_`, `%`, `&`...)."""
    return "".join(_TEX_SPECIAL.get(c, c) for c in str(text))


def tex_int(n: int) -> str:
    """An integer with thousands separators, e.g. 12{,}345 (pdftotext reads it back as 12,345)."""
    return f"{int(n):,}".replace(",", "{,}")


def tex_sci(x: float) -> str:
    """A float in scientific notation, e.g. $1.23\\times 10^{-3}$."""
    mantissa, exponent = f"{x:.2e}".split("e")
    return rf"${mantissa}\times 10^{{{int(exponent)}}}$"


@dataclass(frozen=True)
class Exported:
    """The model the paper describes: a trial and the recipe that trains it."""

    trial: int
    recipe: Recipe
    retrained: bool
    """True: the recipe export retrained (from `export/export.json`); False: the trial's search recipe."""
    teacher_trial: int | None = None
    """The trial whose architecture taught the exported model (export's `--teacher`), if any."""


def exported_model(study: optuna.Study, profile: Profile, run_dir: Path) -> Exported:
    """The trial in `run_dir/export/export.json` with its recipe, else the report's first-ranked trial."""
    path = Path(run_dir) / "export" / "export.json"
    if path.exists():
        data = json.loads(path.read_text())
        if data.get("study", study.study_name) != study.study_name:
            raise ValueError(f"{path} exports study {data['study']!r}, not {study.study_name!r}")
        if "recipe" not in data:
            raise ValueError(f"{path} holds no recipe: rerun `run_search.py export`")
        number = data.get("trial")
        if not (isinstance(number, int) and 0 <= number < len(study.trials)
                and study.trials[number].state == TrialState.COMPLETE):
            raise ValueError(f"{path} names trial {number!r}, not a completed trial of study {study.study_name!r}")
        teacher = (data.get("teacher") or {}).get("trial")
        return Exported(number, Recipe.from_dict(data["recipe"]), True, teacher)
    ranked = rank(add_composite(trials_frame(study, profile), profile))
    if ranked.empty:
        raise ValueError(f"study {study.study_name!r} has no completed trial within the caps to describe")
    number = int(ranked.iloc[0]["trial"])
    return Exported(number, TrialRecord.from_trial(study.trials[number]).recipe, False)


@dataclass(frozen=True)
class PartCost:
    """Exact parameters and FLOPs of one part of the model (stem, a stage, the head)."""

    name: str
    params: int
    flops: int


def part_costs(spec: ArchSpec) -> list[PartCost]:
    """Parameters and FLOPs (at the spec's crop) of the stem, each stage and the head (pooling and
    regressor: the rest); they add up to `count_params` and `count_flops`."""
    size, mscn = spec.input.crop, spec.input.mscn
    parts = [PartCost("stem", stem_params(spec.stem.kind, spec.stem.width, spec.stem.kernel, mscn),
                      stem_flops(spec.stem.kind, spec.stem.width, spec.stem.kernel, size, mscn))]
    x = stem_out(spec.stem.kind, spec.stem.kernel, size)
    for i, blocks in enumerate(block_plan(spec), 1):
        params = flops = 0
        for b in blocks:
            _, params_fn, flops_fn = BLOCK_FAMILIES[b.block]
            params += params_fn(b.cin, b.cout, b.stride, b.kernel, b.hidden, b.se_hidden)
            f, x = flops_fn(b.cin, b.cout, b.stride, b.kernel, b.hidden, b.se_hidden, x)
            flops += f
        parts.append(PartCost(f"stage {i}", params, flops))
    parts.append(PartCost("head", count_params(spec) - sum(p.params for p in parts),
                          count_flops(spec) - sum(p.flops for p in parts)))
    return parts


def _mflops(flops: int) -> str:
    return f"{flops / 1e6:.2f}"


def _table(label: str, caption: str, columns: str, header: str, rows: list[str]) -> str:
    """A one-column float, scaled to the column width."""
    body = "\n".join(rows)
    return (f"\\begin{{table}}[t]\n\\centering\n\\caption{{{caption}}}\n\\label{{{label}}}\n"
            f"\\resizebox{{\\columnwidth}}{{!}}{{%\n\\begin{{tabular}}{{{columns}}}\n"
            f"\\hline\n{header} \\\\\n\\hline\n{body}\n\\hline\n\\end{{tabular}}}}\n\\end{{table}}\n")


def _input_policy(spec: ArchSpec, eval_views: int) -> str:
    s, c = spec.input.resize, spec.input.crop
    views = f"the centre ${c}\\times{c}$ crop" if eval_views == 1 else f"{eval_views} ${c}\\times{c}$ views"
    crop = f"trained on random ${c}\\times{c}$ crops and evaluated on {views}" if c < s \
        else "trained and evaluated on the whole image"
    mscn = "an MSCN (local-contrast-normalised) luminance channel is appended as a fourth input" if spec.input.mscn \
        else "RGB input only (no MSCN channel)"
    return f"images resized to ${s}\\times{s}$, {crop}; {mscn}"


def architecture_table(exp: Exported) -> str:
    """Table: per stage block, width, depth, kernel, expansion, SE, output size, parameters and FLOPs."""
    spec, parts = exp.recipe.spec, part_costs(exp.recipe.spec)
    sizes = stage_sizes(spec)
    stem_size = stem_out(spec.stem.kind, spec.stem.kernel, spec.input.crop)
    stem_kind = f"{spec.stem.kind} stem" + ("" if spec.stem.kind == "conv" else f" ({spec.stem.kernel}-px patches)")
    rows = [f"Stem & {stem_kind} & {spec.stem.width} & 1 & {spec.stem.kernel} & -- & -- & ${stem_size}^2$ & "
            f"{tex_int(parts[0].params)} & {_mflops(parts[0].flops)} \\\\"]
    for i, (stage, size, part) in enumerate(zip(spec.stages, sizes, parts[1:-1]), 1):
        kernel = "--" if stage.block == "attention" else str(stage.kernel)
        expansion = ("--" if stage.block == "residual" and not stage.hidden
                     else "h " + "/".join(map(str, stage.hidden)) if stage.hidden else f"{stage.expansion:g}")
        se = "yes" if has_se(stage) else "no" if stage.block in ("residual", "mbconv") else "--"
        rows.append(f"Stage {i} & {BLOCK_NAMES[stage.block]} & {stage.width} & {stage.depth} & {kernel} & {expansion} "
                    f"& {se} & ${size}^2$ & {tex_int(part.params)} & {_mflops(part.flops)} \\\\")
    head = spec.head
    regressor = f"MLP, {head.hidden} hidden" if head.hidden else "linear"
    rows.append(f"Head & \\multicolumn{{7}}{{l}}{{{POOL_NAMES[head.pool]} of the last {head.fuse} stage(s), {regressor}}}"
                f" & {tex_int(parts[-1].params)} & {_mflops(parts[-1].flops)} \\\\")
    rows.append(f"\\hline\nTotal & \\multicolumn{{7}}{{l}}{{}} & {tex_int(count_params(spec))} & "
                f"{_mflops(count_flops(spec))} \\\\")
    caption = (f"Exported architecture (trial {exp.trial}): {_input_policy(spec, exp.recipe.train.eval_views)}; "
               f"activation {ACTIVATIONS[spec.act]}. FLOPs per image at the ${spec.input.crop}\\times{spec.input.crop}$ "
               "input, one multiply-add counted as one FLOP; Exp.: expansion ratio (h: per-block hidden widths set "
               "by pruning); Out: output feature map.")
    return _table("tab:arch", caption, "llrrrrcrrr",
                  "Part & Block & Width & Depth & Kernel & Exp. & SE & Out & Params & MFLOPs", rows)


def _loss(weights: dict[str, float]) -> str:
    return " + ".join(("" if w == 1 else f"{w:g}$\\times$") + LOSS_NAMES.get(k, tex_escape(k)) for k, w in weights.items())


def recipe_rows(exp: Exported) -> dict[str, str]:
    """The training recipe as (setting, value) rows."""
    t, spec = exp.recipe.train, exp.recipe.spec
    augment = (f"random ${t.crop}\\times{t.crop}$ crops of the ${spec.input.resize}\\times{spec.input.resize}$ image"
               if t.crop and t.crop < spec.input.resize else "none (whole image)")
    augment += " + horizontal flips" if t.hflip else ""
    teacher = exp.recipe.teacher
    return {
        "Trained on": "all labelled images (final retrain)" if exp.retrained else "the training split of the search",
        "Loss": _loss(t.loss_weights),
        "Optimiser": f"AdamW, lr {tex_sci(t.lr)}, weight decay {tex_sci(t.weight_decay)}",
        "Schedule": f"linear warm-up over {t.warmup_epochs:g} epoch(s), cosine decay to 0",
        "MOS epochs": str(t.epochs),
        "Pretraining epochs": str(t.pretrain_epochs),
        "Batch size": str(t.batch_size),
        "Augmentation": augment,
        "Gradient clipping": f"norm {t.grad_clip:g}" if t.grad_clip else "none",
        "EMA decay": f"{t.ema_decay:g}" if t.ema_decay else "none",
        "Distillation": "none" if teacher is None else
        (f"weight {t.distill_weight:g}, teacher " + (f"trial {exp.teacher_trial}'s architecture, " if exp.teacher_trial
                                                      is not None else "") + f"{tex_int(count_params(teacher.spec))} params"),
        "Precision": PRECISIONS[t.precision],
        "Seed": str(t.seed),
    }


def trial_counts(study: optuna.Study) -> dict[str, int]:
    """Trials by outcome: completed, stopped early, other pruned (over the caps, diverged, duplicates), failed."""
    counts = dict.fromkeys(("completed", "stopped early", "other pruned", "failed"), 0)
    for r in map(TrialRecord.from_trial, study.get_trials(deepcopy=False)):
        if r.state == TrialState.COMPLETE:
            counts["completed"] += 1
        elif r.state == TrialState.PRUNED:
            counts["stopped early" if r.stopped_early else "other pruned"] += 1
        elif r.state == TrialState.FAIL:
            counts["failed"] += 1
    return counts


def wall_hours(study: optuna.Study) -> float:
    """Hours from the first trial's start to the last trial's end (idle time between resumes included)."""
    trials = study.get_trials(deepcopy=False)
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    return (max(ends) - min(starts)).total_seconds() / 3600 if starts and ends else 0.0


def search_rows(study: optuna.Study, cfg: StudyConfig, profile: Profile, front_size: int) -> dict[str, str]:
    """The search as (setting, value) rows."""
    name, key = DATASETS.get(cfg.dataset, (cfg.dataset, None))  # a dataset added later: named, not cited
    data = tex_escape(name) + (f"~\\cite{{{key}}}" if key else "")
    if cfg.dataset == "synthetic":
        data += f", {tex_int(cfg.n_synthetic)} images"
    if cfg.targets:
        data += ", targets " + ", ".join(f"\\texttt{{{tex_escape(t)}}}" for t in cfg.targets)
    space = space_config(cfg.space)
    objectives = "max.\\ score, min.\\ parameters" + (", min.\\ FLOPs" if cfg.flops_objective else "")
    sampler = SAMPLER_NAMES[cfg.sampler] + "~\\cite{akiba2019optuna}"
    split = f"{cfg.val_fraction:.0%} of prompts, grouped by prompt"
    if cfg.test_fraction:
        split += f"; {cfg.test_fraction:.0%} held out as test"
    counts = trial_counts(study)
    return {
        "Dataset": data,
        "Validation": split.replace("%", r"\%"),
        "Parameter cap": tex_int(profile.caps.params) + (f", {tex_int(profile.caps.flops)} FLOPs" if profile.caps.flops else ""),
        "Search space": (f"\\texttt{{{tex_escape(cfg.space)}}} preset: inputs {'/'.join(map(str, space.resizes))} px, "
                         f"{space.stages[0]}--{space.stages[1]} stages of "
                         f"{', '.join(BLOCK_NAMES[b] for b in space.blocks)}, widths {min(space.widths)}--"
                         f"{max(space.widths)}, depths {space.depths[0]}--{space.depths[1]}"),
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
    return _table(label, caption, "lp{0.62\\columnwidth}", "Setting & Value", lines)


def metrics_table(front: pd.DataFrame, frame: pd.DataFrame, exp: Exported, profile: Profile) -> str:
    """Validation metrics of the Pareto-optimal trials and the exported one (marked)."""
    trials = frame[frame["kind"] == "trial"]
    shown = trials[trials["trial"].isin(set(front.loc[front["kind"] == "trial", "trial"]) | {exp.trial})]
    rows = []
    for _, r in shown.sort_values("params").iterrows():
        mark = "$^\\ast$" if r["trial"] == exp.trial else ""
        cells = [f"{int(r['trial'])}{mark}", tex_int(r["params"]), _mflops(r["flops"])]
        cells += [f"{r[m]:.3f}" for m in ("plcc", "srcc", "krcc", "rmse")] + [f"{r['score']:.3f}"]
        rows.append(" & ".join(cells) + " \\\\")
    caption = (f"Validation metrics of the Pareto-optimal trials ($^\\ast$: the exported model, trial {exp.trial}) "
               f"on the search's validation split; score: {tex_escape(profile.score_name)}.")
    return _table("tab:metrics", caption, "rrrrrrrr", "Trial & Params & MFLOPs & PLCC & SRCC & KRCC & RMSE & Score", rows)


def compression_part(variants: pd.DataFrame | None) -> str:
    """The compressed variants as a table, or a sentence saying there are none."""
    if variants is None or variants.empty:
        return "No compressed variants were recorded for this study.\n"
    rows = []
    for _, v in variants.sort_values(["trial", "params"]).iterrows():
        ratio = f"{v['ratio']:g}" if pd.notna(v.get("ratio")) else "--"
        delta = f"{v['d_score']:+.3f}" if pd.notna(v.get("d_score")) else "--"
        rows.append(f"{tex_escape(v['id'])} & {tex_escape(v['kind'])} & {ratio} & {tex_int(v['params'])} & "
                    f"{tex_int(v['bytes'])} & {v['score']:.3f} & {delta} \\\\")
    kinds = [text for kind, text in VARIANT_KINDS.items() if kind in set(variants["kind"])]
    text = " ".join(kinds) + " Table~\\ref{tab:compress} lists every variant measured on the validation split.\n\n"
    return text + _table("tab:compress", "Compressed variants on the validation split ($\\Delta$: score change "
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


def method_tex(study: optuna.Study, cfg: StudyConfig, exp: Exported, frame: pd.DataFrame,
               variants: pd.DataFrame | None) -> str:
    """The LaTeX fragment: method and experiments sections of this study's facts."""
    profile = get_profile(cfg.profile)
    front = pareto_front(frame)
    challenge = "~\\cite{icme2026challenge}" if profile.name == "icme2026-aigc" else ""
    formula = SCORE_FORMULAS.get(profile.name, r"S = \text{" + tex_escape(profile.description) + "}")
    source = ("retrained from scratch by the export on all labelled images (Table~\\ref{tab:recipe})"
              if exp.retrained else "as trained in the search")
    return "\n".join([
        f"% Generated by results/paper.py from study {tex_escape(study.study_name)}: regenerate, do not edit.",
        "% Needs \\usepackage{graphicx} and \\usepackage{amsmath}.",
        "\\section{Method}",
        f"Models are trained from scratch under the {tex_escape(profile.name)} rules{challenge}; no pretrained "
        "weights or external data are used. The architecture and its training recipe were found by a "
        f"multi-objective search with Optuna~\\cite{{akiba2019optuna}} in PyTorch~\\cite{{paszke2019pytorch}}.",
        "",
        "\\subsection{Architecture}",
        f"Table~\\ref{{tab:arch}} gives the exported model, trial {exp.trial} of the search, {source}.",
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
        "one variable (Kendall's $\\tau_b$). The challenge score is",
        f"\\begin{{equation}}\n{formula}.\n\\end{{equation}}",
        "Table~\\ref{tab:metrics} reports them for the Pareto-optimal trials.",
        "",
        metrics_table(front, frame, exp, profile),
    ])


def pareto_plot(frame: pd.DataFrame, profile: Profile, exp: Exported) -> Figure:
    """Score against parameters (log axis): every candidate, the Pareto front, the size-tier boundaries."""
    fig = Figure(figsize=(3.5, 2.5))
    ax = fig.subplots()
    shown = frame[frame["params"].notna() & frame["score"].notna()]
    for (kind, state), group in shown.groupby(["kind", "state"]):
        label, marker, color = SCATTER_STYLES.get((kind, state), (f"{kind}, {state.lower()}", "P", "#7f7f7f"))
        ax.scatter(group["params"], group["score"], marker=marker, color=color, s=16, label=label, zorder=3)
    front = pareto_front(frame)
    if len(front):
        ax.step(front["params"], front["score"], where="post", color="#ff7f0e", lw=1.2, label="Pareto front", zorder=2)
    chosen = shown[(shown["kind"] == "trial") & (shown["trial"] == exp.trial)]
    ax.scatter(chosen["params"], chosen["score"], s=90, facecolors="none", edgecolors="black", lw=1.2,
               label=f"exported (trial {exp.trial})", zorder=4)
    for i, (bound, params) in enumerate(tier_boundaries(profile) if profile.size_tiers else []):
        ax.axvline(params, color="#2ca02c", ls=":", lw=0.9)
        ax.text(params, 0.98 - 0.12 * (i % 2), f"{bound:.0%}", transform=ax.get_xaxis_transform(), ha="right",
                va="top", fontsize=6, color="#2ca02c")  # alternate heights: neighbouring boundaries lie close
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel(f"validation {profile.score_name}")
    ax.legend(fontsize=6, loc="lower right")
    return fig


def curves_plot(frame: pd.DataFrame, profile: Profile, exp: Exported) -> Figure:
    """Validation score per epoch of every trial; the exported one bold."""
    fig = Figure(figsize=(3.5, 2.3))
    ax = fig.subplots()
    for _, r in frame[frame["kind"] == "trial"].iterrows():
        curve = r["curve"] or []
        if curve:
            bold = r["trial"] == exp.trial
            ax.plot(range(1, len(curve) + 1), curve, ls=":" if r["state"] == "PRUNED" else "-",
                    lw=2.0 if bold else 0.8, color="black" if bold else None, alpha=1.0 if bold else 0.7,
                    label=f"trial {exp.trial} (exported)" if bold else None)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {profile.score_name}")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6)
    return fig


def write_figures(frame: pd.DataFrame, profile: Profile, exp: Exported, out_dir: Path) -> list[Path]:
    """The Pareto front and learning curves as PDF (fonts embedded as TrueType, as IEEE asks) and PNG."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    with matplotlib.rc_context({"pdf.fonttype": 42, "font.size": 8}):
        for (stem, _), fig in zip(FIGURES, (pareto_plot(frame, profile, exp), curves_plot(frame, profile, exp))):
            fig.tight_layout()
            for suffix, extra in ((".pdf", {}), (".png", {"dpi": 200})):
                fig.savefig(out_dir / f"{stem}{suffix}", **extra)
                paths.append(out_dir / f"{stem}{suffix}")
    return paths


def refs_bib(dataset: str) -> str:
    """The BibTeX entries of what the study used: AGIQA-3K, its own dataset, Optuna, PyTorch, Torch-Pruning,
    the challenge."""
    key = DATASETS.get(dataset, (dataset, None))[1]
    keys = list(ALWAYS_CITED) + ([key] if key and key not in ALWAYS_CITED else [])
    return "\n\n".join(BIB[k] for k in keys) + "\n"


def _installed(name: str) -> bool:
    """Whether TeX finds file `name` (e.g. IEEEtran.cls); False without kpsewhich."""
    if shutil.which("kpsewhich") is None:
        return False
    return bool(subprocess.run(["kpsewhich", name], capture_output=True, text=True).stdout.strip())


def paper_tex(study_name: str) -> str:
    """A compilable wrapper around `method.tex` and the figures: IEEEtran if installed, else article."""
    ieee = _installed("IEEEtran.cls")
    figures = "\n".join(f"\\begin{{figure}}[t]\n\\centering\n\\includegraphics[width=\\columnwidth]{{figures/{stem}.pdf}}\n"
                        f"\\caption{{{caption}}}\n\\label{{fig:{stem}}}\n\\end{{figure}}" for stem, caption in FIGURES)
    return "\n".join([
        "\\documentclass[conference]{IEEEtran}" if ieee else "\\documentclass[10pt,twocolumn]{article}",
        "\\usepackage{graphicx}", "\\usepackage{amsmath}",
        "\\begin{document}",
        f"\\title{{Study {tex_escape(study_name)}: generated method and results}}",
        "\\author{\\IEEEauthorblockN{Anonymous}}" if ieee else "\\author{Anonymous}",
        "\\maketitle",
        "\\input{method}",
        figures,
        f"\\bibliographystyle{{{'IEEEtran' if _installed('IEEEtran.bst') else 'plain'}}}",
        "\\bibliography{refs}",
        "\\end{document}", "",
    ])


def write_paper_kit(study: optuna.Study, cfg: StudyConfig, run_dir: Path, variants: pd.DataFrame | None = None) -> Path:
    """Write method.tex, figures/, refs.bib and paper.tex under `run_dir/paper`; return that folder.
    `variants`: the study's compressed variants (`compress.variants.VariantStore(...).frame()`)."""
    profile = get_profile(cfg.profile)
    exp = exported_model(study, profile, run_dir)
    frame = candidates_frame(study, profile, variants)
    out = Path(run_dir) / "paper"
    write_figures(frame, profile, exp, out / "figures")
    (out / "method.tex").write_text(method_tex(study, cfg, exp, frame, variants))
    (out / "refs.bib").write_text(refs_bib(cfg.dataset))
    (out / "paper.tex").write_text(paper_tex(study.study_name))
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

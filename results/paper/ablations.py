"""Ablations from the benchmarks' `--out` JSON: `bench/quality.py` (one idea at a time on a plain CNN)
and `bench/ladder.py` (input policies: whole image, patches, global stream), each a list of per-fold runs."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from results.paper.bib import dataset_title
from results.paper.fmt import WRAPPED, fixed, table, tex_escape, tex_int

BENCHES = {  # bench -> (what its rows vary, in prose)
    "quality": "one idea at a time on top of a plain residual CNN",
    "ladder": "input policies (the whole resized image against native-resolution patches, a global stream and "
              "fragments), pooling over patches, width and distillation",
}


@dataclass(frozen=True)
class AblationRow:
    """One recipe of a bench: its score over the folds it ran and its paired gain over the reference."""

    name: str
    params: int
    scores: tuple[float, ...]
    gains: tuple[float, ...]
    """Score minus the reference's on each fold both ran (empty for the reference itself)."""

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores))

    @property
    def sd(self) -> float:
        return float(np.std(self.scores, ddof=1)) if len(self.scores) > 1 else 0.0


@dataclass(frozen=True)
class Ablation:
    """One bench's runs: the reference row first, then the others by mean paired gain, best first."""

    bench: str
    dataset: str
    folds: int
    rows: tuple[AblationRow, ...]
    length: str
    """How long each run trained, e.g. "300 CPU seconds (one thread)", "60 GPU seconds" or "2 epochs": two
    lengths of one bench are two tables, told apart by it."""


def _reference(bench: str, names: list[str]) -> str:
    """The row the bench compares against: the plain CNN (quality) or the search blocks on the whole image
    (ladder)."""
    found = [n for n in names if n == "plain CNN"] if bench == "quality" else \
        [n for n in names if n.startswith("search blocks") and "whole image" in n and ", seed" not in n]
    if not found:
        raise ValueError(f"the {bench} bench's runs hold no reference row (have {names})")
    return found[0]


def read_ablation(path: Path) -> Ablation:
    """Read one bench's `--out` JSON; ValueError naming the file when it is neither bench's."""
    try:
        runs = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read ablation file {path}: {err}") from None
    needed = {"recipe", "fold", "corr_score", "params"}
    if not (isinstance(runs, list) and runs and all(needed <= set(r) for r in runs)):
        raise ValueError(f"{path} is not the --out JSON of bench/quality.py or bench/ladder.py")
    bench = "ladder" if {"step_cpu_s", "step_gpu_s"} & set(runs[0]) else "quality"
    names = list(dict.fromkeys(r["recipe"] for r in runs))
    reference = _reference(bench, names)
    base = {r["fold"]: r["corr_score"] for r in runs if r["recipe"] == reference}
    rows = []
    for name in names:
        mine = sorted((r for r in runs if r["recipe"] == name), key=lambda r: r["fold"])
        gains = () if name == reference else tuple(r["corr_score"] - base[r["fold"]] for r in mine if r["fold"] in base)
        rows.append(AblationRow(name, int(mine[0]["params"]), tuple(r["corr_score"] for r in mine), gains))
    rows.sort(key=lambda r: (r.name != reference, -np.mean(r.gains) if r.gains else 0.0))
    setup = runs[0].get("setup", {})
    length = (f"{setup['cpu_s']:g} CPU seconds (one thread)" if "cpu_s" in setup else
              f"{setup['gpu_s']:g} GPU seconds" if "gpu_s" in setup else
              f"{setup['epochs']} epochs" if "epochs" in setup else "an unrecorded length")
    return Ablation(bench, setup.get("dataset", "unknown"), int(setup.get("folds", len(base))), tuple(rows), length)


def ablation_table(ablation: Ablation, index: int) -> str:
    """The bench's rows: parameters, score mean +- sd over folds, paired gain over the reference and folds won."""
    lines = []
    for r in ablation.rows:
        if r.gains:
            gain = np.array(r.gains)
            gain_sd = fixed(gain.std(ddof=1)) if len(gain) > 1 else "--"
            cells = f"{fixed(gain.mean(), sign=True)} $\\pm$ {gain_sd} & {int((gain > 0).sum())}/{len(gain)}"
        else:
            cells = "reference & --"
        lines.append(f"{tex_escape(r.name)} & {tex_int(r.params)} & {len(r.scores)} & {fixed(r.mean)} $\\pm$ "
                     f"{fixed(r.sd)} & {cells} \\\\")
    data = dataset_title(ablation.dataset)[0]
    caption = (f"Ablation on {data}, prompt-grouped {ablation.folds}-fold cross-validation: "
               f"{BENCHES[ablation.bench]}; each run trained for {ablation.length}. Score: correlation score, mean "
               "$\\pm$ sd over folds; gain: paired difference from the reference; won: folds on which the row "
               "beats it.")
    return table(f"tab:ablation{index}", caption, WRAPPED + "rrrrr",
                 "Recipe & Params & Folds & Score & Gain & Won", lines)

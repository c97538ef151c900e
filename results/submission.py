"""What the submission notebook runs: read the data, plan against the clock, retrain, save, reload, predict.

The notebook includes this module from source (`results.notebook`) and calls `run_submission` (MOS) or
`run_pair_submission` (preference pairs); the tests call them directly. Every image in the test folder
is predicted; test labels are optional and only score the images they name. A pairs notebook trains
from a CSV of preference pairs and writes the chosen image of every test pair. The plan is measured on the machine the notebook runs on, and a
guard on the clock stops training early when the plan was wrong, so that the weights are still
saved, reloaded and used for `predictions.csv` before the deadline.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from search.checkpoint import load_checkpoint, save_checkpoint
from search.data.decode import decode_image, list_images
from search.data.imageset import ImageSet
from search.data.pairs import PAIR_COLUMNS, PairSet, read_pairs
from search.memory import check_host_memory
from search.metrics import iqa_metrics
from search.train.pairs import PREFERENCE, choices_frame
from search.train.recipe import Recipe
from search.train.retrain import Deadline, RetrainPlan, measure_costs, plan_retrain, planned, retrain
from search.train.loop import TrainResult, predict

SAVE_RESERVE_S = 30.0
"""Seconds kept, beyond twice the measured scoring time, for saving and reloading the weights (at most
5 % of the deadline, for short test deadlines)."""


@dataclass
class Submission:
    """The notebook's settings cell, as one object."""

    team: str
    date: str
    train_images: str
    train_labels: str
    test_images: str
    out_dir: str
    recipe: dict
    """`search.train.recipe.Recipe.to_dict()` of the exported model."""
    epochs: int
    """MOS epochs wanted; fewer when the measured plan says they would not end before the deadline."""
    seed: int = 0
    image_col: str = "name"
    score_cols: list[str] = field(default_factory=lambda: ["mos_quality"])
    test_labels: str | None = None
    deadline_s: float = 2.5 * 3600
    """Everything (reading, training, saving, predicting) ends this many seconds after `start`."""
    start: float | None = None
    """`time.time()` when the clock started (the notebook's first cell); None: now."""
    precision: str = "auto"
    """Autocast: "auto" = fp16 with loss scaling on a T4, bf16 on newer GPUs, fp32 on a CPU."""
    smoke: bool = False
    """Tiny images and one epoch: the whole notebook in seconds."""
    plan_only: bool = False
    """Read the data, measure, print the plan, and stop: how a user with a T4 checks the plan in minutes."""


@dataclass
class PairSubmission:
    """The settings cell of a preference-pairs notebook, as one object (see `Submission` for the rest)."""

    team: str
    date: str
    train_pairs: str
    """CSV of the training pairs (`pair_columns`), images beside it or in `images/` beside it."""
    test_pairs: str
    """CSV of the pairs to choose from; its winner column is optional (pair accuracy when present)."""
    out_dir: str
    recipe: dict
    epochs: int
    seed: int = 0
    pair_columns: list[str] = field(default_factory=lambda: list(PAIR_COLUMNS))
    deadline_s: float = 2.5 * 3600
    start: float | None = None
    precision: str = "auto"
    smoke: bool = False
    plan_only: bool = False


def read_labels(path: str | Path, image_col: str, score_cols: list[str]) -> pd.DataFrame:
    """A labels CSV with `image_col` and `score_cols` (names stripped); ValueError naming the file, the
    missing columns and the columns present."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labels file {path} not found")
    frame = pd.read_csv(path)
    missing = [c for c in [image_col, *score_cols] if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} has no column(s) {', '.join(missing)}; its columns are {', '.join(map(str, frame.columns))}")
    frame[image_col] = frame[image_col].astype(str).str.strip()
    return frame


def read_images(folder: str | Path, names: list[str], size: int) -> torch.Tensor:
    """uint8 [N,3,size,size], decoded straight into one preallocated array (no list to stack)."""
    missing = [n for n in names if not (Path(folder) / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} listed image(s) not in {folder}, e.g. {missing[0]}")
    images = torch.empty((len(names), 3, size, size), dtype=torch.uint8)
    for i, name in enumerate(names):
        images[i] = torch.from_numpy(decode_image(Path(folder) / name, size))
    return images


def _smoke_recipe(recipe: Recipe) -> Recipe:
    """The recipe at 32 px (24 px crops when it crops, 16 px patches and global view when it cuts
    patches) with at most one pretraining epoch."""
    for r in (recipe, recipe.teacher):
        if r is not None:
            inp = r.spec.input
            inp.crop = 32 if inp.crop == inp.resize else 24
            inp.resize = 32
            inp.patch, inp.global_size = (16 if inp.patch else 0), (16 if inp.global_size else 0)
            r.train.crop, r.train.pretrain_epochs = r.spec.input.crop, min(r.train.pretrain_epochs, 1)
    return recipe


def load_recipe(s: Submission | PairSubmission) -> Recipe:
    """The settings' recipe at the settings' precision (smoke-sized with `smoke`)."""
    recipe = Recipe.from_dict(s.recipe)
    for r in (recipe, recipe.teacher):
        if r is not None:
            r.train.precision = s.precision
    return _smoke_recipe(recipe) if s.smoke else recipe


def run_submission(s: Submission, log: Callable[[str], None] = print) -> dict:
    """Train, save, reload and predict as `s` says, within `s.deadline_s`; returns what was written."""
    deadline = Deadline(s.deadline_s, s.start)
    recipe = load_recipe(s)
    size = recipe.spec.input.resize
    labels = read_labels(s.train_labels, s.image_col, s.score_cols)
    names, test_names = list(labels[s.image_col]), list_images(s.test_images)
    check_host_memory(len(names) + len(test_names), size, "training and test images")
    train = ImageSet(read_images(s.train_images, names, size),
                     torch.tensor(labels[s.score_cols].to_numpy(dtype=np.float32)),
                     np.asarray(names, dtype=object), names, list(s.score_cols))
    test_images = read_images(s.test_images, test_names, size)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    log(f"{len(train)} training and {len(test_names)} test images at {size} px on {device}; "
        f"{deadline.elapsed():.0f} s gone of {s.deadline_s:.0f} s")
    plan, reserve = _plan(recipe, train, len(test_names), s, device, deadline, log)
    if s.plan_only:
        return {"plan": plan, "elapsed_s": deadline.elapsed()}
    weights, result, pred = _train_save_predict(recipe, plan, train, test_images, s, list(s.score_cols), device,
                                                deadline, reserve, log)
    out = _write_predictions(pred, test_names, s, log)
    log(f"saved and reloaded {weights}; wrote {out} ({len(test_names)} images); "
        f"finished after {deadline.elapsed():.0f} s of the {s.deadline_s:.0f} s allowed")
    return {"weights": weights, "predictions": out, "plan": plan, "epochs_run": result.epochs_run,
            "elapsed_s": deadline.elapsed()}


def run_pair_submission(s: PairSubmission, log: Callable[[str], None] = print) -> dict:
    """Train from the pairs of `s.train_pairs`, save, reload and choose the better image of every pair of
    `s.test_pairs` into `choices.csv` (`image_a, image_b, chosen`), within `s.deadline_s`, like
    `run_submission`; prints the pair accuracy when the test CSV names winners."""
    deadline = Deadline(s.deadline_s, s.start)
    recipe = load_recipe(s)
    size = recipe.spec.input.resize
    columns = tuple(s.pair_columns)
    rows, test_rows = read_pairs(s.train_pairs, columns), read_pairs(s.test_pairs, columns, need_winner=False)
    names, test_names = rows.names(), test_rows.names()
    check_host_memory(len(names) + len(test_names), size, "training and test images")
    images = ImageSet(read_images(rows.image_dir, names, size), torch.zeros((len(names), 0)),
                      np.asarray(names, dtype=object), names, [])
    train = PairSet(images, rows.winner_pairs(names))
    test_images = read_images(test_rows.image_dir, test_names, size)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    log(f"{len(train)} training pairs ({len(names)} images) and {len(test_rows.a)} test pairs ({len(test_names)} "
        f"images) at {size} px on {device}; {deadline.elapsed():.0f} s gone of {s.deadline_s:.0f} s")
    plan, reserve = _plan(recipe, train, len(test_names), s, device, deadline, log)
    if s.plan_only:
        return {"plan": plan, "elapsed_s": deadline.elapsed()}
    weights, result, scores = _train_save_predict(recipe, plan, train, test_images, s, [PREFERENCE], device,
                                                  deadline, reserve, log)
    frame, accuracy = choices_frame(test_rows, dict(zip(test_names, scores[:, 0].tolist())))
    out = Path(s.out_dir) / "choices.csv"
    frame.to_csv(out, index=False)
    os.chmod(out, 0o644)
    if accuracy is not None:
        log(f"pair accuracy {accuracy:.4f} on {len(frame)} test pairs")
    log(f"saved and reloaded {weights}; wrote {out} ({len(frame)} pairs); "
        f"finished after {deadline.elapsed():.0f} s of the {s.deadline_s:.0f} s allowed")
    return {"weights": weights, "choices": out, "pair_accuracy": accuracy, "plan": plan,
            "epochs_run": result.epochs_run, "elapsed_s": deadline.elapsed()}


def _train_save_predict(recipe: Recipe, plan: RetrainPlan, train: ImageSet | PairSet, test_images: torch.Tensor,
                        s: Submission | PairSubmission, target_names: list[str], device: torch.device,
                        deadline: Deadline, reserve: float,
                        log: Callable[[str], None]) -> tuple[Path, TrainResult, np.ndarray]:
    """Retrain under the deadline, save `TEAM_DATE_model.pth`, reload it and score the test images with
    what was saved: (weights, training result, scores [N, T])."""
    model, result = retrain(_open_ended(planned(recipe, plan), 1 if s.smoke else s.epochs), train, s.seed, device,
                            deadline, reserve, progress=True)
    log(f"trained {result.epochs_run} epochs (planned {plan.epochs}, refit to the measured pace), "
        f"{deadline.elapsed():.0f} s gone")
    weights = Path(s.out_dir) / f"{s.team}_{s.date}_model.pth"
    save_checkpoint(weights, model.cpu(), recipe.spec, target_names=target_names, train_config=recipe.train.to_dict())
    model, _ = load_checkpoint(weights)  # what is submitted is what predicts
    pred = predict(model, test_images, device=device, crop=recipe.spec.input.crop, views=recipe.train.eval_views,
                   precision=recipe.train.precision)
    return weights, result, pred


def _plan(recipe: Recipe, train: ImageSet | PairSet, n_test: int, s: Submission | PairSubmission,
          device: torch.device, deadline: Deadline, log: Callable[[str], None]) -> tuple[RetrainPlan, float]:
    """Measure the step costs here and fit the epochs before the deadline: (plan, seconds to keep for
    saving and scoring)."""
    costs = measure_costs(recipe, train, device)
    reserve = min(SAVE_RESERVE_S, 0.05 * s.deadline_s) + 2 * n_test * costs.predict_image_s
    wanted = 1 if s.smoke else s.epochs
    try:
        plan = plan_retrain(recipe, len(train), n_test, costs, deadline.left() - reserve, wanted)
    except ValueError as err:
        log(f"warning: {err}; training one epoch, stopped by the clock if need be")
        plan = plan_retrain(recipe, len(train), n_test, costs, float("inf"), 1)
    log(plan.describe(deadline.elapsed(), s.deadline_s))
    return plan, reserve


def _open_ended(recipe: Recipe, wanted: int) -> Recipe:
    """The planned recipe allowed up to `wanted` MOS epochs: under a deadline, training refits its
    remaining epochs (and the LR schedule) to the measured pace after every epoch, so a pessimistic
    first measurement does not leave time unused (the warm-up epoch's schedule barely depends on the
    total)."""
    for r in (recipe, recipe.teacher):
        if r is not None:
            r.train.epochs = max(r.train.epochs, wanted)
    return recipe


def _write_predictions(pred: np.ndarray, test_names: list[str], s: Submission, log: Callable[[str], None]) -> Path:
    """predictions.csv (every test image) and, with test labels, metrics on the labelled ones."""
    cols = {("score" if len(s.score_cols) == 1 else f"pred_{c}"): pred[:, i] for i, c in enumerate(s.score_cols)}
    out = Path(s.out_dir) / "predictions.csv"
    pd.DataFrame({"image": test_names, **cols}).to_csv(out, index=False)
    os.chmod(out, 0o644)
    if s.test_labels:
        truth = read_labels(s.test_labels, s.image_col, s.score_cols).drop_duplicates(s.image_col).set_index(s.image_col)
        labelled = [i for i, n in enumerate(test_names) if n in truth.index]
        if len(labelled) < len(test_names):
            log(f"note: {len(test_names) - len(labelled)} test image(s) have no row in {s.test_labels}: "
                "predicted, left out of the metrics")
        if len(labelled) >= 2:
            rows = truth.loc[[test_names[i] for i in labelled]]
            for i, c in enumerate(s.score_cols):
                metrics = iqa_metrics(pred[labelled, i], rows[c].to_numpy(dtype=np.float64))
                log(f"{c}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return out

"""What the submission notebook runs: read the data, plan against the clock, retrain, save, reload, predict.

The notebook includes this module from source (`results.notebook`) and calls `run_submission`; the tests
call it directly. One `Submission` for every task kind: "mos" trains on a labels CSV and scores every
image of the test folder into `predictions.csv` (an unreadable test image is named, left out, and
gets an empty score); "sources" does the same from several labelled datasets at once, each read by its
own loader and put on the first one's scale (`search.data.imageset.combine`), so the predictions are on
the first source's scale; "pairs" trains from a CSV of preference pairs and writes the chosen image of
every test pair into `choices.csv`. `NOTEBOOK_KINDS` holds the few functions that differ, each kind's
`NotebookKind`: the notebook half of the study's task kind of the same name (`search.study.kinds`; the
notebook inlines only its own kind's). The plan is measured on the machine the notebook runs on, and a guard on the
clock stops training early when the plan was wrong, so that the weights are still saved, reloaded and
used for the predictions before the deadline. With `weights`, the run only loads them and predicts.
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
from collections.abc import Sized
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from search.checkpoint import load_checkpoint, save_checkpoint
from search.data.decode import decode_image, list_images
from search.data.imageset import ImageSet, combine
from search.data.labels import LabelTable, MissingColumnsError, load_csv, load_labels
from search.data.pairs import PAIR_COLUMNS, PairSet, read_pairs
from search.memory import check_host_memory
from search.metrics import iqa_metrics
from search.predict import prediction_frame
from search.train.loop import TrainResult, predict
from search.train.pairs import PREFERENCE, choices_frame, measure_pair_costs, retrain_pairs
from search.train.recipe import Recipe
from search.train.retrain import (
    DEFAULT_FINAL, FINALS, Deadline, RetrainPlan, StepCosts, check_final, measure_costs, plan_retrain, planned, retrain,
    wanted_epochs,
)
from space.spec import UnknownBlock

SAVE_RESERVE_S = 30.0
"""Seconds kept for saving and reloading the weights (at most 5 % of the deadline, for short test deadlines)."""
SCORING_MARGIN = 1.25
"""Training stops with this many times the scoring time measured on the test images still left."""
PACKAGES = ("torch", "numpy", "pandas", "scipy", "pillow", "tqdm")
"""What the notebook imports: `requirements.txt` pins the versions export ran with, `environment.txt`
records the versions a run used."""


@dataclass
class Submission:
    """The notebook's Settings cell, as one object. `task` "mos" reads `train_images`, `train_labels`,
    `test_images` (and `test_labels`); "sources" reads `train_sources` instead of the first two; "pairs"
    reads `train_pairs` and `test_pairs`."""

    team: str
    date: str
    out_dir: str
    recipe: dict
    """`search.train.recipe.Recipe.to_dict()` of the exported model."""
    epochs: int | str
    """MOS epochs wanted, fewer when the measured plan says they would not end before the deadline; or
    "fill" (`search.train.retrain.FILL`): as many as end before the deadline."""
    deadline_s: float
    """Everything (reading, training, saving, predicting) ends this many seconds after `start` (export
    passes its profile's export budget)."""
    task: str = "mos"
    train_images: str | None = None
    train_labels: str | None = None
    test_images: str | None = None
    """Every image here is predicted."""
    test_labels: str | None = None
    """Optional: metrics on the test images it names."""
    image_col: str = "name"
    score_cols: list[str] = field(default_factory=lambda: ["mos_quality"])
    group_col: str | None = "prompt"
    """Of `train_labels`: what groups images for the validation part of `final` (an image's prompt, so no
    validation image shares one with a training image); each image alone when the CSV lacks it."""
    train_sources: list[list[str]] | None = None
    """Several labelled datasets trained together ("sources"): each [format, folder], the format a
    `search.data.labels.LOADERS` name (its default quality MOS is read); the first one's scale is predicted."""
    train_pairs: str | None = None
    """CSV of the training pairs (`pair_columns`), images beside it or in `images/` beside it."""
    test_pairs: str | None = None
    """CSV of the pairs to choose from; its winner column is optional (pair accuracy when present)."""
    pair_columns: list[str] | None = None
    """The two images and the winner; None: `search.data.pairs.PAIR_COLUMNS`."""
    seed: int = 0
    start: float | None = None
    """`time.time()` when the clock started (the notebook's first cell); None: now."""
    precision: str = "auto"
    """Autocast: "auto" = fp16 with loss scaling on a T4, bf16 on newer GPUs, fp32 on a CPU."""
    smoke: bool = False
    """Tiny images and one epoch: the whole notebook in seconds."""
    plan_only: bool = False
    """Read the data, measure, print the plan, and stop: how a user with a T4 checks the plan in minutes."""
    weights: str | None = None
    """A `.pth` to load (weights only) and predict with: no training."""
    param_cap: int | None = None
    """The challenge's parameter cap, printed beside the model's count."""
    final: str = DEFAULT_FINAL
    """How the scored training ends (`search.train.retrain.FINALS`): "holdout" checks itself on a validation
    part and keeps its best snapshot, "refit" calibrates its length so, "all" trains on everything."""


@dataclass
class TestSet:
    """The decoded test images and what writing their results needs."""

    names: list[str]
    """Every test image, readable or not, in output order."""
    images: torch.Tensor
    """uint8 [M,3,S,S] of the readable ones, in the order of `names`."""
    unreadable: list[str]
    rows: object = None
    """The test pairs CSV's rows (`PairRows`) of a pairs submission."""


def no_holdout_text(train: Sized, s: Submission) -> str:
    """Nothing to say of a holdout's validation part (`NotebookKind.holdout` of a kind that does not group it)."""
    return ""


@dataclass(frozen=True)
class NotebookKind:
    """What differs between the task kinds in the notebook: reading, training, measuring, the target names,
    writing (the study side of the same kind: `search.study.kinds.KINDS`)."""

    read: Callable[[Submission, int], tuple[Sized, TestSet]]
    """(the training set: an `ImageSet`, or a `PairSet` of pairs; the test set)."""
    read_test: Callable[[Submission, int, int], TestSet]
    retrain: Callable[..., tuple[nn.Module, TrainResult]]
    measure: Callable[..., StepCosts]
    targets: Callable[[Submission], list[str]]
    write: Callable[[Submission, TestSet, np.ndarray, Callable[[str], None]], Path]
    items: str
    """What the training set counts: "images" or "pairs"."""
    holdout: Callable[[Sized, Submission], str] = no_holdout_text
    """What the validation part of a holdout of the training set is made of, for the log ("": nothing to say)."""


def read_images(folder: str | Path, names: list[str], size: int,
                skip_unreadable: bool = False) -> tuple[torch.Tensor, list[str]]:
    """(uint8 [N,3,size,size] decoded straight into one preallocated array, the names left out): with
    `skip_unreadable`, an image that does not decode is left out (the array holds the others, in order)
    instead of stopping the run."""
    missing = [n for n in names if not (Path(folder) / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} listed image(s) not in {folder}, e.g. {missing[0]}")
    images = torch.empty((len(names), 3, size, size), dtype=torch.uint8)
    unreadable, kept = [], 0
    for name in names:
        try:
            images[kept] = torch.from_numpy(decode_image(Path(folder) / name, size))
            kept += 1
        except ValueError:
            if not skip_unreadable:
                raise
            unreadable.append(name)
    return images[:kept], unreadable


def _mos_test(s: Submission, size: int, n_train: int = 0) -> TestSet:
    """Every image of `s.test_images` (memory checked for `n_train` training images beside them)."""
    names = list_images(s.test_images)
    check_host_memory(n_train + len(names), size, "training and test images" if n_train else "test images")
    images, unreadable = read_images(s.test_images, names, size, skip_unreadable=True)
    return TestSet(names, images, unreadable)


def _table_images(table: LabelTable, size: int) -> ImageSet:
    """The labelled images of `table` at `size` px (every one must decode)."""
    names = list(table.frame["image"])
    return ImageSet(read_images(table.image_dir, names, size)[0],
                    torch.tensor(table.frame[table.targets].to_numpy(dtype=np.float32)),
                    table.frame["group"].to_numpy(dtype=object), names, list(table.targets))


def _mos_read(s: Submission, size: int) -> tuple[ImageSet, TestSet]:
    """The labelled training images, grouped by `s.group_col` (prompts) when the CSV has it, else by image."""
    try:
        table = load_csv(s.train_labels, s.image_col, s.score_cols, s.group_col, image_dir=s.train_images)
    except MissingColumnsError as err:
        if err.missing != [s.group_col]:
            raise
        table = load_csv(s.train_labels, s.image_col, s.score_cols, image_dir=s.train_images)
    tests = _mos_test(s, size, len(table))
    return _table_images(table, size), tests


def _sources_read(s: Submission, size: int) -> tuple[ImageSet, TestSet]:
    """Every source of `s.train_sources` read by its loader and `combine`d on the first one's scale."""
    tables = [load_labels(fmt, folder) for fmt, folder in s.train_sources]
    tests = _mos_test(s, size, sum(len(t) for t in tables))
    return combine([(t.name, _table_images(t, size)) for t in tables]), tests


def _mos_write(s: Submission, tests: TestSet, pred: np.ndarray, log: Callable[[str], None]) -> Path:
    """predictions.csv (a row for every test image, an empty score for an unreadable one) and, with test
    labels, metrics on the labelled readable ones."""
    left_out = set(tests.unreadable)
    readable = [n for n in tests.names if n not in left_out]
    scores = pd.DataFrame(pred, index=readable).reindex(tests.names).to_numpy()
    out = Path(s.out_dir) / "predictions.csv"
    prediction_frame(tests.names, scores, s.score_cols).to_csv(out, index=False)
    os.chmod(out, 0o644)
    if s.test_labels:
        truth = load_csv(s.test_labels, s.image_col, s.score_cols).frame.set_index("image")
        labelled = [i for i, n in enumerate(readable) if n in truth.index]
        if len(labelled) < len(readable):
            log(f"note: {len(readable) - len(labelled)} test image(s) have no row in {s.test_labels}: "
                "predicted, left out of the metrics")
        if len(labelled) >= 2:
            rows = truth.loc[[readable[i] for i in labelled]]
            for i, c in enumerate(s.score_cols):
                metrics = iqa_metrics(pred[labelled, i], rows[c].to_numpy(dtype=np.float64))
                log(f"{c}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return out


def _pairs_test(s: Submission, size: int, n_train: int = 0) -> TestSet:
    rows = read_pairs(s.test_pairs, tuple(s.pair_columns or PAIR_COLUMNS), need_winner=False)
    names = rows.names()
    check_host_memory(n_train + len(names), size, "training and test images" if n_train else "test images")
    return TestSet(names, read_images(rows.image_dir, names, size)[0], [], rows)


def _pairs_read(s: Submission, size: int) -> tuple[PairSet, TestSet]:
    rows = read_pairs(s.train_pairs, tuple(s.pair_columns or PAIR_COLUMNS))
    names = rows.names()
    tests = _pairs_test(s, size, len(names))
    images = ImageSet(read_images(rows.image_dir, names, size)[0], torch.zeros((len(names), 0)),
                      np.asarray(names, dtype=object), names, [])
    return PairSet(images, rows.winner_pairs(names)), tests


def _pairs_write(s: Submission, tests: TestSet, pred: np.ndarray, log: Callable[[str], None]) -> Path:
    """choices.csv (`image_a, image_b, chosen`, and `winner` with the pair accuracy when the CSV names it)."""
    frame, accuracy = choices_frame(tests.rows, dict(zip(tests.names, pred[:, 0].tolist())))
    out = Path(s.out_dir) / "choices.csv"
    frame.to_csv(out, index=False)
    os.chmod(out, 0o644)
    if accuracy is not None:
        log(f"pair accuracy {accuracy:.4f} on {len(frame)} test pairs")
    return out


def _score_cols(s: Submission) -> list[str]:
    return list(s.score_cols)


def _prompt_holdout(train: ImageSet, s: Submission) -> str:
    """The validation part of a holdout of images: whole prompts, or whole images when there are none."""
    groups = len(set(train.groups))
    if groups == len(train):
        return f"; its validation part holds whole images ({s.group_col!r} is no column: it may share prompts)"
    return f"; its validation part holds whole prompts ({groups} in all)"


NOTEBOOK_KINDS = {
    "mos": NotebookKind(_mos_read, _mos_test, retrain, measure_costs, _score_cols, _mos_write, "images",
                        _prompt_holdout),
    "sources": NotebookKind(_sources_read, _mos_test, retrain, measure_costs, _score_cols, _mos_write, "images",
                            _prompt_holdout),
    "pairs": NotebookKind(_pairs_read, _pairs_test, retrain_pairs, measure_pair_costs, lambda s: [PREFERENCE],
                          _pairs_write, "pairs"),
}
"""The notebook halves of the task kinds by `Submission.task`: the names of `search.study.kinds.KINDS`
(`results.notebook.register_kind` adds a kind to both)."""


def _smoke_recipe(recipe: Recipe) -> Recipe:
    """The recipe at 32 px (24 px crops when it crops, 16 px patches and global view when it cuts
    patches, test scales scaled alike; a 2 x 2 grid of 8 px fragments when it cuts fragments) with at most
    one pretraining epoch."""
    for r in (recipe, recipe.teacher):
        if r is not None:
            inp = r.spec.input
            inp.crop = 32 if inp.crop == inp.resize else 24
            inp.test_scales = [max(16, 32 * s // inp.resize) for s in inp.test_scales]
            inp.resize = 32
            inp.patch, inp.global_size = (16 if inp.patch else 0), (16 if inp.global_size else 0)
            if inp.fragments:
                inp.fragments, inp.fragment = 2, 8
            r.train.crop, r.train.pretrain_epochs = r.spec.input.crop, min(r.train.pretrain_epochs, 1)
    return recipe


def load_recipe(s: Submission) -> Recipe:
    """The settings' recipe at the settings' precision (smoke-sized with `smoke`)."""
    recipe = Recipe.from_dict(s.recipe)
    for r in (recipe, recipe.teacher):
        if r is not None:
            r.train.precision = s.precision
    return _smoke_recipe(recipe) if s.smoke else recipe


def run_submission(s: Submission, log: Callable[[str], None] = print) -> dict:
    """Train, save, reload and predict as `s` says, within `s.deadline_s` (only load and predict with
    `s.weights`); writes `environment.txt` beside the outputs; returns what was written."""
    if s.task not in NOTEBOOK_KINDS:
        raise ValueError(f"task {s.task!r} is not one of {', '.join(NOTEBOOK_KINDS)}")
    check_final(s.final)
    kind, deadline = NOTEBOOK_KINDS[s.task], Deadline(s.deadline_s, s.start)
    env = write_environment(Path(s.out_dir))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if s.weights:
        return _predict_only(s, kind, device, deadline, log) | {"environment": env}
    wanted = 1 if s.smoke else wanted_epochs(s.epochs)
    recipe = load_recipe(s)
    size = recipe.spec.input.resize
    train, tests = kind.read(s, size)
    log(f"{len(train)} training {kind.items} and {len(tests.names)} test images "
        f"at {size} px on {device}; {deadline.elapsed():.0f} s gone of {s.deadline_s:.0f} s")
    _log_unreadable(tests, log)
    plan, reserve = _plan(recipe, kind, train, tests, s, wanted, device, deadline, log)
    if s.plan_only:
        return {"plan": plan, "elapsed_s": deadline.elapsed(), "environment": env}
    log(f"final training: {s.final}, {FINALS[s.final]}" + ("" if s.final == "all" else kind.holdout(train, s)))
    model, result = kind.retrain(_open_ended(planned(recipe, plan), wanted), train, s.seed, device, deadline, reserve,
                                 progress=True, final=s.final)
    log(trained_line(result, plan.epochs) + f"; {deadline.elapsed():.0f} s gone")
    weights = Path(s.out_dir) / f"{s.team}_{s.date}_model.pth"
    save_checkpoint(weights, model.cpu(), recipe.spec, target_names=kind.targets(s),
                    train_config=recipe.train.to_dict())
    model, _ = load_checkpoint(weights)  # what is submitted is what predicts
    _log_params(model, s, log)
    out = kind.write(s, tests, _score(model, tests, recipe.train.eval_views, recipe.train.precision, device), log)
    log(f"saved and reloaded {weights}; wrote {out} ({len(tests.names)} test images); "
        f"finished after {deadline.elapsed():.0f} s of the {s.deadline_s:.0f} s allowed")
    return {"weights": weights, "predictions": out, "plan": plan, "epochs_run": result.epochs_run,
            "trained": trained_summary(result), "elapsed_s": deadline.elapsed(), "environment": env}


def trained_line(result: TrainResult, planned_epochs: int) -> str:
    """What the scored training did, in one line: epochs run against planned, why it stopped, and its
    validation curve when it checked itself."""
    curve = result.curve
    shown = curve if len(curve) <= 10 else [curve[round(i * (len(curve) - 1) / 9)] for i in range(10)]
    checked = ("" if not curve else f"; ends on its best validated snapshot, epoch {result.best_epoch}; "
               "validation curve "
               + ", ".join(f"{e}: {v:.3f}" for e, v in shown))
    if result.member_epochs:
        return (f"trained {len(result.member_epochs)} members, {' + '.join(map(str, result.member_epochs))} epochs "
                f"(planned {planned_epochs} each): stopped as {result.stop}")
    return f"trained {result.epochs_run} epochs (planned {planned_epochs}): stopped as {result.stop}{checked}"


def trained_summary(result: TrainResult) -> dict:
    """What the scored training did, as plain data (export.json): epochs, seconds, why it stopped, the curve."""
    return {"epochs_run": result.epochs_run, "member_epochs": result.member_epochs, "seconds": round(result.seconds, 1),
            "stop": result.stop,
            "best_epoch": result.best_epoch, "curve": [[e, round(v, 4)] for e, v in result.curve]}


def _predict_only(s: Submission, kind: NotebookKind, device: torch.device, deadline: Deadline,
                  log: Callable[[str], None]) -> dict:
    """Load `s.weights` (weights only, no pickled code) and predict the test set with them."""
    model, payload = _load_weights(s)
    _log_params(model, s, log)
    tests = kind.read_test(s, model.spec.input.resize, 0)
    _log_unreadable(tests, log)
    config = payload.get("train_config") or {}
    pred = _score(model, tests, config.get("eval_views", 1), s.precision, device)
    out = kind.write(s, tests, pred, log)
    log(f"predicted with {s.weights}; wrote {out} ({len(tests.names)} test images) after {deadline.elapsed():.0f} s")
    return {"weights": Path(s.weights), "predictions": out, "elapsed_s": deadline.elapsed()}


def _load_weights(s: Submission) -> tuple[nn.Module, dict]:
    """`s.weights` loaded. The notebook carries the layer code of its own model only (`results.notebook`), so a
    checkpoint of another architecture cannot be rebuilt there: that is said with both architectures named."""
    try:
        return load_checkpoint(s.weights)
    except ValueError as err:
        if isinstance(err.__cause__, (KeyError, UnknownBlock)):  # a block family or input view this code lacks
            _refuse_another_architecture(s)
        raise


def _refuse_another_architecture(s: Submission) -> None:
    """ValueError naming the architecture `s.weights` holds and the one the settings' recipe expects, when they
    differ (nothing when they do not, or the file's spec is too damaged to describe)."""
    held = torch.load(s.weights, map_location="cpu", weights_only=True).get("spec")
    try:
        theirs, ours = _architecture(held), _architecture(s.recipe["spec"])
    except (KeyError, TypeError):
        return
    if theirs != ours:
        raise ValueError(f"WEIGHTS {s.weights} holds another architecture ({theirs}) than this notebook's RECIPE "
                         f"({ours}), whose code is all the notebook carries: set WEIGHTS to weights of this model, or "
                         "run the notebook exported with those weights") from None


def _architecture(spec: dict) -> str:
    """A spec's (`ArchSpec.to_dict()`) stem, stages and input view in words, e.g. "conv stem, stages mbconv 16
    x2, residual 24 x1, 40 px crops"."""
    inp = spec["input"]
    view = (f"{inp['patch']} px patches" if inp["patch"] else
            f"{inp['fragments']} x {inp['fragments']} fragments" if inp.get("fragments") else f"{inp['crop']} px crops")
    stages = ", ".join(f"{st['block']} {st['width']} x{st['depth']}" for st in spec["stages"])
    return f"{spec['stem']['kind']} stem, stages {stages}, {view}"


def _score(model: nn.Module, tests: TestSet, views: int, precision: str, device: torch.device) -> np.ndarray:
    return predict(model, tests.images, device=device, crop=model.spec.input.crop, views=views, precision=precision)


def _log_params(model: nn.Module, s: Submission, log: Callable[[str], None]) -> None:
    params = sum(p.numel() for p in model.parameters())
    if s.param_cap is None:
        log(f"model: {params:,} parameters")
    else:
        log(f"model: {params:,} parameters, cap {s.param_cap:,} "
            f"({'within' if params <= s.param_cap else 'OVER'} the cap)")


def _log_unreadable(tests: TestSet, log: Callable[[str], None]) -> None:
    if tests.unreadable:
        log(f"warning: {len(tests.unreadable)} unreadable test image(s) left out (empty score): "
            + ", ".join(tests.unreadable))


def _plan(recipe: Recipe, kind: NotebookKind, train: Sized, tests: TestSet, s: Submission, wanted: int,
          device: torch.device, deadline: Deadline, log: Callable[[str], None]) -> tuple[RetrainPlan, float]:
    """Measure the step costs here (scoring on the test images themselves) and fit up to `wanted` epochs
    before the deadline: (plan, seconds training must leave for saving and scoring)."""
    costs = kind.measure(recipe, train, device, test_images=tests.images if len(tests.images) else None)
    scoring_s = len(tests.images) * costs.predict_image_s
    reserve = min(SAVE_RESERVE_S, 0.05 * s.deadline_s) + SCORING_MARGIN * scoring_s
    budget = deadline.left() - reserve + scoring_s  # the plan counts the scoring itself
    try:
        plan = plan_retrain(recipe, len(train), len(tests.images), costs, budget, wanted)
    except ValueError as err:
        log(f"warning: {err}; training one epoch, stopped by the clock if need be")
        plan = plan_retrain(recipe, len(train), len(tests.images), costs, float("inf"), 1)
    log(plan.describe(deadline.elapsed(), s.deadline_s))
    return plan, reserve


def _open_ended(recipe: Recipe, wanted: int) -> Recipe:
    """The planned recipe allowed up to `wanted` MOS epochs: under a deadline, training refits its
    remaining epochs (and the LR schedule) to the measured pace after every epoch, so a pessimistic
    first measurement does not leave time unused (the warm-up epoch's schedule barely depends on the
    total)."""
    def allowed(r: Recipe) -> Recipe:
        return replace(r, train=replace(r.train, epochs=max(r.train.epochs, wanted)))
    return replace(allowed(recipe), teacher=None if recipe.teacher is None else allowed(recipe.teacher))


def environment() -> dict[str, str]:
    """The versions and the machine this run used: Python, torch, CUDA, cuDNN, the GPU, `PACKAGES`."""
    cuda = torch.cuda.is_available()
    found = {"python": platform.python_version(), "cuda": torch.version.cuda or "none",
             "cudnn": str(torch.backends.cudnn.version() or "none"),
             "gpu": (torch.cuda.get_device_name(0) if cuda
                     else f"none (CPU: {platform.processor() or platform.machine()})")}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def write_environment(folder: Path) -> Path:
    """`environment.txt` in `folder`: one `name: version` line per item of `environment()`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "environment.txt"
    path.write_text("".join(f"{k}: {v}\n" for k, v in environment().items()))
    os.chmod(path, 0o644)
    return path

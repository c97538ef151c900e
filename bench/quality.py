"""What lets a small from-scratch model see AIGC quality: one idea at a time on top of a plain CNN,
scored by prompt-grouped 5-fold cross-validation (mean and sd of the correlation score).

    python bench/quality.py --root ../shared/data/agiqa3k --jobs 4        # GPU machine
    python bench/quality.py --quick                                        # CPU: synthetic, tiny, 2 folds

Each row trains the recipe from scratch on four folds' prompts and scores the fifth's, for every fold;
the fixed schedule runs to its end (no early stopping, nothing tuned on a test fold). Rows are the
plain CNN, each idea alone on top of it, all ideas together, and all ideas with smaller widths. The
T4 column is the budget model's estimate for one training run plus inference (search.budget).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search.budget import BudgetModel  # noqa: E402
from search.data import ImageSet, grouped_kfold, load_imageset  # noqa: E402
from search.device import resolve_device  # noqa: E402
from search.train.recipe import Recipe  # noqa: E402
from search.train.retrain import budget_costs, plan_retrain, retrain  # noqa: E402
from search.train.recipe import TrainConfig  # noqa: E402
from search.train.loop import evaluate  # noqa: E402
from space import ArchSpec, HeadSpec, InputSpec, StageSpec, StemSpec, count_params  # noqa: E402


@dataclass(frozen=True)
class Knobs:
    """A residual CNN and how it is trained and tested: the knobs the ideas switch."""

    widths: tuple[int, ...] = (32, 64, 128, 192)
    resize: int = 320
    crop: int = 320
    views: int = 1
    pool: str = "avg"
    fuse: int = 1
    mscn: bool = False
    loss: dict = field(default_factory=lambda: {"mse": 1.0})
    ema: float = 0.0
    aux: bool = False
    """Train on the second label (mos_align) too, as an auxiliary output."""
    pretrain: float = 0.0
    """Self-supervised ranking epochs before the MOS epochs, as a share of the MOS epochs."""
    distill: float = 0.0
    """Weight of distillation from a teacher of twice the widths (about 4x the parameters), trained
    first, from scratch, on the same fold's training images by the same recipe."""

    def spec(self, n_targets: int, width_factor: int = 1) -> ArchSpec:
        widths = [w * width_factor for w in self.widths]
        return ArchSpec(InputSpec(self.resize, self.crop, self.mscn), StemSpec("conv", widths[0], 3),
                        [StageSpec("residual", w, 1, 2, 3) for w in widths], HeadSpec(self.pool, self.fuse),
                        num_outputs=n_targets)


def ideas(base: Knobs) -> dict[str, dict]:
    """Each idea as a change to the plain recipe."""
    native = round(base.crop * 1.6)  # 512 px (AGIQA-3K's own size) for 320 px crops
    return {
        "mean+std pooling, 3-stage fusion": dict(pool="avgstd", fuse=3),
        f"{native} px images, {base.crop} px crops, 5-view test": dict(resize=native, views=5),
        "MSCN input channel": dict(mscn=True),
        "MSE + PLCC + rank loss": dict(loss={"mse": 1.0, "plcc": 1.0, "rank": 1.0}),
        "MSE + norm-in-norm loss": dict(loss={"mse": 1.0, "nin": 1.0}),
        "self-supervised ranking pretraining (+20 % epochs)": dict(pretrain=0.2),
        "EMA of weights (0.998)": dict(ema=0.998),
        "distilled from a 2x-wide teacher": dict(distill=1.0),
        "mos_align as auxiliary target": dict(aux=True),
    }


def recipes(base: Knobs, small_widths: tuple[int, ...]) -> dict[str, Knobs]:
    """The plain CNN, each idea alone, all together, and all together with `small_widths`."""
    out = {"plain CNN": base}
    everything: dict = {}
    for name, change in ideas(base).items():
        out[name] = replace(base, **change)
        for key, value in change.items():  # loss ideas add their terms to one mix
            everything[key] = {**everything.get(key, {}), **value} if key == "loss" else value
    out["all of the above"] = replace(base, **everything)
    out["all of the above, small widths"] = replace(base, **everything, widths=small_widths)
    return out


@dataclass(frozen=True)
class Task:
    name: str
    recipe: Knobs
    fold: int
    dataset: str
    root: str | None
    targets: tuple[str, ...]
    folds: int
    epochs: int
    batch_size: int
    device: str
    cache_dir: str
    seed: int


def _data(task: Task, resize: int) -> ImageSet:
    return load_imageset(task.dataset, task.root, resize, task.cache_dir, list(task.targets), seed=task.seed,
                         n_images=240, progress=False)


def run_task(task: Task) -> dict:
    """Train one recipe on one fold's training prompts; score the fold's test prompts."""
    torch.set_num_threads(1)
    device = resolve_device(task.device)
    data = _data(task, task.recipe.resize)
    if not task.recipe.aux:
        data = ImageSet(data.images, data.targets[:, :1], data.groups, data.names, data.target_names[:1])
    train_idx, test_idx = grouped_kfold(data.groups, task.folds, task.seed)[task.fold]
    knobs, n_targets = task.recipe, len(data.target_names)
    cfg = TrainConfig(epochs=task.epochs, batch_size=task.batch_size, loss_weights=dict(knobs.loss),
                      eval_views=knobs.views, ema_decay=knobs.ema,
                      pretrain_epochs=max(1, round(knobs.pretrain * task.epochs)) if knobs.pretrain else 0)
    recipe = Recipe(knobs.spec(n_targets), cfg)
    if knobs.distill:
        recipe = recipe.with_teacher(Recipe(knobs.spec(n_targets, width_factor=2), cfg), knobs.distill)
    train, test = data.subset(train_idx), data.subset(test_idx)
    start = time.perf_counter()
    model, _ = retrain(recipe, train, task.seed + task.fold, device)
    metrics = evaluate(model, test, knobs.crop, knobs.views, device=device)[data.target_names[0]]
    t4 = plan_retrain(recipe, len(train), len(test), budget_costs(BudgetModel(), recipe), float("inf"),
                      task.epochs).seconds
    return {"recipe": task.name, "fold": task.fold, "params": count_params(recipe.spec), "t4_s": t4,
            "wall_s": time.perf_counter() - start, **metrics}


def table(rows: list[dict], order: list[str]) -> str:
    """Markdown: one line per recipe, mean +- sd over folds."""
    lines = ["| recipe | params | corr score (mean +- sd) | SRCC | PLCC | RMSE | est. T4 min / run | wall s / run |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in order:
        r = [row for row in rows if row["recipe"] == name]
        if not r:
            continue
        score = np.array([x["corr_score"] for x in r])
        mean = {k: float(np.mean([x[k] for x in r])) for k in ("srcc", "plcc", "rmse", "t4_s", "wall_s")}
        lines.append(f"| {name} | {r[0]['params']:,} "
                     f"| {score.mean():.3f} +- {score.std(ddof=1) if len(r) > 1 else 0:.3f} "
                     f"| {mean['srcc']:.3f} | {mean['plcc']:.3f} | {mean['rmse']:.3f} | {mean['t4_s'] / 60:.1f} "
                     f"| {mean['wall_s']:.0f} |")
    return "\n".join(lines)


def run_setup(setup: dict, recipe: dict) -> dict:
    """What decides a run's result, as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps({**setup, "recipe": recipe}))


def earlier_rows(path: Path) -> list[dict]:
    """The rows an earlier run of this bench wrote to `path` (none when it does not exist)."""
    if not path.exists():
        return []
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SystemExit(f"{path} is not a JSON file of earlier results ({err}); move it or pick another --out")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=None, help="AGIQA-3K folder (labels.csv + images/)")
    parser.add_argument("--quick", action="store_true", help="CPU smoke run: synthetic set, tiny models, 2 folds")
    parser.add_argument("--only", nargs="+", default=None, help="run only these recipes (names as in the table)")
    parser.add_argument("--size", type=int, default=320,
                        help="crop size (the plain CNN sees whole images at this size)")
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128, 192], help="stage widths (~1M params)")
    parser.add_argument("--small-widths", type=int, nargs="+", default=[16, 32, 64, 96], help="~250K params")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--jobs", type=int, default=1, help="trainings run at once (processes sharing the device)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cache-dir", default=".cache/images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None,
                        help="write every fold's metrics to this JSON file; runs already in it with the same "
                             "setup are kept and not rerun, so an interrupted bench resumes")
    args = parser.parse_args()
    if args.quick:
        dataset, targets, folds, epochs = "synthetic", ("mos", "align"), 2, 2
        todo = recipes(Knobs(widths=(8, 16, 24), resize=64, crop=64), (8, 8, 16))
    else:
        if not args.root:
            parser.error("--root is required (or --quick)")
        dataset, targets, folds, epochs = "agiqa3k", ("mos_quality", "mos_align"), args.folds, args.epochs
        todo = recipes(Knobs(widths=tuple(args.widths), resize=args.size, crop=args.size), tuple(args.small_widths))
    if args.only:
        unknown = sorted(set(args.only) - set(todo))
        if unknown:
            parser.error(f"unknown recipe(s) {unknown}; choose from {list(todo)}")
        todo = {k: v for k, v in todo.items() if k in args.only}
    root = str(Path(args.root).resolve()) if args.root else None
    tasks = [Task(name, recipe, fold, dataset, root, targets, folds, epochs, args.batch_size, args.device,
                  args.cache_dir, args.seed) for name, recipe in todo.items() for fold in range(folds)]
    for resize in sorted({t.recipe.resize for t in tasks}):  # decode each size once, before the workers read it
        _data(tasks[0], resize)
    print(f"{len(todo)} recipes x {folds} folds, {epochs} epochs, {args.jobs} at once, "
          f"device {resolve_device(args.device)}",
          flush=True)
    setup = {"dataset": dataset, "folds": folds, "epochs": epochs, "batch_size": args.batch_size, "seed": args.seed}
    # Keep every earlier row except those this run redoes (same recipe and fold, different setup).
    rows = earlier_rows(Path(args.out)) if args.out else []
    done = {(r["recipe"], r["fold"]) for r in rows
            if r["recipe"] in todo and r.get("setup") == run_setup(setup, asdict(todo[r["recipe"]]))}
    rows = [r for r in rows if r["recipe"] not in todo or (r["recipe"], r["fold"]) in done]
    if done:
        print(f"{len(done)} runs already in {args.out} with this setup; running the other {len(tasks) - len(done)}")
    tasks = [t for t in tasks if (t.name, t.fold) not in done]
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        for finished, row in enumerate(pool.imap_unordered(run_task, tasks), start=len(done) + 1):
            row["setup"] = run_setup(setup, asdict(todo[row["recipe"]]))
            rows.append(row)
            print(f"  [{finished}/{len(tasks) + len(done)} {time.perf_counter() - start:.0f}s] {row['recipe']}, "
                  f"fold {row['fold']}: corr score {row['corr_score']:.3f}", flush=True)
            if args.out:
                Path(args.out).write_text(json.dumps(rows, indent=1))
    print(table(rows, list(todo)))


if __name__ == "__main__":
    main()

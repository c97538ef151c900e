"""The quality ladder on 2 CPU cores: whole-image recipes against native-resolution patch recipes, each
trained for the same CPU time, scored by prompt-grouped cross-validation on AGIQA-3K.

    python bench/ladder.py --root ../shared/data/agiqa3k --cpu-s 420 --folds-run 0 1 2 --out ladder.json
    python bench/ladder.py --quick                      # synthetic, tiny, 2 folds: a smoke run
    python bench/ladder.py --root DATA --device cuda --gpu-s 60 --out ladder_gpu.json   # on a lent GPU

Every row trains the same training recipe (the learning rate, weight decay, loss and EMA of the first
trial of a `--space small` study) from scratch on the training prompts of a fold of a prompt-grouped
5-fold split and scores the fold's prompts, which no run of that fold saw. "Equal CPU time": before
the folds run, each recipe's training step is timed in process CPU seconds on one thread (robust to
other work on the machine), and the recipe gets the whole epochs that fit `--cpu-s`; the folds then
train for those fixed epochs, so results do not depend on the machine's load. Scoring is not in the
budget (a patch model scores a grid of patches: its test cost is in the table). The table gives mean
+- sd over folds, and each row's paired gain over the reference row (same folds): mean +- sd and the
folds it won. A second seed of the reference row measures the seed spread a gain must clear.

On a GPU (`--device cuda --gpu-s N`) the budget is N seconds of GPU time per run instead: each step is
timed by the wall clock (synchronised) after a warm-up, the runs go one at a time (`--jobs` 1: a shared
GPU would skew the timing), and a minute per run is the length a T4 notebook trains at, hundreds of
epochs at these sizes; the CPU ladder cannot reach it.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.quality import earlier_rows, run_setup  # noqa: E402
from search.data import ImageSet, grouped_kfold, load_imageset  # noqa: E402
from search.train.recipe import Recipe, TrainConfig  # noqa: E402
from search.train.step import steps_per_epoch  # noqa: E402
from search.train.loop import evaluate, seed_everything, train_model  # noqa: E402
from space.sample import scale_widths  # noqa: E402
from space import (ArchSpec, HeadSpec, InputSpec, StageSpec, StemSpec, build_model, count_flops, count_params,  # noqa: E402
                   spec_summary, train_flops)

REFERENCE = "search blocks, 160 px whole image"
TRAIN = dict(lr=0.004583, weight_decay=0.003144, loss_weights={"mse": 1.0, "nin": 1.0}, ema_decay=0.998)
"""The first trial of a `--space small` study on AGIQA-3K (seed 0) sampled these; every row uses them."""


def search_blocks(inp: InputSpec) -> ArchSpec:
    """The first trial of a `--space small` study on AGIQA-3K (seed 0): 300K parameters, the issue's
    'exported, 0.622' row; also what that study exports (rows that would repeat it are not run)."""
    return ArchSpec(inp, StemSpec("patchify", 24, 4), [
        StageSpec("mbconv", 24, 1, 2, 3, 3.0), StageSpec("residual", 24, 3, 2, 7, 4.0, True),
        StageSpec("mbconv", 24, 2, 2, 7, 4.0, True), StageSpec("mbconv", 128, 1, 2, 3, 4.0)],
        HeadSpec("attn", 1, 64), act="silu")


def plain_cnn(inp: InputSpec) -> ArchSpec:
    """A ResNet-style CNN of about the same size (4 residual stages, 3x3 kernels, mean pooling)."""
    return ArchSpec(replace(inp, mscn=False), StemSpec("conv", 24, 3),
                    [StageSpec("residual", w, 1, 2, 3) for w in (16, 32, 64, 128)], HeadSpec("avg", 1))


def gpu_found(inp: InputSpec) -> ArchSpec:
    """The winner of TPE from nothing in the GPU efficacy run (bench/NOTES.md, issue 22): 854K parameters,
    three mbconv stages of 128, mean pooling of the last three (its activation and dropout were not kept:
    SiLU and none here)."""
    return ArchSpec(inp, StemSpec("conv", 24, 3), [
        StageSpec("mbconv", 128, 1, 2, 3, 2.0, True), StageSpec("mbconv", 128, 2, 2, 3, 4.0, True),
        StageSpec("mbconv", 128, 2, 2, 7, 3.0)], HeadSpec("avg", 3))


def pooled(spec: ArchSpec, pool: str) -> ArchSpec:
    """`spec` with its patches' features pooled by `pool` (`HeadSpec.patch_pool`) instead of averaged."""
    return replace(spec, head=replace(spec.head, patch_pool=pool))


def ladder(whole: int, native: int, small: int, large: int, glob: int) -> dict[str, ArchSpec]:
    """The rows: `whole`-px whole images; patches of `small` and `large` px of the `native`-px image,
    one and several per step; patches with a `glob`-px whole-image stream; then the second rung (issue 23):
    that best recipe at ~1M and ~3M parameters and distilled, and the GPU study's winner (test-time views
    are scored on every patch row's weights: `TEST_VARIANTS`)."""
    def patches(size: int, count: int, global_size: int = 0) -> ArchSpec:
        return search_blocks(InputSpec(native, native, True, size, count, 3, global_size))
    best = f"search blocks, {small} px patches, 2 per step + {glob} px whole-image stream"
    return {
        f"plain CNN, {whole} px whole image": plain_cnn(InputSpec(whole, whole, True)),
        REFERENCE.replace("160", str(whole)): search_blocks(InputSpec(whole, whole, True)),
        f"search blocks, {small} px patches of the {native} px image, 1 per step": patches(small, 1),
        f"search blocks, {small} px patches, 4 per step": patches(small, 4),
        f"search blocks, {large} px patches, 1 per step": patches(large, 1),
        best: patches(small, 2, glob),
        f"{best}, widths x1.9 (~1M)": scale_widths(patches(small, 2, glob), 1.9),
        f"{best}, widths x3.1 (~3M)": scale_widths(patches(small, 2, glob), 3.1),
        f"GPU study's winner, {large} px patches, 1 per step": gpu_found(InputSpec(native, native, True, large, 1, 3)),
        f"{best}, distilled from a 2x-wide teacher": patches(small, 2, glob),
        f"{best}, attention over patches": pooled(patches(small, 2, glob), "attn"),
        f"{best}, mean and std of patches": pooled(patches(small, 2, glob), "meanstd"),
        f"search blocks, fragments: 7x7 cells of the {native} px image, {native // 16} px each": search_blocks(
            InputSpec(native, native, True, fragments=7, fragment=native // 16)),
    }


DISTILLED_SUFFIX = ", distilled from a 2x-wide teacher"
"""Rows named so train a teacher of twice the widths for half their CPU time, then the row's model with
a distillation term towards the teacher's scores for the other half (the teacher's forward passes in it
counted)."""


def teacher_of(name: str, spec: ArchSpec) -> ArchSpec | None:
    """The row's teacher: its architecture at twice the widths for a distilled row, else None."""
    return scale_widths(spec, 2.0) if name.endswith(DISTILLED_SUFFIX) else None


TEST_VARIANTS: dict[str, Callable[[InputSpec], InputSpec]] = {
    "4x4 grid": lambda inp: replace(inp, grid=4),
    "flips": lambda inp: replace(inp, test_flip=True),
    "+ a 3/4-size copy": lambda inp: replace(inp, test_scales=[inp.resize * 3 // 4]),
    "all three": lambda inp: replace(inp, grid=4, test_flip=True, test_scales=[inp.resize * 3 // 4]),
}
"""Test-time views scored on every patch row's trained model besides its own (parameter-free, so the
same weights): their scores go into the results as `corr_score <variant>`, at no training cost."""


@dataclass(frozen=True)
class Task:
    name: str
    """The row's name, with ", seed 1" for the reference's second seed."""
    spec: dict
    fold: int
    seed: int
    epochs: int
    step_s: float
    """Seconds per step on the budget's clock, the timing the epochs came from (kept with the results, so a
    resumed ladder reuses it)."""
    teacher: dict | None
    teacher_epochs: int
    dataset: str
    root: str | None
    folds: int
    batch_size: int
    cache_dir: str
    device: str = "cpu"


def _data(dataset: str, root: str | None, size: int, cache_dir: str) -> ImageSet:
    return load_imageset(dataset, root, size, cache_dir, ["mos_quality"] if dataset != "synthetic" else ["mos"],
                         seed=0, n_images=240, progress=False)


def _config(epochs: int, batch_size: int, seed: int, distill: bool = False) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed, distill_weight=1.0 if distill else 0.0,
                       **{**TRAIN, "loss_weights": dict(TRAIN["loss_weights"])})


STEP_KEY = {"cpu": "step_cpu_s", "cuda": "step_gpu_s"}
"""The results' key of the seconds per step, by device: process CPU seconds (one thread) or GPU wall seconds."""


def _clock(device: str) -> float:
    """The budget's clock: process CPU time on the CPU (robust to other work), the synchronised wall clock on a GPU."""
    if device == "cpu":
        return time.process_time()
    torch.cuda.synchronize()
    return time.perf_counter()


def step_seconds(spec: ArchSpec, data: ImageSet, batch_size: int, device: str = "cpu", steps: int = 6,
                 teacher: ArchSpec | None = None) -> float:
    """Seconds of one training step of `spec` on `device`'s clock (`_clock`), after a warm-up epoch; with a
    `teacher`, a distillation step (the teacher's forward pass included)."""
    steps = steps if device == "cpu" else 4 * steps  # GPU steps are short: more of them for a stable timing
    sample = data.subset(np.arange(min(len(data), steps * batch_size)))
    cfg = _config(1, batch_size, 0, distill=teacher is not None)
    net = build_model(teacher) if teacher else None
    train_model(build_model(spec), sample.subset(np.arange(2 * batch_size)), None, cfg, device=device, teacher=net)
    start = _clock(device)
    train_model(build_model(spec), sample, None, cfg, device=device, teacher=net)
    return (_clock(device) - start) / steps_per_epoch(len(sample), batch_size)


def run_task(task: Task) -> dict:
    """Train one row on one fold's training prompts for its epochs; score the fold's prompts."""
    device = task.device
    torch.set_num_threads(1 if device == "cpu" else 4)
    spec = ArchSpec.from_dict(task.spec)
    data = _data(task.dataset, task.root, spec.input.resize, task.cache_dir)
    train_idx, test_idx = grouped_kfold(data.groups, task.folds, 0)[task.fold]
    recipe = Recipe(spec, _config(task.epochs, task.batch_size, task.seed + task.fold,
                                  distill=task.teacher is not None))
    seed_everything(recipe.train.seed)
    train, test = data.subset(train_idx), data.subset(test_idx)
    cpu, wall = time.process_time(), _clock(device)
    teacher = None
    if task.teacher:
        teacher = build_model(ArchSpec.from_dict(task.teacher))
        train_model(teacher, train, None, _config(task.teacher_epochs, task.batch_size, recipe.train.seed),
                    device=device)
    model = build_model(spec)
    train_model(model, train, None, recipe.train, device=device, teacher=teacher)
    cpu, wall = time.process_time() - cpu, _clock(device) - wall
    start = time.process_time()
    metrics = evaluate(model, test, spec.input.crop, recipe.train.eval_views, device=device)
    return {"recipe": task.name, "fold": task.fold, "seed": task.seed, "params": count_params(spec),
            "mflops": count_flops(spec) / 1e6, "train_mflops": train_flops(spec) / 1e6, "epochs": task.epochs,
            STEP_KEY[device]: task.step_s, "teacher_epochs": task.teacher_epochs,
            "train_cpu_s": cpu, "train_wall_s": wall,
            "test_cpu_ms": 1e3 * (time.process_time() - start) / len(test_idx),
            **next(iter(metrics.values())), **test_variants(model, spec, test, recipe.train.eval_views, device)}


def test_variants(model: torch.nn.Module, spec: ArchSpec, test: ImageSet, views: int, device: str) -> dict[str, float]:
    """`corr_score <variant>` of the trained `model` under each of `TEST_VARIANTS` (patch rows only)."""
    scores = {}
    for name, change in TEST_VARIANTS.items() if spec.input.patch else ():
        variant = replace(spec, input=change(spec.input))
        twin = build_model(variant)
        twin.load_state_dict(model.state_dict())
        metrics = evaluate(twin, test, variant.input.crop, views, device=device)
        scores[f"corr_score {name}"] = next(iter(metrics.values()))["corr_score"]
    return scores


def _mean(runs: list[dict], key: str) -> str:
    """Mean of `key` over the runs that recorded it, with how many did when not all."""
    values = [x[key] for x in runs if key in x]
    return "n/a" if not values else f"{np.mean(values):.3f}" + ("" if len(values) == len(runs) else f" ({len(values)})")


def table(rows: list[dict], order: list[str], reference: str) -> str:
    """Markdown: mean +- sd per row, and its paired gain over `reference` on the folds both ran."""
    base = {r["fold"]: r["corr_score"] for r in rows if r["recipe"] == reference}
    variants = "".join(f" | {v}, same weights" for v in TEST_VARIANTS)
    lines = ["| recipe | params | test MFLOPs / image | epochs | train s (CPU, or GPU wall) "
             "| corr score (mean +- sd) | SRCC | PLCC "
             f"| paired gain over the reference (mean +- sd) | folds won{variants} |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(TEST_VARIANTS)]
    for name in order:
        r = sorted((x for x in rows if x["recipe"] == name), key=lambda x: x["fold"])
        if not r:
            continue
        score = np.array([x["corr_score"] for x in r])
        gains = np.array([x["corr_score"] - base[x["fold"]] for x in r if x["fold"] in base])
        sd = lambda a: a.std(ddof=1) if len(a) > 1 else 0.0  # noqa: E731
        gain = "reference" if name == reference else (
            f"{gains.mean():+.3f} +- {sd(gains):.3f}" if len(gains) else "n/a")
        won = f"{int((gains > 0).sum())}/{len(gains)}" if name != reference and len(gains) else ""
        lines.append(f"| {name} | {r[0]['params']:,} | {r[0]['mflops']:.0f} | {r[0]['epochs']} "
                     f"| {np.mean([x['train_wall_s' if 'step_gpu_s' in x else 'train_cpu_s'] for x in r]):.0f} "
                     f"| {score.mean():.3f} +- {sd(score):.3f} "
                     f"| {_mean(r, 'srcc')} | {_mean(r, 'plcc')} | {gain} | {won} |"
                     + "".join(f" {_mean(r, 'corr_score ' + v)} |" for v in TEST_VARIANTS))
    return "\n".join(lines)


def _current(row: dict) -> dict:
    """An earlier run with its spec read through today's `ArchSpec` (fields added since take their
    defaults), so a run stays comparable, and is kept, when the spec gains a field it did not use."""
    setup = row.get("setup")
    if not setup or "recipe" not in setup:
        return row
    return {**row, "setup": run_setup(setup, ArchSpec.from_dict(setup["recipe"]).to_dict())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=None, help="AGIQA-3K folder (labels.csv + images/)")
    parser.add_argument("--quick", action="store_true", help="smoke run: synthetic set, tiny images, 2 folds")
    parser.add_argument("--cpu-s", type=float, default=420.0, help="training CPU seconds per run (one thread)")
    parser.add_argument("--device", choices=sorted(STEP_KEY), default="cpu", help="where the runs train")
    parser.add_argument("--gpu-s", type=float, default=None, help="with --device cuda: training GPU seconds per run")
    parser.add_argument("--folds", type=int, default=5, help="folds of the prompt-grouped split")
    parser.add_argument("--folds-run", type=int, nargs="+", default=None, help="which folds to run (default: all)")
    parser.add_argument("--only", nargs="+", default=None, help="run only these rows (names as in the table)")
    parser.add_argument("--reference-seeds", type=int, default=2,
                        help="seeds of the reference row (2: the seed spread)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--jobs", type=int, default=2, help="runs at once, one thread each")
    parser.add_argument("--cache-dir", default=".cache/images")
    parser.add_argument("--out", default=None, help="JSON of every run; runs already in it with the same setup are "
                                                    "kept and not rerun, so an interrupted ladder resumes")
    args = parser.parse_args()
    if args.quick:
        dataset, root, folds = "synthetic", None, 2
        rows = ladder(whole=48, native=64, small=24, large=40, glob=32)
    else:
        if not args.root:
            parser.error("--root is required (or --quick)")
        dataset, root, folds = "agiqa3k", str(Path(args.root).resolve()), args.folds
        rows = ladder(whole=160, native=512, small=128, large=256, glob=160)
    reference = next(name for name in rows if name.startswith("search blocks") and "whole image" in name)
    seeds = {name: [0] for name in rows} | {reference: list(range(args.reference_seeds))}
    if args.only:
        unknown = sorted(set(args.only) - set(rows))
        if unknown:
            parser.error(f"unknown row(s) {unknown}; choose from {list(rows)}")
        rows = {k: v for k, v in rows.items() if k in args.only}
    folds_run = args.folds_run if args.folds_run is not None else list(range(folds))
    torch.set_num_threads(1)
    if (args.device == "cuda") != (args.gpu_s is not None):
        parser.error("--gpu-s goes with --device cuda (and --device cuda needs --gpu-s)")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible here")
    budget = {"cpu_s": args.cpu_s} if args.device == "cpu" else {"device": "cuda", "gpu_s": args.gpu_s}
    budget_s, jobs = (args.cpu_s, args.jobs) if args.device == "cpu" else (args.gpu_s, 1)
    setup = {"dataset": dataset, "folds": folds, **budget, "batch_size": args.batch_size, "train": TRAIN}
    earlier = [_current(r) for r in earlier_rows(Path(args.out))] if args.out else []
    tasks, decoded = [], {}
    for name, spec in rows.items():
        size = spec.input.resize  # each size decoded once, before the workers read its cache
        data = decoded[size] = decoded.get(size) or _data(dataset, root, size, args.cache_dir)
        n_train = len(grouped_kfold(data.groups, folds, 0)[0][0])
        teacher = teacher_of(name, spec)
        timed = [r for r in earlier if r["recipe"] == name and r.get("setup") == run_setup(setup, spec.to_dict())]
        # a resumed ladder keeps its first timing: the same epochs on every fold, whatever the load now
        step_s = timed[0][STEP_KEY[args.device]] if timed else step_seconds(spec, data, args.batch_size, args.device,
                                                                             teacher=teacher)
        steps = steps_per_epoch(n_train, args.batch_size)
        share = 0.5 if teacher else 1.0
        epochs = max(1, int(share * budget_s // (step_s * steps)))
        teacher_epochs = 0 if not teacher else timed[0]["teacher_epochs"] if timed else max(
            1, int(share * budget_s // (step_seconds(teacher, data, args.batch_size, args.device) * steps)))
        print(f"{name}: {spec_summary(spec)}, {count_params(spec):,} params, {step_s:.3f} "
              f"{'CPU' if args.device == 'cpu' else 'GPU'} s/step "
              f"{'(from the earlier runs) ' if timed else ''}-> {epochs} epochs"
              + (f" after a {count_params(teacher):,}-parameter teacher's {teacher_epochs}" if teacher else ""),
              flush=True)
        tasks += [Task(name if seed == 0 else f"{name}, seed {seed}", spec.to_dict(), fold, seed, epochs, step_s,
                       teacher and teacher.to_dict(), teacher_epochs, dataset, root, folds, args.batch_size,
                       args.cache_dir, args.device) for seed in seeds[name] for fold in folds_run]
    specs = {t.name: run_setup(setup, t.spec) for t in tasks}
    # keep every earlier run except those of this run's rows under another setup (they are redone)
    results = [r for r in earlier if r["recipe"] not in specs or r.get("setup") == specs[r["recipe"]]]
    done = {(r["recipe"], r["fold"]) for r in results if r["recipe"] in specs}
    todo = [t for t in tasks if (t.name, t.fold) not in done]
    print(f"{len(todo)} runs to go ({len(done)} already in {args.out}), {jobs} at once", flush=True)
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        for finished, row in enumerate(pool.imap_unordered(run_task, todo), start=len(done) + 1):
            row["setup"] = specs[row["recipe"]]
            results.append(row)
            print(f"  [{finished}/{len(tasks)} {time.perf_counter() - start:.0f}s] "
                  f"{row['recipe']}, fold {row['fold']}: "
                  f"corr score {row['corr_score']:.3f} ({row['epochs']} epochs, {row['train_cpu_s']:.0f} CPU s, "
                  f"{row['train_wall_s']:.0f} s wall)", flush=True)
            if args.out:
                Path(args.out).write_text(json.dumps(results, indent=1))
    order = [n for name in rows for n in ([name, f"{name}, seed 1"] if name == reference else [name])]
    print(table(results, order, reference))


if __name__ == "__main__":
    main()

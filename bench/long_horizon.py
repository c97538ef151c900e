"""The training that is scored, at length: test score against training length for the final-training
strategies, on prompts no run sees.

    nice python bench/long_horizon.py --root ../shared/data/agiqa3k --out long_horizon.json
    python bench/long_horizon.py --quick                    # synthetic, tiny: a smoke run

AGIQA-3K's prompts are split once: a quarter are the test prompts (no run trains or validates on them),
the rest the development set a notebook would train on. Every run trains a proxy of the real recipes
(fragments, 7x7 cells of 16 px of the native image: the fragments recipe at half its cell size, so the
CPU reaches hundreds of epochs) for a fixed number of epochs, each length with its own schedule (warm-up,
cosine decay to zero at its last epoch), one thread, so its epochs are the same whatever the load. Two
runs per length:
- "all": the development set, no validation: strategy (i) (today's fill) at that length;
- "part": the development set less the prompt-grouped validation part of the scored training
  (`search.train.retrain.check_split`), validated every few epochs (`search.train.snapshot`), the best
  validated snapshot kept: strategy (ii) at that length; it scores the test prompts at each validation too.
A third run at the longest length, "checked", is the holdout as export and the notebook run it: planned at
that length, it stops on evidence (annealing first) and keeps its best snapshot. From them:
(iii) calibrate then refit: the length whose "part" run validated best among the lengths of at
most a quarter of this one (so the calibration costs at most a quarter), then the "all" run of that
length; (iv) the two runs' test predictions averaged (an ensemble of two models: twice the parameters).
`--out FILE` keeps every run; rerunning with it skips the runs already there, so it resumes.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ladder import TRAIN, search_blocks  # noqa: E402
from bench.quality import earlier_rows  # noqa: E402
from search.data import ImageSet, grouped_holdout, load_imageset  # noqa: E402
from search.metrics import iqa_metrics  # noqa: E402
from search.train.loop import predict, seed_everything, train_model  # noqa: E402
from search.train.recipe import TrainConfig  # noqa: E402
from search.train.retrain import check_split  # noqa: E402
from search.train.snapshot import BestSnapshot, validation_score  # noqa: E402
from space import ArchSpec, InputSpec, build_model, count_params  # noqa: E402
from space.sample import scale_widths  # noqa: E402

TEST_SHARE = 0.25
"""Of the prompts, kept as test prompts (AGIQA-3K here: 586 of 2,396 images)."""
SPLIT_SEED = 0
"""The one split into development set and test prompts, whatever seed a run trains with (`--seed`), so runs of
different seeds are scored on the same test prompts and can be averaged into an ensemble."""
CURVE_POINTS = 48
"""Validations of a "part" run, about (`search.train.snapshot.check_every`)."""


def proxies(native: int, cells: int, cell: int) -> dict[str, ArchSpec]:
    """The proxies: the fragments recipe's blocks at 300K parameters, and the same at widths x1.9 (~1M)."""
    base = search_blocks(InputSpec(native, native, True, fragments=cells, fragment=cell))
    return {"fragments 300K": base, "fragments 1M (widths x1.9)": scale_widths(base, 1.9)}


def real_recipes() -> dict[str, ArchSpec]:
    """The known recipes themselves (`search/study/known_recipes.json`) and the fragments one at ~1M: for a GPU."""
    fragments = search_blocks(InputSpec(512, 512, True, fragments=7, fragment=32))
    return {"fragments7x32": fragments, "fragments7x32, widths x1.9 (~1M)": scale_widths(fragments, 1.9),
            "patches128x2+global160": search_blocks(InputSpec(512, 512, True, 128, 2, 3, 160))}


@dataclass(frozen=True)
class Task:
    proxy: str
    spec: dict
    length: int
    arm: str
    """"all", "part" or "checked"."""
    seed: int
    dataset: str
    root: str | None
    cache_dir: str
    batch_size: int
    device: str = "cpu"

    @property
    def key(self) -> tuple:
        return self.proxy, self.length, self.arm, self.seed


def _data(task: Task, size: int) -> ImageSet:
    targets = ["mos_quality"] if task.dataset != "synthetic" else ["mos"]
    return load_imageset(task.dataset, task.root, size, task.cache_dir, targets, seed=0, n_images=400, progress=False)


def split(data: ImageSet) -> tuple[ImageSet, ImageSet]:
    """(development set, test prompts): always the same (`SPLIT_SEED`)."""
    dev, test = grouped_holdout(data.groups, TEST_SHARE, SPLIT_SEED)
    return data.subset(dev), data.subset(test)


class Recorder(BestSnapshot):
    """The scored training's best snapshot, also scoring the test prompts at each validation: the curve of
    both. With `patience` it is the watch export and the notebook run (stop on evidence, anneal, best
    snapshot); without, it never stops a run early."""

    def __init__(self, test: ImageSet, patience: bool):
        super().__init__(patience=patience, **({} if patience else {"most_checks": CURVE_POINTS}))
        self.test, self.points = test, []

    def __call__(self, model, epoch, per_target) -> bool:
        test = _test_metrics(model, self.test)
        self.points.append([epoch, validation_score(per_target), test["corr_score"]])
        return super().__call__(model, epoch, per_target)


def _test_metrics(model, test: ImageSet) -> dict:
    return iqa_metrics(_test_pred(model, test), test.targets.numpy()[:, 0])


def _test_pred(model, test: ImageSet) -> np.ndarray:
    return predict(model, test.images, crop=model.spec.input.crop)[:, 0]  # where the model is


def run_task(task: Task) -> dict:
    torch.set_num_threads(1 if task.device == "cpu" else 4)
    spec = ArchSpec.from_dict(task.spec)
    dev, test = split(_data(task, spec.input.resize))
    cfg = TrainConfig(epochs=task.length, batch_size=task.batch_size, seed=task.seed,
                      **{**TRAIN, "loss_weights": dict(TRAIN["loss_weights"])})
    seed_everything(task.seed)
    model = build_model(spec)
    start = time.process_time()
    if task.arm == "all":
        recorder, result = None, train_model(model, dev, None, cfg, device=task.device)
    else:  # "part": the full schedule, best snapshot; "checked": as export and the notebook run it
        train, val = check_split(dev, task.seed)
        recorder = Recorder(test, patience=task.arm == "checked")
        result = train_model(model, train, val, cfg, device=task.device, watch=recorder)
    cpu_s, train_s = time.process_time() - start, result.seconds
    pred = _test_pred(model, test)
    row = {**{k: v for k, v in asdict(task).items() if k in ("proxy", "length", "arm", "seed", "device")},
           "params": count_params(spec), "epochs_run": result.epochs_run, "train_cpu_s": cpu_s, "train_s": train_s,
           "final_loss": result.history[-1].train_loss, **iqa_metrics(pred, test.targets.numpy()[:, 0]),
           "test_pred": [round(float(p), 5) for p in pred]}
    if recorder is not None:
        row |= {"best_epoch": recorder.best_epoch, "best_val": recorder.best_score, "curve": recorder.points,
                "stop": result.stop}
    return row


def _train_s(row: dict) -> float:
    """A run's training time: process CPU seconds on a CPU, the training's wall seconds on a GPU."""
    return row["train_cpu_s"] if row.get("device", "cpu") == "cpu" else row["train_s"]


def _at(rows: dict, proxy: str, length: int, arm: str, seed: int) -> dict | None:
    return rows.get((proxy, length, arm, seed))


def table(results: list[dict], names: list[str], lengths: list[int], test: ImageSet, seed: int) -> str:
    """Markdown: per proxy and length, the test correlation score of each strategy."""
    rows = {(r["proxy"], r["length"], r["arm"], r["seed"]): r for r in results}
    truth = test.targets.numpy()[:, 0]
    lines = ["| proxy | epochs | (i) all data, last | (ii) part, best snapshot (epoch) | part, last epoch "
             "| (iii) refit at the length chosen on part runs <= 1/4 as long | (iv) ensemble of (i)+(ii), 2x params "
             "| (v) ensemble of two all-data runs (seeds 0, 1), 2x params "
             "| holdout as export runs it, this many epochs planned (epochs run, best) "
             "| train s (all; CPU s on a CPU) | final train loss (all) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in names:
        for length in lengths:
            full, part = _at(rows, name, length, "all", seed), _at(rows, name, length, "part", seed)
            checked = _at(rows, name, length, "checked", seed)
            if not (full or part or checked):
                continue
            as_run = "-" if checked is None else (f"{checked['corr_score']:.3f} ({checked['epochs_run']}, "
                                                  f"{checked['best_epoch']})")
            cell = lambda r, k="corr_score": "-" if r is None else f"{r[k]:.3f}"  # noqa: E731
            last = "-" if part is None else f"{part['curve'][-1][2]:.3f}"
            best = "-" if part is None else f"{part['corr_score']:.3f} ({part['best_epoch']})"
            shorter = [x for x in lengths if 4 * x <= length and _at(rows, name, x, "part", seed)]
            refit = "-"
            if shorter:
                chosen = max(shorter, key=lambda x: _at(rows, name, x, "part", seed)["best_val"])
                picked = _at(rows, name, chosen, "all", seed)
                refit = "-" if picked is None else f"{picked['corr_score']:.3f} ({chosen})"
            ensemble = "-" if not (full and part) else f"{_averaged([full, part], truth):.3f}"
            pair = [_at(rows, name, length, "all", s) for s in (0, 1)]
            members = "-" if None in pair else f"{_averaged(pair, truth):.3f}"
            lines.append(f"| {name} | {length} | {cell(full)} | {best} | {last} | {refit} | {ensemble} | {members} "
                         f"| {as_run} "
                         f"| {'-' if full is None else round(_train_s(full))} "
                         f"| {'-' if full is None else format(full['final_loss'], '.3f')} |")
    return "\n".join(lines)


def _averaged(runs: list[dict], truth: np.ndarray) -> float:
    """The test correlation score of `runs`' test predictions averaged: an ensemble of their models."""
    return iqa_metrics(np.mean([r["test_pred"] for r in runs], axis=0), truth)["corr_score"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=None, help="AGIQA-3K folder (labels.csv + images/)")
    parser.add_argument("--quick", action="store_true", help="smoke run: synthetic set, tiny images")
    parser.add_argument("--real", action="store_true", help="the known recipes themselves instead of the CPU proxies "
                                                            "(for a GPU: --device cuda)")
    parser.add_argument("--device", default="cpu", help="where the runs train (cuda: several at once share the GPU)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[6, 24, 96, 384],
                        help="training lengths in epochs (x1, x4, x16, x64 of a 6-epoch trial)")
    parser.add_argument("--only", nargs="+", default=None, help="run only these proxies (names as in the table)")
    parser.add_argument("--arms", nargs="+", choices=("part", "all", "checked"), default=("part", "all", "checked"),
                        help="which runs (\"checked\" at the longest length only)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--jobs", type=int, default=2, help="runs at once, one thread each")
    parser.add_argument("--cache-dir", default=".cache/images")
    parser.add_argument("--out", default=None, help="JSON of every run; runs already in it are kept, so it resumes")
    args = parser.parse_args()
    if args.quick:
        dataset, root, specs = "synthetic", None, proxies(64, 4, 8)
    else:
        if not args.root:
            parser.error("--root is required (or --quick)")
        dataset, root = "agiqa3k", str(Path(args.root).resolve())
        specs = real_recipes() if args.real else proxies(512, 7, 16)
    if args.only:
        specs = {k: v for k, v in specs.items() if k in args.only}
    torch.set_num_threads(1)
    if args.device != "cpu" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device is visible here")
    longest = max(args.lengths)
    tasks = [Task(name, spec.to_dict(), length, arm, args.seed, dataset, root, args.cache_dir, args.batch_size,
                  args.device)
             for length in sorted(args.lengths) for name, spec in specs.items()
             for arm in ("part", "all") + (("checked",) if length == longest else ()) if arm in args.arms]
    test = split(_data(tasks[0], next(iter(specs.values())).input.resize))[1]  # decodes the cache once
    results = earlier_rows(Path(args.out)) if args.out else []
    done = {(r["proxy"], r["length"], r["arm"], r["seed"]) for r in results}
    todo = [t for t in tasks if t.key not in done]
    print(f"{len(todo)} runs to go ({len(done)} already in {args.out}), {args.jobs} at once; "
          f"{len(test)} test images", flush=True)
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        for row in pool.imap_unordered(run_task, todo):
            results.append(row)
            print(f"  [{time.perf_counter() - start:.0f}s] {row['proxy']}, {row['length']} epochs, {row['arm']}: "
                  f"test {row['corr_score']:.3f}"
                  + (f", best validated at epoch {row['best_epoch']}" if "best_epoch" in row else "")
                  + f" ({row['train_cpu_s']:.0f} CPU s, {row.get('train_s', 0):.0f} s training)", flush=True)
            if args.out:
                tmp = Path(args.out).with_suffix(".tmp")
                tmp.write_text(json.dumps(results))
                tmp.replace(args.out)
    print(table(results, list(specs), sorted(args.lengths), test, args.seed))


if __name__ == "__main__":
    main()

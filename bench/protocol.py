"""Which confirm protocol predicts the test (issue 32): k prompt-grouped folds against k seeds on the study's
own split, at equal k and epochs, judged by how well each orders candidates by their score on test prompts
no study sees.

    nice -n 10 python bench/protocol.py --root ../shared/data/agiqa3k --out bench/results/protocol.json
    python bench/protocol.py --quick                      # synthetic, tiny: a smoke run

AGIQA-3K's prompts are split once: a quarter are the test prompts (no protocol trains or scores on them), the
rest the "study" set, which a study splits 80/20 by prompt into its training and validation parts (one split
per `--studies` seed). The candidates are architectures of the search space at a cheap CPU proxy size (the
fragments input of bench/long_horizon.py's proxies, 7x7 cells of the native image, here of `--cell` 12 px; the
first is that proxy itself, the rest sampled by `space.sample_spec` under a FLOPs cap), all trained with one recipe
(bench/ladder.py's `TRAIN`) for `--epochs` epochs, one thread. Per candidate and study, `results.confirm`'s own
runs (`fold_score`): the k runs of "folds" (each trains on (k-1)/k of the study set, scores the rest) and of
"seeds" (each trains on the study's training part with its own seed, scores its validation part). The truth:
the candidate trained on the whole study set (training and validation parts, `results.confirm.trained_score`)
and scored on the test prompts, `--truth-seeds` seeds averaged (the same for every study). The table: per
protocol, Spearman and Kendall between its candidate means and the truth, a paired bootstrap over candidates of
the difference, whether its pick is the truth's best (top-1 regret) and the CPU seconds it cost. `--out FILE`
keeps every run; rerunning with it skips the runs already there, so it resumes. The table is printed last.
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
import optuna
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ladder import TRAIN, search_blocks  # noqa: E402
from bench.quality import earlier_rows  # noqa: E402
from results.candidates import Protocol  # noqa: E402
from results.confirm import fold_score, trained_score  # noqa: E402
from search.data import grouped_holdout  # noqa: E402
from search.metrics import krcc, srcc  # noqa: E402
from search.study import StudyConfig, StudyData  # noqa: E402
from search.train.recipe import Recipe, TrainConfig  # noqa: E402
from space import ArchSpec, InputSpec, count_flops, count_params  # noqa: E402
from space.sample import Caps, SpaceConfig, sample_spec, spec_summary  # noqa: E402

TEST_SHARE = 0.25
"""Of the prompts, kept as test prompts (AGIQA-3K: about 600 of 2,396 images), whatever the study's seed."""
SPLIT_SEED = 0
"""The one split into study set and test prompts."""
VAL_SHARE = 0.2
"""Of the study set, the study's validation part (its own grouped split, seeded by the study's seed)."""
TRUTH_SEED = 2000
"""Truth run t trains with seed `TRUTH_SEED + t` (apart from the protocols' `results.confirm.run_seed`)."""
SAMPLE_SEED = 32
"""The seed the candidates are sampled with (issue 32)."""


class BenchData(StudyData):
    """A study's data with the bench's split: the test prompts fixed (`SPLIT_SEED`), the rest split 80/20 by
    prompt with the study's seed, as a study splits its data."""

    def split(self, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._split is None:
            groups = np.asarray(self.all(size).groups, dtype=object)
            rest, test = grouped_holdout(groups, TEST_SHARE, SPLIT_SEED)
            train, val = grouped_holdout(groups[rest], VAL_SHARE, self.cfg.seed + 1)
            self._split = rest[train], rest[val], test
        return self._split


def study_config(dataset: str, root: str | None, seed: int, cache_dir: str) -> StudyConfig:
    return StudyConfig(dataset=dataset, root=root, seed=seed, device="cpu", cache_dir=cache_dir,
                       n_synthetic=400, space="tiny" if dataset == "synthetic" else "small")


def candidates(count: int, native: int, cells: int, cell: int, flops_ratio: float, seed: int = SAMPLE_SEED
               ) -> dict[str, ArchSpec]:
    """The proxy (bench/long_horizon.py's "fragments 300K" at `cell` px cells) and `count - 1` architectures
    sampled from the small space with the same fragments input, at most `flops_ratio` x the proxy's FLOPs (so a
    training costs about the proxy's)."""
    proxy = search_blocks(InputSpec(native, native, True, fragments=cells, fragment=cell))
    out = {f"c0 proxy {spec_summary(proxy)}": proxy}
    space = SpaceConfig.small()
    space = SpaceConfig(**{**space.to_dict(), "native": native, "patches": (0,), "fragments": (cells,),
                           "fragment_sizes": (cell,)})
    caps = Caps(params=2_000_000, flops=int(flops_ratio * count_flops(proxy)))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    tries = 0
    while len(out) < count and tries < 50 * count:
        tries += 1
        try:
            spec = sample_spec(sampler.ask(), space, caps)
        except ValueError:  # over the caps even at the narrowest widths
            continue
        name = spec_summary(spec)
        if all(name not in k for k in out) and count_params(spec) >= 20_000:
            out[f"c{len(out)} {name}"] = spec
    return out


@dataclass(frozen=True)
class Task:
    candidate: str
    spec: dict
    kind: str
    """"folds", "seeds" or "truth"."""
    study: int
    """The study's seed (its 80/20 split, its folds and its runs' seeds); the truth's is -1 (every study's)."""
    index: int
    k: int
    epochs: int
    dataset: str
    root: str | None
    cache_dir: str
    batch_size: int

    @property
    def key(self) -> tuple:
        return self.candidate, self.kind, self.study, self.index


_DATA: dict[int, BenchData] = {}


def _data(task: Task) -> tuple[StudyConfig, BenchData]:
    seed = max(task.study, 0)
    if seed not in _DATA:
        _DATA[seed] = BenchData(study_config(task.dataset, task.root, seed, task.cache_dir))
    return _DATA[seed].cfg, _DATA[seed]


def run_task(task: Task) -> dict:
    """One training: a run of a protocol (`results.confirm.fold_score`) or of the truth."""
    torch.set_num_threads(1)
    cfg, data = _data(task)
    spec = ArchSpec.from_dict(task.spec)
    recipe = Recipe(spec, TrainConfig(epochs=task.epochs, batch_size=task.batch_size,
                                      **{**TRAIN, "loss_weights": dict(TRAIN["loss_weights"])}))
    data.all(spec.input.resize)  # decoded (or read from the cache) before the clock starts
    start = time.process_time()
    if task.kind == "truth":
        train, val, test = data.split(spec.input.resize)
        score = trained_score(recipe, cfg, data, np.concatenate([train, val]), test, TRUTH_SEED + task.index)
    else:
        score = fold_score(recipe, cfg, data, Protocol(task.kind, task.k), task.index)
    return {**{k: v for k, v in asdict(task).items() if k in ("candidate", "kind", "study", "index", "k", "epochs")},
            "params": count_params(spec), "mflops": count_flops(spec) / 1e6, "score": score,
            "cpu_s": time.process_time() - start}


def _bootstrap(pairs: list[tuple[np.ndarray, np.ndarray]], truth: np.ndarray, n: int = 2000,
               seed: int = 0) -> tuple[float, float]:
    """2.5 and 97.5 percentiles of the mean over `pairs` (one (a, b) per study, candidates in the order of
    `truth`) of Spearman(a, truth) - Spearman(b, truth), over candidates resampled with replacement (paired:
    the same resample for both protocols and every study)."""
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n):
        idx = rng.integers(0, len(truth), len(truth))
        if len(np.unique(truth[idx])) < 3:
            continue
        diffs.append(np.mean([srcc(a[idx], truth[idx]) - srcc(b[idx], truth[idx]) for a, b in pairs]))
    return float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))


def table(results: list[dict], names: list[str], studies: list[int], k: int, truth_seeds: int) -> str:
    """Markdown: the candidates' scores, then per study and protocol the rank agreement with the truth."""
    at = {(r["candidate"], r["kind"], r["study"], r["index"]): r for r in results}

    def scores(name: str, kind: str, study: int, runs: range) -> list[float] | None:
        rows = [at.get((name, kind, study, i)) for i in runs]
        return None if None in rows or any(r["score"] is None for r in rows) else [r["score"] for r in rows]

    truth_runs = {n: scores(n, "truth", -1, range(truth_seeds)) for n in names}
    done = [n for n in names if truth_runs[n]]
    lines = ["| candidate | params | MFLOPs | truth: test score, mean of seeds (each) | "
             + " | ".join(f"study {s}: {p} mean" for s in studies for p in ("folds", "seeds")) + " |",
             "|---|---:|---:|---:|" + "---:|" * (2 * len(studies))]
    for n in names:
        row = at.get((n, "truth", -1, 0)) or next((r for r in results if r["candidate"] == n), None)
        if row is None:
            continue
        t = truth_runs[n]
        cells = [("-" if t is None else f"{np.mean(t):.3f} ({', '.join(f'{x:.3f}' for x in t)})")]
        for s in studies:
            for p in ("folds", "seeds"):
                v = scores(n, p, s, range(k))
                cells.append("-" if v is None else f"{np.mean(v):.3f}")
        lines.append(f"| {n} | {row['params']:,} | {row['mflops']:.0f} | " + " | ".join(cells) + " |")
    lines += ["", f"Rank agreement with the truth over the candidates each study has every run of ({k} runs per "
              "protocol; regret: the truth's best score minus the truth score of the protocol's pick; CPU s: "
              "process CPU seconds of the protocol's trainings, summed over those candidates):", "",
              "| study | protocol | candidates | Spearman | Kendall | picks the truth's best | top-1 regret | CPU s |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    if len(done) >= 3 and truth_seeds >= 2:
        a, b = (np.array([truth_runs[n][i] for n in done]) for i in (0, 1))
        lines.append(f"| - | truth seed 0 against truth seed 1 (the truth's own noise) | {len(done)} "
                     f"| {srcc(a, b):.3f} "
                     f"| {krcc(a, b):.3f} | - | - | - |")
    pooled: dict[str, list[float]] = {}
    every_study: list[tuple[np.ndarray, np.ndarray]] = []
    for s in studies:
        protocols = {f"{k} folds": ("folds", range(k)), f"{k} seeds": ("seeds", range(k)),
                     "1 fold (fold 0 alone)": ("folds", range(1)), "1 seed (seed 0 alone: a trial's single run)":
                     ("seeds", range(1))}
        full = [n for n in done if all(scores(n, kind, s, range(k)) for kind in ("folds", "seeds"))]
        if len(full) < 3:
            continue
        truth = np.array([np.mean(truth_runs[n]) for n in full])
        means = {}
        for label, (kind, runs) in protocols.items():
            m = np.array([np.mean(scores(n, kind, s, runs)) for n in full])
            means[label] = m
            pick = int(np.argmax(m))
            cpu = sum(at[(n, kind, s, i)]["cpu_s"] for n in full for i in runs)
            rho = srcc(m, truth)
            pooled.setdefault(label, []).append(rho)
            lines.append(f"| {s} | {label} | {len(full)} | {rho:.3f} | {krcc(m, truth):.3f} "
                         f"| {'yes' if pick == int(np.argmax(truth)) else 'no'} | {truth.max() - truth[pick]:.3f} "
                         f"| {cpu:.0f} |")
        lo, hi = _bootstrap([(means[f"{k} folds"], means[f"{k} seeds"])], truth)
        if full == done:
            every_study.append((means[f"{k} folds"], means[f"{k} seeds"]))
        lines.append(f"| {s} | Spearman of folds minus seeds, paired bootstrap over candidates, 95 % | {len(full)} "
                     f"| {srcc(means[f'{k} folds'], truth) - srcc(means[f'{k} seeds'], truth):+.3f} "
                     f"[{lo:+.3f}, {hi:+.3f}] | | | | |")
    if len(studies) > 1 and pooled:
        for label, rhos in pooled.items():
            lines.append(f"| mean of {len(rhos)} studies | {label} | | {np.mean(rhos):.3f} | | | | |")
    if len(every_study) > 1:
        truth = np.array([np.mean(truth_runs[n]) for n in done])
        lo, hi = _bootstrap(every_study, truth)
        mean = np.mean([srcc(a, truth) - srcc(b, truth) for a, b in every_study])
        lines.append(f"| mean of {len(every_study)} studies | Spearman of folds minus seeds, paired bootstrap over "
                     f"candidates, 95 % | {len(done)} | {mean:+.3f} [{lo:+.3f}, {hi:+.3f}] | | | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=None, help="AGIQA-3K folder (labels.csv + images/)")
    parser.add_argument("--quick", action="store_true", help="smoke run: synthetic set, tiny images, 4 candidates")
    parser.add_argument("--candidates", type=int, default=10, help="architectures (the proxy and sampled ones)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of every training (a short trial)")
    parser.add_argument("--k", type=int, default=3, help="runs per protocol (folds, seeds)")
    parser.add_argument("--studies", type=int, nargs="+", default=[0], help="study seeds (80/20 split, folds, seeds)")
    parser.add_argument("--truth-seeds", type=int, default=2, help="truth trainings per candidate, averaged")
    parser.add_argument("--cell", type=int, default=12, help="fragment cell side in px (7x7 cells of the 512 px image; "
                                                           "12: an 84 px view, three quarters of the cost of 16)")
    parser.add_argument("--flops-ratio", type=float, default=1.7, help="FLOPs cap of the sampled candidates, as a "
                                                                       "multiple of the proxy's")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs at once, one thread each (1 while others share the CPU)")
    parser.add_argument("--cache-dir", default=".cache/images")
    parser.add_argument("--out", default=None, help="JSON of every run; runs already in it are kept, so it resumes")
    parser.add_argument("--table-only", action="store_true", help="print the table of --out and run nothing")
    args = parser.parse_args()
    if args.quick:
        dataset, root, native, cells, cell = "synthetic", None, 64, 4, 8
        args.candidates, args.epochs = min(args.candidates, 4), min(args.epochs, 2)
    else:
        if not args.root:
            parser.error("--root is required (or --quick)")
        if not (Path(args.root) / "labels.csv").exists():
            print(f"skipped: no AGIQA-3K at {args.root} (labels.csv missing)")
            return
        dataset, root, native, cells, cell = "agiqa3k", str(Path(args.root).resolve()), 512, 7, args.cell
    torch.set_num_threads(1)
    specs = candidates(args.candidates, native, cells, cell, args.flops_ratio)
    common = dict(k=args.k, epochs=args.epochs, dataset=dataset, root=root, cache_dir=args.cache_dir,
                  batch_size=args.batch_size)
    order = []  # candidate by candidate, the first study whole (its truth too) before the next: a cut-short run
    for study in args.studies:  # still has a table
        for n, s in specs.items():
            if study == args.studies[0]:
                order += [Task(n, s.to_dict(), "truth", -1, t, **common) for t in range(args.truth_seeds)]
            order += [Task(n, s.to_dict(), kind, study, i, **common) for kind in ("folds", "seeds")
                      for i in range(args.k)]
    results = earlier_rows(Path(args.out)) if args.out else []
    results = [r for r in results if r.get("epochs") == args.epochs and r.get("k") == args.k]
    done = {(r["candidate"], r["kind"], r["study"], r["index"]) for r in results}
    todo = [t for t in order if t.key not in done]
    if not args.table_only:
        print(f"{len(specs)} candidates, {len(todo)} trainings to go ({len(done)} already in {args.out}), "
              f"{args.jobs} at once", flush=True)
        start = time.perf_counter()
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(args.jobs) if args.jobs > 1 else _InProcess() as pool:
            for row in pool.imap(run_task, todo):
                results.append(row)
                print(f"  [{time.perf_counter() - start:.0f}s] {row['candidate']}, {row['kind']} study {row['study']} "
                      f"run {row['index']}: {row['score']:.3f} ({row['cpu_s']:.0f} CPU s)", flush=True)
                if args.out:
                    tmp = Path(args.out).with_suffix(".tmp")
                    tmp.write_text(json.dumps(results, indent=0))
                    tmp.replace(args.out)
    print(f"\nprotocol bench: {dataset}, {len(specs)} candidates, {args.epochs} epochs, k {args.k}, studies "
          f"{args.studies}, {args.truth_seeds} truth seeds\n")
    print(table(results, list(specs), args.studies, args.k, args.truth_seeds))


class _InProcess:
    """A stand-in for a one-process pool: runs the tasks here, in order (the data decoded once)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def imap(self, fn, items):
        return map(fn, items)


if __name__ == "__main__":
    main()

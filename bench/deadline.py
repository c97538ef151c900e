"""Does the submission end before its deadline, and how good was its plan? The notebook's own code
(`results.submission.run_submission`) on a folder of labelled images, against the budget model.

    python bench/deadline.py --root ../shared/data/agiqa3k --deadline 300          # any machine
    # a patch recipe:
    python bench/deadline.py --root ../shared/data/agiqa3k --deadline 300 --patch 128 --widths 16 32 48 64
    python bench/deadline.py --quick                                               # CPU: synthetic, 40 s
    python bench/deadline.py --root /tmp/agiqa3k --export runs/a3k/export/export.json --deadline 9000  # a T4

Trains on 80 % of the prompts and predicts the other 20 % (their labels give the metrics). Prints the
plan the notebook printed, the epochs it ran, its end against the deadline, and the T4 budget model's
estimate of the same epochs (what export planned with), so the two can be compared on a real T4.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from results.submission import Submission, run_submission  # noqa: E402
from search.budget import BudgetModel  # noqa: E402
from search.data import grouped_holdout, make_synthetic  # noqa: E402
from search.train.recipe import Recipe  # noqa: E402
from search.train.retrain import budget_costs, plan_retrain  # noqa: E402
from search.train.recipe import TrainConfig  # noqa: E402
from space import ArchSpec, HeadSpec, InputSpec, StageSpec, StemSpec  # noqa: E402


def reference_recipe(size: int, widths: list[int]) -> Recipe:
    """A plain residual CNN at `size` px whole images (the quality bench's plain recipe)."""
    spec = ArchSpec(InputSpec(size, size, False), StemSpec("conv", widths[0], 3),
                    [StageSpec("residual", w, 1, 2, 3) for w in widths], HeadSpec("avg", 1))
    return Recipe(spec, TrainConfig(epochs=1000, batch_size=32))


def patch_recipe(patch: int, widths: list[int]) -> Recipe:
    """A plain residual CNN on `patch` px patches of the native 512 px image (one at random per training
    step, a 3 x 3 grid at test): a patch trial's cost profile, where scoring takes nine backbone passes."""
    spec = ArchSpec(InputSpec(512, 512, False, patch, 1, 3), StemSpec("conv", widths[0], 3),
                    [StageSpec("residual", w, 1, 2, 3) for w in widths], HeadSpec("avg", 1))
    return Recipe(spec, TrainConfig(epochs=1000, batch_size=32))


def split_folder(root: Path, work: Path) -> tuple[Path, Path, Path, Path]:
    """(images, train labels, test images, test labels): an 80/20 prompt-grouped split of AGIQA-3K."""
    labels = pd.read_csv(root / "labels.csv")
    train, test = grouped_holdout(labels["prompt"].to_numpy(dtype=object), 0.2, seed=0)
    (work / "test").mkdir(parents=True)
    for name in labels.iloc[test]["name"]:
        (work / "test" / name).symlink_to((root / "images" / name).resolve())
    labels.iloc[train].to_csv(work / "train.csv", index=False)
    labels.iloc[test].to_csv(work / "test.csv", index=False)
    return root / "images", work / "train.csv", work / "test", work / "test.csv"


def synthetic_folder(work: Path) -> tuple[Path, Path, Path, Path]:
    data = make_synthetic(n_images=200, size=64, seed=0)
    (work / "images").mkdir(parents=True)
    for name, img in zip(data.names, data.images):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(work / "images" / f"{name}.png")
    frame = pd.DataFrame({"name": [f"{n}.png" for n in data.names], "mos_quality": data.targets[:, 0].numpy()})
    frame.to_csv(work / "labels.csv", index=False)
    return work / "images", work / "labels.csv", work / "images", work / "labels.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=None, help="AGIQA-3K folder (labels.csv + images/)")
    parser.add_argument("--quick", action="store_true", help="synthetic images, a tiny CNN, a 40 s deadline")
    parser.add_argument("--export", default=None, help="export.json whose recipe to run (default: a plain CNN)")
    parser.add_argument("--size", type=int, default=160, help="image size of the plain CNN")
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64, 96])
    parser.add_argument("--patch", type=int, default=0, help="P > 0: the patch recipe (P px patches of 512 px images)")
    parser.add_argument("--epochs", type=int, default=1000, help="epochs wanted (the plan takes what fits)")
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds")
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.quick:
            folders, recipe, deadline = synthetic_folder(Path(tmp)), reference_recipe(64, [8, 16, 24]), 40.0
        else:
            if not args.root:
                parser.error("--root is required (or --quick)")
            folders, deadline = split_folder(Path(args.root), Path(tmp)), args.deadline
            recipe = (Recipe.from_dict(json.loads(Path(args.export).read_text())["recipe"]) if args.export
                      else patch_recipe(args.patch, args.widths) if args.patch
                      else reference_recipe(args.size, args.widths))
        images, train_csv, test_images, test_csv = map(str, folders)
        start = time.time()
        out = run_submission(Submission(
            team="bench", date="20260101", train_images=images, train_labels=train_csv, test_images=test_images,
            test_labels=test_csv, out_dir=tmp, recipe=recipe.to_dict(), epochs=args.epochs, deadline_s=deadline,
            start=start, precision=args.precision))
        n_train, n_test = len(pd.read_csv(train_csv)), len(list(Path(test_images).iterdir()))
        t4 = plan_retrain(recipe, n_train, n_test, budget_costs(BudgetModel(), recipe), np.inf,
                          out["plan"].epochs)
        print(f"\nran {out['epochs_run']} epochs (the first plan said {out['plan'].epochs}); "
              f"ended {out['elapsed_s']:.1f} s "
              f"after the start, deadline {deadline:.0f} s ({deadline - out['elapsed_s']:+.1f} s to spare, "
              f"{out['elapsed_s'] / deadline:.0%} of the deadline used)")
        print(f"measured {out['plan'].epoch_s:.2f} s/epoch here; the T4 budget model estimates {t4.epoch_s:.2f} "
              f"s/epoch ({t4.seconds / 60:.1f} min for the {out['plan'].epochs} epochs)")


if __name__ == "__main__":
    main()

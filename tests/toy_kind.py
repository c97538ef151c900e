"""A toy task kind, added in this one file and its registration (`results.notebook.register_kind`), nothing else:
"badness", the synthetic set scored the other way round (0 = pristine .. 8 = worst, `BADNESS`), trained as MOS,
not confirmable; its notebook reads `name,badness` labels and writes `badness.csv`. The tests run it through a
study, export and the notebook (tests/test_toy_kind.py)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from results.notebook import NotebookText, register_kind
from results.submission import NotebookKind, Submission, TestSet, read_images
from search.data import ImageSet, load_csv, make_synthetic
from search.data.decode import list_images
from search.study.kinds import MosKind
from search.train.retrain import measure_costs, retrain

TOY = "toy"


def badness(mos: torch.Tensor) -> torch.Tensor:
    """The synthetic MOS (5 pristine .. 1 worst) as badness, 0 (pristine) .. 8 (worst)."""
    return 2 * (5 - mos)


class ToyKind(MosKind):
    """The study side: the synthetic set's scores as badness; confirm is refused."""

    name = TOY
    confirmable = False
    why_not = {"confirmable": "confirm does not handle toy studies (study {study}): export with --no-confirm"}

    def takes(self, dataset: str) -> bool:
        return dataset == "synthetic"

    def load(self, cfg, size: int, progress: bool, memo: dict) -> ImageSet:
        data = make_synthetic(n_images=cfg.n_synthetic, size=size, seed=cfg.seed)
        return replace(data, targets=badness(data.targets[:, :1]), target_names=["badness"])


def toy_read(s: Submission, size: int) -> tuple[ImageSet, TestSet]:
    """The notebook's training images and `name,badness` labels, each image its own group."""
    table = load_csv(s.train_labels, "name", ["badness"], image_dir=s.train_images)
    names = list(table.frame["image"])
    images = ImageSet(read_images(table.image_dir, names, size)[0],
                      torch.tensor(table.frame[["badness"]].to_numpy(dtype="float32")),
                      table.frame["group"].to_numpy(dtype=object), names, ["badness"])
    return images, toy_test(s, size)


def toy_test(s: Submission, size: int, n_train: int = 0) -> TestSet:
    names = list_images(s.test_images)
    images, unreadable = read_images(s.test_images, names, size, skip_unreadable=True)
    return TestSet(names, images, unreadable)


def toy_targets(s: Submission) -> list[str]:
    return ["badness"]


def toy_write(s: Submission, tests: TestSet, pred, log) -> Path:
    """badness.csv: `name,badness` of every readable test image."""
    readable = [n for n in tests.names if n not in set(tests.unreadable)]
    out = Path(s.out_dir) / "badness.csv"
    pd.DataFrame({"name": readable, "badness": pred[:, 0]}).to_csv(out, index=False)
    log(f"wrote the badness of {len(readable)} test images")
    return out


TOY_SETTINGS = '''TRAIN_IMAGES = "/kaggle/input/toy/images"         # folder of training images
TRAIN_LABELS = "/kaggle/input/toy/badness.csv"    # name,badness
TEST_IMAGES = "/kaggle/input/toy/test"            # every image here is scored
'''

register_kind(ToyKind(), NotebookKind(toy_read, toy_test, retrain, measure_costs, toy_targets, toy_write, "images"),
              NotebookText(TOY_SETTINGS,
                           "train_images=TRAIN_IMAGES, train_labels=TRAIN_LABELS, test_images=TEST_IMAGES",
                           "toy badness model", "`badness.csv` with the badness of every image in `TEST_IMAGES`",
                           {"data": "the toy images and their badness", "settings": "`TRAIN_IMAGES`, `TRAIN_LABELS`, "
                            "`TEST_IMAGES`", "output": "`badness.csv`"}))

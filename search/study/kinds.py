"""The task kinds: everything that differs between a study that trains on MOS, on several labelled sources
at once, and on preference pairs, one class each (`MosKind`, `SourcesKind`, `PairsKind`).

A kind owns how a study's data is checked, read, split, fingerprinted, trained on and scored, how much of a
budget an item costs, what its notebook needs to know of the study, and what the stages may do with it
(`confirmable`, `compressible`, `distillable`, `pretrains`); the stages ask it (`StudyConfig.task`, the kind
`StudyConfig.kind` names) instead of testing the data's type. Its notebook half (reading the notebook's
inputs, writing its outputs, the notebook's text) is `results.submission.NOTEBOOK_KINDS` and `results.notebook.TEXTS`
under the same name (`results.notebook.register_kind` registers all three). A new kind is a subclass in one
file and `register(kind)`; `KINDS` holds them by name.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch
from torch import nn

from search.data import (
    PAIRS, ImageSet, check_dataset, check_pair_split, check_split_sizes, grouped_holdout, is_combined, load_imageset,
)
from search.data.cache import decode_pairs
from search.data.imageset import prefixed
from search.data.pairs import PAIR_COLUMNS, PairSet, load_pairs, split_pair_rows
from search.data.sources import source_names
from search.memory import check_host_memory
from search.profiles import DEFAULT_PROFILE, get_profile
from search.train.loop import EpochRecord, TrainResult, evaluate, train_model
from search.train.losses import LOSS_PRESETS
from search.train.pairs import PREFERENCE, evaluate_pairs, measure_pair_costs, retrain_pairs, train_pairs
from search.train.recipe import Recipe, TrainConfig
from search.train.retrain import DEFAULT_FINAL, Deadline, StepCosts, budget_costs, measure_costs, retrain

if TYPE_CHECKING:
    import optuna

    from search.budget import BudgetModel
    from search.study.settings import StudyConfig

Data = ImageSet | PairSet

PAIRS_PROFILE = "ntire-pairwise"
"""The profile of a preference-pairs study unless given: scored by pair accuracy."""
MOS_PRETRAIN_SHARES = [0.0, 0.2]
"""The pretraining shares of a study whose kind pretrains, unless given (the others: [0])."""


def study_split(groups: np.ndarray, val_fraction: float, test_fraction: float,
                seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) indices by prompt group; test is empty unless `test_fraction` > 0."""
    if not test_fraction:
        train, val = grouped_holdout(groups, val_fraction, seed=seed)
        return train, val, np.zeros(0, dtype=np.int64)
    rest, test = grouped_holdout(groups, test_fraction, seed=seed)
    train, val = grouped_holdout(groups[rest], val_fraction / (1 - test_fraction), seed=seed + 1)
    return rest[train], rest[val], test


def _check_split(cfg: StudyConfig, groups: np.ndarray, source: str) -> None:
    """Refuse the study's split of the images of `groups` (their prompts) from `source` when it cannot be made
    or leaves a part too small (`check_split_sizes`)."""
    try:
        train, val, test = study_split(groups, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    except ValueError as err:  # fewer prompts than the split has parts
        raise ValueError(f"{source}: {err}") from None
    parts = {"training": train, "validation": val, **({"test": test} if cfg.test_fraction else {})}
    check_split_sizes(source, groups, parts)


def with_files(images: ImageSet, version: str) -> list[str]:
    """The images' names, each with its file's digest ("name @ size:hash") from fingerprint version v3 on (names
    alone for images that are not files)."""
    if version == "v2" or images.digests is None:
        return list(images.names)
    return [f"{name} @ {digest}" for name, digest in zip(images.names, images.digests)]


class Kind:
    """What one kind of task does with a study's data. Subclasses set the class attributes and override the
    methods that differ; `MosKind` is the reference."""

    name: str
    images_per_item: int = 1
    """Images scored per training item: one image, or both images of a pair."""
    default_final: str = DEFAULT_FINAL
    """The final-training strategy export uses unless told (`search.train.retrain.FINALS`)."""
    default_profile: str = DEFAULT_PROFILE
    confirmable = compressible = distillable = pretrains = True
    """What the stages may do: retrain on prompt-grouped folds (confirm), prune and fine-tune (compress), learn
    from a teacher (export --teacher), self-supervised pretraining epochs; and the known recipes (measured on
    MOS) are enqueued first."""
    known_recipes = True
    why_not: dict[str, str] = {}
    """For each capability the kind lacks, why, in one line (`{study}`: the study's name)."""

    # -- which studies it is, and their settings
    def takes(self, dataset: str) -> bool:
        """Whether a study of `dataset` is of this kind when its settings name none (stored studies)."""
        return False

    def validate(self, cfg: StudyConfig) -> None:
        """Refuse (ValueError, one line) settings this kind cannot take."""
        if list(cfg.pair_columns) != list(PAIR_COLUMNS):
            raise ValueError(f"--pair-columns applies to --data {PAIRS} only, not to --data {cfg.dataset}")

    def require(self, capability: str, study: str = "NAME") -> None:
        """ValueError (one line, saying why) when the kind lacks `capability` (e.g. "confirmable")."""
        if not getattr(self, capability):
            raise ValueError(self.why_not[capability].format(study=study, kind=self.name))

    # -- the data
    def check_inputs(self, cfg: StudyConfig) -> None:
        """Every data-side check before a study exists (`search.study.data.check_study_inputs`)."""
        table = check_dataset(cfg.dataset, cfg.root, cfg.targets, cfg.pair_columns)
        if table is None:  # the synthetic set: generated, split and sized by code
            return
        self._check_images(cfg, table.frame["group"].to_numpy(dtype=object), str(table.source))

    @staticmethod
    def _check_images(cfg: StudyConfig, groups: np.ndarray, source: str) -> None:
        _check_split(cfg, groups, source)
        check_host_memory(len(groups), cfg.search_space().largest_input, f"images of {cfg.dataset} (the largest input "
                          f"the {cfg.space} space may choose; --patches 0 --fragments 0 keeps whole images)")

    def load(self, cfg: StudyConfig, size: int, progress: bool, memo: dict) -> Data:
        """Every item of the study at `size` px (`memo`: what one `StudyData` keeps between resolutions)."""
        return load_imageset(cfg.dataset, cfg.root, size=size, cache_dir=Path(cfg.cache_dir), targets=cfg.targets,
                             seed=cfg.seed, n_images=cfg.n_synthetic, progress=progress)

    def split(self, cfg: StudyConfig, data: Data) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(train, val, test) indices into `data`'s items."""
        return study_split(data.groups, cfg.val_fraction, cfg.test_fraction, cfg.seed)

    def subset(self, data: Data, idx: Sequence[int] | np.ndarray) -> Data:
        """The items `idx` of `data`."""
        return data.subset(idx)

    def images(self, data: Data) -> ImageSet:
        """The images the items are made of."""
        return data

    def fingerprint(self, data: Data, version: str) -> tuple[str, list[str]]:
        """(a header, one line per item, in item order) of what `data` is scored against, in fingerprint
        `version` ("v2", "v3": `search.study.data.FINGERPRINT_VERSIONS`)."""
        return " ".join(data.target_names), [f"{n} = {' '.join(f'{v:.9g}' for v in row)}"
                                             for n, row in zip(with_files(data, version), data.targets.tolist())]

    def names(self, data: Data, idx: np.ndarray) -> list[str]:
        """The image names of items `idx` (the unversioned fingerprint of the oldest studies)."""
        return [data.names[i] for i in idx]

    def counts(self, data: Data) -> dict[str, int]:
        """What export records of the data it retrained on."""
        return {"images": len(data)}

    def notebook_values(self, cfg: StudyConfig) -> dict:
        """What the notebook's Settings need of the study (`results.notebook.build_notebook`'s keywords)."""
        return {}

    # -- training and scoring
    def sampled_loss(self, trial: optuna.Trial) -> dict:
        """The `TrainConfig` loss settings a trial samples."""
        return {"loss_weights": dict(LOSS_PRESETS[trial.suggest_categorical("loss", list(LOSS_PRESETS))])}

    def train(self, model: nn.Module, train: Data, val: Data | None, cfg: TrainConfig,
              device: torch.device | str | None = None, on_epoch: Callable[[EpochRecord], bool] | None = None,
              progress: bool = False) -> TrainResult:
        return train_model(model, train, val, cfg, device=device, on_epoch=on_epoch, progress=progress)

    def evaluate(self, model: nn.Module, data: Data, crop: int | None, views: int,
                 device: torch.device | str | None = None) -> dict[str, dict[str, float]]:
        """Validation metrics per target of `model` on `data`."""
        return evaluate(model, data, crop, views, device=device)

    def target_names(self, data: Data) -> list[str]:
        """The model's outputs, by name (what a checkpoint records)."""
        return list(data.target_names)

    def retrain(self, recipe: Recipe, data: Data, seed: int, device: torch.device | str = "cpu",
                deadline: Deadline | None = None, reserve_s: float = 0.0,
                progress: bool = False, final: str = "all") -> tuple[nn.Module, TrainResult]:
        """`recipe` trained from scratch on `data` by the strategy `final`, within `deadline`."""
        return retrain(recipe, data, seed, device, deadline, reserve_s, progress, final)

    def measure(self, recipe: Recipe, data: Data, device: torch.device | str) -> StepCosts:
        """`recipe`'s step costs measured on `device` (throwaway copies trained a few steps on `data`)."""
        return measure_costs(recipe, data, device)

    def budget_costs(self, budget: BudgetModel, recipe: Recipe) -> StepCosts:
        """`recipe`'s step costs by the T4 budget model (a step scores `images_per_item` images per item)."""
        return budget_costs(budget, recipe, self.images_per_item)


class MosKind(Kind):
    """Images with mean opinion scores (one labelled dataset, or the synthetic set)."""

    name = "mos"

    def takes(self, dataset: str) -> bool:
        return dataset != PAIRS and not is_combined(dataset)


class SourcesKind(MosKind):
    """Several labelled datasets trained together, each source's MOS put on the first one's scale
    (`search.data.sources`)."""

    name = "sources"

    def takes(self, dataset: str) -> bool:
        return is_combined(dataset)

    def check_inputs(self, cfg: StudyConfig) -> None:
        """Each source could be split on its own too (so none is too small to standardise or to matter), and
        their prompts, prefixed as the combined set prefixes them, are split together."""
        tables = check_dataset(cfg.dataset, cfg.root, cfg.targets, cfg.pair_columns)
        for t in tables:
            _check_split(cfg, t.frame["group"].to_numpy(dtype=object), str(t.source))
        groups = np.concatenate([prefixed(t.name, t.frame["group"]) for t in tables])
        self._check_images(cfg, groups, " + ".join(str(t.source) for t in tables))

    def notebook_values(self, cfg: StudyConfig) -> dict:
        return {"sources": source_names(cfg.dataset)}


class PairsKind(Kind):
    """Preference pairs of images (`search.data.pairs`), trained with a Bradley-Terry loss
    (`search.train.pairs`), scored by pair accuracy, split by image."""

    name, images_per_item, default_final, default_profile = "pairs", 2, "all", PAIRS_PROFILE
    confirmable = compressible = distillable = pretrains = known_recipes = False
    why_not = {
        "confirmable": "confirm does not handle preference-pair studies (its folds group images by prompt; pairs "
                       "are split by image): export a trial directly, `run_search.py export --study {study} "
                       "--no-confirm`",
        "compressible": "compress does not handle preference-pair studies yet (its fine-tuning and scratch variants "
                        "train on MOS): export a trial directly, `run_search.py export --study {study}`",
        "distillable": "--teacher does not apply to a preference-pairs study: distillation needs MOS training",
        "pretrains": "--data pairs trains from the pairs alone, without self-supervised pretraining",
    }

    def takes(self, dataset: str) -> bool:
        return dataset == PAIRS

    def validate(self, cfg: StudyConfig) -> None:
        """What a pairs study cannot take: a MOS profile, score columns; its CSV columns."""
        profile = get_profile(cfg.profile)
        if not profile.pairwise:
            raise ValueError(f"--data {PAIRS} is scored by pair accuracy: use --profile {PAIRS_PROFILE} (profile "
                             f"{cfg.profile!r} scores {profile.score_name} of MOS predictions)")
        if cfg.targets:
            raise ValueError(f"--targets does not apply to --data {PAIRS}: preference pairs carry no score columns")
        if len(cfg.pair_columns) != 3 or len(set(cfg.pair_columns)) != 3:
            raise ValueError("--pair-columns takes three different column names (image a, image b, winner), "
                             f"got {cfg.pair_columns}")

    def check_inputs(self, cfg: StudyConfig) -> None:
        table = check_dataset(cfg.dataset, cfg.root, cfg.targets, cfg.pair_columns)
        check_pair_split(table, cfg.val_fraction, cfg.test_fraction, cfg.seed)

    def load(self, cfg: StudyConfig, size: int, progress: bool, memo: dict) -> PairSet:
        if "pairs" not in memo:
            memo["pairs"] = load_pairs(cfg.root, tuple(cfg.pair_columns))
        return decode_pairs(memo["pairs"], size, Path(cfg.cache_dir), progress=progress)

    def split(self, cfg: StudyConfig, data: PairSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """By image: test images first, then validation images, so no image of a validation or test pair is
        seen in training."""
        return split_pair_rows(len(data.images), data.pairs, cfg.val_fraction, cfg.test_fraction, cfg.seed)

    def subset(self, data: PairSet, idx) -> PairSet:
        return data.select(np.asarray(idx))

    def images(self, data: PairSet) -> ImageSet:
        return data.images

    def fingerprint(self, data: PairSet, version: str) -> tuple[str, list[str]]:
        names = with_files(data.images, version)
        return "winner > loser", [f"{names[won]} > {names[lost]}" for won, lost in data.pairs.tolist()]

    def names(self, data: PairSet, idx: np.ndarray) -> list[str]:
        return data.select(idx).images.names

    def counts(self, data: PairSet) -> dict[str, int]:
        return {"images": len(data.images), "pairs": len(data)}

    def notebook_values(self, cfg: StudyConfig) -> dict:
        return {"pair_columns": list(cfg.pair_columns)}

    def sampled_loss(self, trial: optuna.Trial) -> dict:
        """None: a pairs trial trains with the Bradley-Terry loss, and `loss_weights` keeps its default, which
        pair training does not read."""
        return {}

    def train(self, model, train, val, cfg, device=None, on_epoch=None, progress=False) -> TrainResult:
        return train_pairs(model, train, val, cfg, device=device, on_epoch=on_epoch, progress=progress)

    def evaluate(self, model, data, crop, views, device=None) -> dict[str, dict[str, float]]:
        return evaluate_pairs(model, data, crop, views, device=device)

    def target_names(self, data: PairSet) -> list[str]:
        return [PREFERENCE]

    def retrain(self, recipe, data, seed, device="cpu", deadline=None, reserve_s=0.0, progress=False, final="all"):
        return retrain_pairs(recipe, data, seed, device, deadline, reserve_s, progress, final)

    def measure(self, recipe, data, device) -> StepCosts:
        return measure_pair_costs(recipe, data, device)



KINDS: dict[str, Kind] = {}
"""The task kinds by name (`StudyConfig.kind`)."""


def register(kind: Kind) -> Kind:
    """Add `kind` to `KINDS` (a kind of the same name is replaced)."""
    KINDS[kind.name] = kind
    return kind


for _kind in (MosKind(), SourcesKind(), PairsKind()):
    register(_kind)


def kind_named(name: str) -> Kind:
    """The kind called `name`; ValueError naming the known ones."""
    if name not in KINDS:
        raise ValueError(f"unknown task kind {name!r}; choose from {', '.join(KINDS)}")
    return KINDS[name]


def kind_of_dataset(dataset: str) -> str:
    """The name of the kind a study of `dataset` is when its settings name none (every study stored before
    `StudyConfig.kind` existed): "pairs", "sources" (a '+'-joined dataset) or "mos"."""
    return next((name for name, kind in KINDS.items() if kind.takes(dataset)), "mos")

"""A study's settings (`StudyConfig`, stored in the study so workers can join) and the named choices
they refer to: loss presets, search-space presets."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Callable

from search.budget import BudgetModel
from search.data import check_dataset_name
from search.data.pairs import PAIR_COLUMNS
from search.profiles import get_profile
from search.study.early_stop import EARLY_STOPPING
from search.study.sampler import SAMPLERS
from search.train.losses import LOSS_PRESETS as LOSS_PRESETS  # the loss mixes, beside the losses; re-exported
from search.study.kinds import MOS_PRETRAIN_SHARES, Kind, kind_named, kind_of_dataset
from space import SpaceConfig

SPACE_PRESETS: dict[str, Callable[[], SpaceConfig]] = {
    "default": SpaceConfig, "small": SpaceConfig.small, "tiny": SpaceConfig.tiny,
}

MIN_SYNTHETIC = 24
"""Fewest synthetic images a study accepts: 4 scenes (prompts), enough for a grouped train/val/test split."""

PATCH_VIEWS = ("patch_grids", "test_scales", "test_flips", "patch_pools")
"""The `SpaceConfig` fields of a patch trial's test views and pooling that a study stores (`patch_views`)."""
FIRST_PATCH_VIEWS = {"patch_grids": [3], "test_scales": [1.0], "test_flips": [False], "patch_pools": ["mean"]}
"""What the patch trials of a study stored before `patch_views` existed chose from: a 3 x 3 grid, the
mean, no other views; a resumed old study keeps sampling exactly that."""

LOCAL_SETTINGS = ("root", "device", "cache_dir")
"""Settings that may differ between the command that created a study and one that resumes or joins it."""


def space_config(name: str) -> SpaceConfig:
    """The search-space preset called `name`."""
    if name not in SPACE_PRESETS:
        raise ValueError(f"unknown space preset {name!r}; choose from {', '.join(SPACE_PRESETS)}")
    return SPACE_PRESETS[name]()


def _choice(setting: str, value: str, known) -> None:
    if value not in known:
        raise ValueError(f"unknown {setting} {value!r}; choose from {', '.join(known)}")


@dataclass
class StudyConfig:
    """Everything a worker needs to run trials of a study; stored in the study so workers can join."""

    dataset: str = "synthetic"
    """A name in `search.data.DATASETS`, or labelled ones joined by '+' (`search.data.sources`)."""
    kind: str | None = None
    """The task kind (`search.study.kinds.KINDS`: "mos", "sources", "pairs"); None: the one `dataset` implies
    (`kind_of_dataset`), which is also how a study stored before this setting existed reads."""
    root: str | None = None
    """The dataset's folder; of a combined dataset, `NAME=PATH,NAME=PATH` (one folder per source)."""
    targets: list[str] | None = None
    n_synthetic: int = 1200
    profile: str | None = None
    """Challenge rules (search.profiles); its targets and split fill the settings left as None. None: the
    task kind's (`Kind.default_profile`)."""
    pair_columns: list[str] = field(default_factory=lambda: list(PAIR_COLUMNS))
    """A pairs study's CSV columns (ROOT/pairs.csv): the two images and the winner (`a`/`b` or a file name)."""
    space: str = "default"
    """Search-space preset: "default" (224-384 px), "small" (128-160 px) or "tiny" (64 px synthetic demo, tests)."""
    patches: list[int] | None = None
    """Input patch sizes the trials may choose (`SpaceConfig.patches`: 0 = the whole image at the preset's
    sizes, P = P x P patches of the image at its native size); None = the preset's, stored as a list."""
    fragments: list[int] | None = None
    """Fragment grids the trials without patches may choose (`SpaceConfig.fragments`: 0 = off, S = an S x S
    grid of native-resolution mini-patches spliced into one view); None = the preset's, stored as a list."""
    patch_views: dict[str, list] | None = None
    """The test views and pooling the patch trials may choose: `SpaceConfig` fields named in `PATCH_VIEWS`
    (test grids, scales, flips, pooling over patches); None = the preset's, stored as lists."""
    val_fraction: float | None = None
    test_fraction: float | None = None
    """Prompts held out of the search entirely; each finished trial is scored on them once."""
    seed: int = 0
    trial_budget_s: float = 300.0
    """Training budget of one trial, in T4 seconds (see search.budget)."""
    max_epochs: int = 60
    min_epochs: int = 4
    """Fewest MOS epochs a trial trains (or `max_epochs`, if fewer): a proposal that would get fewer in
    `trial_budget_s` is shrunk (its widths) until they fit, or not trained when even the narrowest does not."""
    batch_size: int = 32
    pretrain_shares: list[float] | None = None
    """Shares of a trial's training time that may go to self-supervised pretraining
    (`TrainConfig.pretrain_epochs`, see `plan_schedule`); the sampler picks one per trial. None:
    `MOS_PRETRAIN_SHARES`, or [0] for a task kind that does not pretrain (`Kind.pretrains`)."""
    ema_decays: list[float] = field(default_factory=lambda: [0.0, 0.998])
    """Weight-averaging decays the sampler picks from (0 = off)."""
    eval_views: int = 1
    sampler: str = "tpe"
    flops_objective: bool = False
    early_stop: str | bool = "rungs"
    """A name in `EARLY_STOPPING`; True and False (older studies, `--no-early-stop`) mean "rungs" and "none"."""
    rung_fractions: list[float] = field(default_factory=lambda: [0.25, 0.5])
    dominators: int = 3
    margin: float = 0.01
    t4_efficiency: float = BudgetModel.efficiency
    heartbeat_interval: int = 20
    grace_period: int = 60
    max_retry: int = 2
    device: str = "auto"
    cache_dir: str = ".cache/images"

    def __post_init__(self) -> None:
        if self.kind is None:
            self.kind = kind_of_dataset(self.dataset)
        kind = self.task
        if self.profile is None:
            self.profile = kind.default_profile
        if self.pretrain_shares is None:
            self.pretrain_shares = list(MOS_PRETRAIN_SHARES) if kind.pretrains else [0.0]
        profile = get_profile(self.profile)
        if self.targets is None and profile.targets is not None:
            self.targets = list(profile.targets)
        self.val_fraction = profile.val_fraction if self.val_fraction is None else self.val_fraction
        self.test_fraction = profile.test_fraction if self.test_fraction is None else self.test_fraction
        if isinstance(self.early_stop, bool):
            self.early_stop = "rungs" if self.early_stop else "none"
        if self.patches is None:  # stored explicitly: a later change of the preset cannot change a study's space
            self.patches = list(space_config(self.space).patches)
        if self.fragments is None:  # stored explicitly, as patches
            self.fragments = list(space_config(self.space).fragments)
        if self.patch_views is None:  # stored explicitly, as patches
            self.patch_views = {name: list(getattr(space_config(self.space), name)) for name in PATCH_VIEWS}
        self._validate()

    @property
    def task(self) -> Kind:
        """The task kind the study's trials train for (`kind`, by name): what differs between MOS, several
        sources and preference pairs."""
        return kind_named(self.kind)

    def _validate(self) -> None:
        check_dataset_name(self.dataset)
        kind = self.task
        if not kind.takes(self.dataset):
            raise ValueError(f"task kind {kind.name!r} does not take --data {self.dataset} (that is a "
                             f"{kind_of_dataset(self.dataset)!r} study)")
        kind.validate(self)
        if not kind.pretrains and any(self.pretrain_shares):
            raise ValueError(f"{kind.why_not['pretrains']}: --pretrain-shares must be 0, got {self.pretrain_shares}")
        if set(self.patch_views) != set(PATCH_VIEWS) or not all(self.patch_views.values()):
            raise ValueError(f"patch_views must give a non-empty list for each of {', '.join(PATCH_VIEWS)}, "
                             f"got {self.patch_views}")
        space = self.search_space()
        if any(p and not 8 <= p <= space.native for p in space.patches) or not space.patches:
            raise ValueError(f"patches must be 0 (whole image) or sizes in 8..{space.native} px (the {self.space} "
                             f"space's native size), got {self.patches}")
        if not space.fragments or any(s < 0 or s * max(space.fragment_sizes) > space.native for s in space.fragments):
            raise ValueError(f"fragments must be 0 (off) or grids of at most "
                             f"{space.native // max(space.fragment_sizes)} "
                             f"cells a side ({max(space.fragment_sizes)} px fragments of the {self.space} space's "
                             f"{space.native} px images), got {self.fragments}")
        _choice("sampler", self.sampler, SAMPLERS)
        _choice("early stopping", self.early_stop, EARLY_STOPPING)
        for name, value, least in (("max_epochs", self.max_epochs, 1), ("min_epochs", self.min_epochs, 1),
                                   ("batch_size", self.batch_size, 1),
                                   ("eval_views", self.eval_views, 1),
                                   ("n_synthetic", self.n_synthetic, MIN_SYNTHETIC)):
            if value < least:
                raise ValueError(f"{name} must be at least {least}, got {value}")
        BudgetModel(efficiency=self.t4_efficiency)  # refuses an efficiency outside EFFICIENCY_RANGE
        if not self.trial_budget_s > 0:
            raise ValueError(f"trial_budget_s must be > 0 (T4 seconds per trial), got {self.trial_budget_s}")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must lie in [0, 2**32), got {self.seed}")
        if not (0 < self.val_fraction < 1 and 0 <= self.test_fraction < 1
                and self.val_fraction + self.test_fraction < 1):
            raise ValueError(f"need 0 < val_fraction, 0 <= test_fraction and their sum < 1; "
                             f"got {self.val_fraction} and {self.test_fraction}")
        if not self.pretrain_shares or any(not 0 <= f < 1 for f in self.pretrain_shares):
            raise ValueError(f"pretrain_shares must be a non-empty list of values in [0, 1), "
                             f"got {self.pretrain_shares}")
        if not self.ema_decays or any(not 0 <= d < 1 for d in self.ema_decays):
            raise ValueError(f"ema_decays must be a non-empty list of values in [0, 1), got {self.ema_decays}")
        if any(not 0 < f < 1 for f in self.rung_fractions):
            raise ValueError(f"rung_fractions must lie in (0, 1), got {self.rung_fractions}")

    def search_space(self) -> SpaceConfig:
        """The space preset with this study's own choices (`patches`, `fragments`, `patch_views`)."""
        return replace(space_config(self.space), patches=tuple(self.patches), fragments=tuple(self.fragments),
                       **{name: tuple(values) for name, values in self.patch_views.items()})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> StudyConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown study settings: {', '.join(unknown)}")
        # studies stored before patches (fragments, test views) existed saw whole images only (3 x 3 grids)
        return cls(**{"patches": [0], "fragments": [0], "patch_views": dict(FIRST_PATCH_VIEWS), **data})

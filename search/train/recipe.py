"""What to train from scratch, as plain data: the training settings and the recipe.

`TrainConfig` holds every training knob (optimiser, schedule, budget, loss mix, crops, precision, EMA,
pretraining, distillation). `Recipe` = an architecture spec + its `TrainConfig` + optionally the recipe
of a distillation teacher, trained first on the same data. A recipe is the one currency between the
study (a trial's recipe), compress (a pruned architecture with its trial's recipe), export, the
benchmarks and the notebook, and it round-trips through JSON (`to_dict` / `from_dict`), so the
notebook holds it as a literal.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields, replace

from search.train.distort import DISTORTIONS
from search.train.losses import make_loss
from space import ArchSpec

PRECISIONS = ("auto", "fp32", "fp16", "bf16")


@dataclass
class TrainConfig:
    epochs: int = 10
    time_budget_s: float | None = None
    """Seconds of training (pretraining included) that must not be passed. After every epoch the
    remaining epochs are refit to the measured epoch time, and the learning-rate schedule with them, so
    training anneals before the clock runs out; a step that would pass it ends training at once."""
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    loss_weights: dict[str, float] = field(default_factory=lambda: {"mse": 1.0})
    crop: int | None = None
    """Training crop and evaluation view size; None = the full cached image."""
    hflip: bool = True
    eval_views: int = 1
    """1 (centre), 5 (centre + corners) or 10 (those and their mirror images)."""
    precision: str = "auto"
    """Autocast dtype (`resolve_precision`): "auto" (bf16 on GPUs of compute capability >= 8.0, fp16 with
    loss scaling below, e.g. a T4; fp32 on a CPU), "fp16" (the T4 path, on any device), "bf16", "fp32"."""
    channels_last: bool = True
    """CUDA only."""
    seed: int = 0
    grad_clip: float | None = 1.0
    ema_decay: float = 0.0
    """0: off. Otherwise an exponential moving average of the weights (and BatchNorm statistics) with
    this decay, warmed up over the first steps, is what is evaluated and what the model keeps."""
    pretrain_epochs: int = 0
    """Self-supervised epochs before the MOS epochs: the model learns to score each training crop above
    a mildly and a strongly degraded copy of itself (`search.train.distort`), with its own LR schedule. A
    pretraining step runs three crops per image, so it costs about three MOS steps."""
    distill_weight: float = 0.0
    """Weight of a distillation term: MSE between the model's and a teacher's standardised scores on the
    same crops (`train_model(..., teacher=)`, a larger model trained from scratch on the same data)."""
    pretrain_distortions: list[str] = field(default_factory=lambda: list(DISTORTIONS))
    """Which `search.train.distort` distortions pretraining ranks against (one per step, at random). They
    should be ones that lower quality in the target data: a small model cannot reconcile many that
    pull its features different ways (noise adds the fine detail that blur removes)."""

    def validate(self) -> None:
        """Raise ValueError naming the first bad field (called by `train_model`, after any edits)."""
        checks = {
            "epochs": self.epochs >= 1, "batch_size": self.batch_size >= 1, "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0, "warmup_epochs": self.warmup_epochs >= 0,
            "time_budget_s": self.time_budget_s is None or self.time_budget_s > 0,
            "crop": self.crop is None or self.crop >= 1, "eval_views": self.eval_views in (1, 5, 10),
            "grad_clip": self.grad_clip is None or self.grad_clip > 0, "ema_decay": 0 <= self.ema_decay < 1,
            "pretrain_epochs": self.pretrain_epochs >= 0, "distill_weight": self.distill_weight >= 0,
            "precision": self.precision in PRECISIONS,
            "pretrain_distortions": bool(self.pretrain_distortions)
            and set(self.pretrain_distortions) <= set(DISTORTIONS),
        }
        for name, ok in checks.items():
            if not ok:
                hint = {"pretrain_distortions": f"; choose from {', '.join(DISTORTIONS)}",
                        "precision": f"; choose from {', '.join(PRECISIONS)}"}.get(name, "")
                raise ValueError(f"TrainConfig.{name} is invalid: {getattr(self, name)!r}{hint}")
        make_loss(self.loss_weights)  # names and signs of the loss weights

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        data = dict(data)
        if "amp" in data:  # recipes stored before `precision` existed: amp on = "auto", off = fp32
            data.setdefault("precision", "auto" if data.pop("amp") else "fp32")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s): {', '.join(unknown)}")
        return cls(**{k: dict(v) if k == "loss_weights" else list(v) if k == "pretrain_distortions" else v
                      for k, v in data.items()})


@dataclass
class Recipe:
    spec: ArchSpec
    train: TrainConfig
    teacher: Recipe | None = None
    """Trained first, on the same images at the student's input size; it only teaches and is not saved."""

    def __post_init__(self) -> None:
        # A copy of the given settings (a caller's TrainConfig is never changed): the training crop is the spec's,
        # never a second copy, and a patch or fragment view scores its own grid, so crops would repeat it.
        views = 1 if self.spec.input.patch or self.spec.input.fragments else self.train.eval_views
        self.train = replace(self.train, crop=self.spec.input.crop, eval_views=views)
        if self.teacher is not None and self.teacher.teacher is not None:
            raise ValueError("a teacher recipe cannot have a teacher of its own")

    def to_dict(self) -> dict:
        return {"spec": self.spec.to_dict(), "train": self.train.to_dict(),
                "teacher": None if self.teacher is None else self.teacher.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> Recipe:
        return cls(ArchSpec.from_dict(data["spec"]), TrainConfig.from_dict(data["train"]),
                   None if data.get("teacher") is None else cls.from_dict(data["teacher"]))

    def with_teacher(self, teacher: Recipe, distill_weight: float = 1.0) -> Recipe:
        """This recipe distilled from `teacher`'s architecture and settings, at this recipe's input size
        and crop (the teacher scores the student's crops)."""
        spec = copy.deepcopy(teacher.spec)
        spec.input.resize, spec.input.crop = self.spec.input.resize, self.spec.input.crop
        return Recipe(copy.deepcopy(self.spec), replace(self.train, distill_weight=distill_weight),
                      Recipe(spec, teacher.train))

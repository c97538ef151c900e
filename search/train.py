"""The budgeted trainer: any `nn.Module` that maps an image batch to scores, trained from scratch.

Images go to the device once as uint8; each step gathers a batch there, crops and flips it there,
and runs the model under autocast on CUDA (bf16 where the GPU supports it natively, fp16 with loss
scaling otherwise, e.g. a T4). AdamW with linear warm-up and cosine decay; a budget in epochs and,
optionally, seconds. If the model has `target_mean` / `target_std` buffers, they are set from the
training targets and the loss is computed on standardised scores, so the model predicts MOS directly.

A step whose loss or gradients are not finite is skipped (no update); an epoch in which every step was
skipped, or non-finite validation predictions, raise `TrainingDiverged` rather than carrying NaN weights on.

With `pretrain_epochs`, the MOS epochs are preceded by self-supervised ranking epochs on the same
training images (an image above degraded copies of itself): no external data, allowed by the rules.

On CUDA a step never waits for the GPU: the skip is decided on the device (a GradScaler, at scale 1
unless fp16 needs loss scaling, feeds its found-inf flag to a fused AdamW), the running loss stays a
device tensor, and the host synchronises once per epoch. Small models are launch-bound, and a
per-step `loss.item()` would leave the GPU idle while Python queues the next step (bench/NOTES.md).
"""
from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from search.augment import crop_views, random_crop_flip, to_model_input
from search.data.imageset import ImageSet
from search.distort import DISTORTIONS, graded_pair
from search.losses import make_loss
from search.metrics import iqa_metrics


class TrainingDiverged(RuntimeError):
    """Training produced non-finite losses or predictions (the recipe diverged for this model)."""


@dataclass
class TrainConfig:
    epochs: int = 10
    time_budget_s: float | None = None
    """Stop after this many seconds of training, whichever of epochs and seconds comes first; the
    learning-rate schedule is still planned over `epochs`."""
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
    amp: bool = True
    """Autocast on CUDA only: bf16 where supported, else fp16 with a GradScaler."""
    channels_last: bool = True
    """CUDA only."""
    seed: int = 0
    grad_clip: float | None = 1.0
    ema_decay: float = 0.0
    """0: off. Otherwise an exponential moving average of the weights (and BatchNorm statistics) with
    this decay, warmed up over the first steps, is what is evaluated and what the model keeps."""
    pretrain_epochs: int = 0
    """Self-supervised epochs before the MOS epochs: the model learns to score each training crop above
    a mildly and a strongly degraded copy of itself (`search.distort`), with its own LR schedule. A
    pretraining step runs three crops per image, so it costs about three MOS steps."""
    distill_weight: float = 0.0
    """Weight of a distillation term: MSE between the model's and a teacher's standardised scores on the
    same crops (`train_model(..., teacher=)`, a larger model trained from scratch on the same data)."""
    pretrain_distortions: list[str] = field(default_factory=lambda: list(DISTORTIONS))
    """Which `search.distort` distortions pretraining ranks against (one per step, at random). They
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
            "pretrain_distortions": bool(self.pretrain_distortions)
            and set(self.pretrain_distortions) <= set(DISTORTIONS),
        }
        for name, ok in checks.items():
            if not ok:
                hint = f"; choose from {', '.join(DISTORTIONS)}" if name == "pretrain_distortions" else ""
                raise ValueError(f"TrainConfig.{name} is invalid: {getattr(self, name)!r}{hint}")
        make_loss(self.loss_weights)  # names and signs of the loss weights

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s): {', '.join(unknown)}")
        return cls(**{k: dict(v) if k == "loss_weights" else list(v) if k == "pretrain_distortions" else v
                      for k, v in data.items()})


@dataclass
class EpochRecord:
    epoch: int
    """1-based."""
    train_loss: float
    """Mean loss over the epoch's finite (not skipped) steps."""
    seconds: float
    """Cumulative training wall time (evaluation excluded)."""
    images_per_s: float
    lr: float
    """Learning rate at the end of the epoch."""
    metrics: dict[str, float]
    """Validation metrics of the first target ({} without a validation set)."""
    target_metrics: dict[str, dict[str, float]]
    """Validation metrics per target name."""
    skipped_steps: int = 0
    """Steps skipped for a non-finite loss."""


@dataclass
class TrainResult:
    history: list[EpochRecord]
    stopped_early: bool
    """True when `on_epoch` stopped training before its planned epochs."""
    seconds: float
    target_metrics: dict[str, dict[str, float]]
    """Final validation metrics per target name."""

    @property
    def epochs_run(self) -> int:
        return len(self.history)

    @property
    def metrics(self) -> dict[str, float]:
        """Final validation metrics of the first target ({} without a validation set)."""
        return self.history[-1].metrics if self.history else {}


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the base LR at `step` (0-based): linear warm-up to 1 over `warmup_steps`, capped
    by a cosine from 1 at step 0 to 0 at `total_steps`."""
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, total_steps))))
    return min((step + 1) / max(1, warmup_steps), cosine)


def _autocast(device: torch.device, enabled: bool):
    if device.type != "cuda" or not enabled:
        return torch.autocast(device_type=device.type, enabled=False)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and normalisation parameters (every parameter with ndim < 2)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _set_target_buffers(model: nn.Module, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Set `target_mean` / `target_std` from the training targets; None if the model has no such buffers."""
    if not (hasattr(model, "target_mean") and hasattr(model, "target_std")):
        return None
    mean = targets.mean(0)
    std = targets.std(0, unbiased=False)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))  # a constant target: leave its scale alone
    model.target_mean.copy_(mean)
    model.target_std.copy_(std)
    return mean, std


def _standardise(scores: torch.Tensor, norm: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """Scores in MOS units -> standardised by the training targets (unchanged without target buffers)."""
    return (scores - norm[0]) / norm[1] if norm else scores


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 64, device: torch.device | str | None = None,
            crop: int | None = None, views: int = 1, amp: bool = True, channels_last: bool = True) -> np.ndarray:
    """Scores [N, T] (float32) for uint8 images [N,3,S,S], averaged over `views` deterministic crops of
    `crop` px (None = the full image). Eval mode, no grad; autocast only on CUDA. Moves the model to
    `device` (default: where the model is)."""
    device = torch.device(device) if device is not None else _model_device(model)
    model.eval().to(device)
    crop = crop or images.shape[-1]
    channels_last = channels_last and device.type == "cuda"
    out = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].to(device, non_blocking=True)
        preds = []
        for view in crop_views(batch, crop, views):
            with _autocast(device, amp):
                preds.append(model(to_model_input(view, channels_last)).float())
        out.append(torch.stack(preds).mean(0).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)


def _metrics_per_target(pred: np.ndarray, data: ImageSet) -> dict[str, dict[str, float]]:
    truth = data.targets.numpy()
    return {name: iqa_metrics(pred[:, i], truth[:, i]) for i, name in enumerate(data.target_names)}


class WeightAverage:
    """An exponential moving average of a model's floating-point parameters and buffers, updated on
    the device without a host sync; the decay ramps up as min(decay, (1 + t) / (10 + t))."""

    def __init__(self, model: nn.Module, decay: float):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.updates = decay, 0
        pairs = list(zip(self.model.state_dict().values(), model.state_dict().values()))
        self._float = [p for p in pairs if p[0].is_floating_point()]
        self._other = [p for p in pairs if not p[0].is_floating_point()]

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        weight = 1 - min(self.decay, (1 + self.updates) / (10 + self.updates))
        averaged, live = zip(*self._float)
        torch._foreach_lerp_(list(averaged), list(live), weight)
        for averaged_t, live_t in self._other:
            averaged_t.copy_(live_t)


class _Stepper:
    """One optimisation step per call: AdamW (fused on CUDA) under linear warm-up and cosine decay,
    gradient clipping, and skipping of non-finite steps, decided on the device on CUDA (a GradScaler at
    scale 1 unless fp16 needs real loss scaling feeds its found-inf flag to the optimiser) and on the
    host on the CPU. Returns the step's finite flag as a tensor, so a GPU caller never waits."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, total_steps: int, warmup_steps: int, device: torch.device,
                 average: WeightAverage | None = None):
        self.model, self.clip, self.average = model, cfg.grad_clip, average
        self.on_gpu = device.type == "cuda"
        # fp16 autocast (a GPU without bf16, e.g. a T4): the scaler then scales the loss for real
        self.fp16 = cfg.amp and self.on_gpu and not torch.cuda.is_bf16_supported()
        self.optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr, fused=self.on_gpu)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, warmup_steps, total_steps))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.on_gpu,
                                           **({} if self.fp16 else {"init_scale": 1.0, "growth_interval": 2**30}))

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def __call__(self, loss: torch.Tensor) -> torch.Tensor:
        finite = torch.isfinite(loss.detach())
        self.optimizer.zero_grad(set_to_none=True)
        if self.on_gpu or bool(finite):
            self.scaler.scale(loss).backward()
            if self.clip:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.clip, foreach=True)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.schedule.step()
            if self.average:
                self.average.update()
        return finite


def _steps_per_epoch(n: int, batch_size: int) -> int:
    return n // batch_size + (1 if n % batch_size > 1 else 0)  # a last batch of one would break BatchNorm


PRETRAIN_MARGIN = 0.5
"""Score gap, in standard deviations of the training MOS, that pretraining asks between an image and a
copy degraded one step further; a hinge, so scores stop growing once the order is clear."""


def pretrain(model: nn.Module, images: torch.Tensor, cfg: TrainConfig, device: torch.device | str | None = None,
             seconds_left: float = math.inf) -> float:
    """`cfg.pretrain_epochs` self-supervised ranking epochs on uint8 `images` (no labels): the model's
    first output must score each crop `PRETRAIN_MARGIN` above a mildly degraded copy and that above a
    strongly degraded one (in units of `target_std` when the model has it). Stops early after
    `seconds_left`; returns the wall seconds spent. `train_model` calls it before the MOS epochs."""
    device = torch.device(device) if device is not None else _model_device(model)
    model.to(device)
    images = images.to(device)
    crop = cfg.crop or images.shape[-1]
    scale = model.target_std[0] if hasattr(model, "target_std") else 1.0
    n, bs = len(images), min(cfg.batch_size, len(images))
    steps = _steps_per_epoch(n, bs)
    optimise = _Stepper(model, cfg, cfg.pretrain_epochs * steps, round(cfg.warmup_epochs * steps), device)
    channels_last = cfg.channels_last and device.type == "cuda"
    gen = torch.Generator(device=device if device.type == "cuda" else "cpu").manual_seed(cfg.seed + 2)
    host, perm_gen = torch.Generator().manual_seed(cfg.seed + 3), torch.Generator().manual_seed(cfg.seed + 4)
    start, out_of_time = time.perf_counter(), False
    model.train()
    for _ in range(cfg.pretrain_epochs):
        order = torch.randperm(n, generator=perm_gen).to(device)
        failed, steps_run = torch.zeros((), device=device), 0
        for i in range(steps):
            x = to_model_input(random_crop_flip(images[order[i * bs:(i + 1) * bs]], crop, gen, cfg.hflip))
            batch = torch.cat([x, *graded_pair(x, cfg.pretrain_distortions, host, gen)])
            if channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            with _autocast(device, cfg.amp):
                score = model(batch).float()[:, 0]
            clean, mild, strong = (score / scale).chunk(3)
            loss = (torch.relu(PRETRAIN_MARGIN - (clean - mild)) + torch.relu(PRETRAIN_MARGIN - (mild - strong))
                    + torch.relu(2 * PRETRAIN_MARGIN - (clean - strong))).mean()
            failed += ~optimise(loss)
            steps_run += 1
            out_of_time = time.perf_counter() - start >= seconds_left
            if out_of_time:
                break
        if int(failed.item()) == steps_run:
            raise TrainingDiverged("every step of a pretraining epoch had a non-finite loss")
        if out_of_time:
            break
    model.eval()
    return time.perf_counter() - start  # the .item() above has waited for the GPU


def evaluate(model: nn.Module, data: ImageSet, crop: int | None = None, views: int = 1, batch_size: int = 64,
             device: torch.device | str | None = None, amp: bool = True) -> dict[str, dict[str, float]]:
    """Metrics (`iqa_metrics`) per target name of `model` on `data`."""
    return _metrics_per_target(predict(model, data.images, batch_size, device, crop, views, amp), data)


def train_model(model: nn.Module, train_set: ImageSet, val_set: ImageSet | None, cfg: TrainConfig,
                device: torch.device | str | None = None, on_epoch: Callable[[EpochRecord], bool] | None = None,
                progress: bool = False, teacher: nn.Module | None = None) -> TrainResult:
    """Train `model` on `train_set` under `cfg`'s budget on `device` (default: where the model is);
    evaluate on `val_set` (if given, at least 2 images) after every epoch.

    `on_epoch(record)` returning True stops training (the study's early stopping). With
    `cfg.distill_weight`, a trained `teacher` (same outputs) scores every training crop too and the model
    is also pulled towards its scores. Deterministic on the CPU for a given seed. Leaves the model in
    eval mode on `device`.
    """
    cfg.validate()
    if (teacher is None) != (cfg.distill_weight == 0):
        raise ValueError(f"TrainConfig.distill_weight is {cfg.distill_weight} but a teacher was "
                         f"{'not ' if teacher is None else ''}given: distillation needs both or neither")
    if len(train_set) < 2:
        raise ValueError(f"training needs at least 2 images, got {len(train_set)}")
    device = torch.device(device) if device is not None else _model_device(model)
    seed_everything(cfg.seed)
    crop = cfg.crop or train_set.images.shape[-1]
    channels_last = cfg.channels_last and device.type == "cuda"
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if teacher is not None:
        teacher.eval().to(device)
        if channels_last:
            teacher.to(memory_format=torch.channels_last)
    images = train_set.images.to(device)  # once, as uint8: the whole set stays resident
    targets = train_set.targets.to(device)
    norm = _set_target_buffers(model, targets)
    std_targets = (targets - norm[0]) / norm[1] if norm else targets

    pretrain_s = pretrain(model, images, cfg, device, cfg.time_budget_s or math.inf) if cfg.pretrain_epochs else 0.0

    n, bs = len(train_set), min(cfg.batch_size, len(train_set))
    steps_per_epoch = _steps_per_epoch(n, bs)
    loss_fn = make_loss(cfg.loss_weights)
    average = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay else None
    optimise = _Stepper(model, cfg, cfg.epochs * steps_per_epoch, round(cfg.warmup_epochs * steps_per_epoch), device,
                        average)
    scored = average.model if average else model
    gen = torch.Generator(device=device if device.type == "cuda" else "cpu").manual_seed(cfg.seed)
    perm_gen = torch.Generator().manual_seed(cfg.seed + 1)

    history: list[EpochRecord] = []
    per_target: dict[str, dict[str, float]] = {}
    stopped, train_seconds, out_of_time = False, pretrain_s, False
    bar = tqdm(range(cfg.epochs), desc="training", unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        start, seen, steps = time.perf_counter(), 0, 0
        loss_sum, finite_images, skipped = (torch.zeros((), device=device) for _ in range(3))
        order = torch.randperm(n, generator=perm_gen).to(device)
        for step in range(steps_per_epoch):
            idx = order[step * bs:(step + 1) * bs]
            x = to_model_input(random_crop_flip(images[idx], crop, gen, cfg.hflip), channels_last)
            with _autocast(device, cfg.amp):
                pred = model(x).float()
            pred = _standardise(pred, norm)
            loss = loss_fn(pred, std_targets[idx])
            if teacher is not None:
                with torch.no_grad(), _autocast(device, cfg.amp):
                    taught = _standardise(teacher(x).float(), norm)
                loss = loss + cfg.distill_weight * F.mse_loss(pred, taught)
            finite = optimise(loss)
            loss_sum += torch.where(finite, loss.detach(), 0.0) * len(idx)
            finite_images += finite * len(idx)
            skipped += ~finite
            seen += len(idx)
            steps += 1
            if cfg.time_budget_s is not None and train_seconds + time.perf_counter() - start >= cfg.time_budget_s:
                out_of_time = True
                break
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        epoch_s = time.perf_counter() - start
        train_seconds += epoch_s
        loss_sum, finite_images, skipped = loss_sum.item(), int(finite_images.item()), int(skipped.item())
        if skipped == steps:
            raise TrainingDiverged(f"every step of epoch {epoch + 1} had a non-finite loss"
                                   + (" (fp16 autocast: activations may overflow)" if optimise.fp16 else ""))
        if val_set is not None and len(val_set) >= 2:
            pred_val = predict(scored, val_set.images, device=device, crop=crop, views=cfg.eval_views, amp=cfg.amp)
            bad = int((~np.isfinite(pred_val)).sum())
            if bad:
                raise TrainingDiverged(f"{bad} non-finite validation prediction(s) after epoch {epoch + 1}")
            per_target = _metrics_per_target(pred_val, val_set)
        metrics = per_target[val_set.target_names[0]] if per_target else {}
        record = EpochRecord(epoch + 1, loss_sum / finite_images, train_seconds, seen / max(epoch_s, 1e-9),
                             optimise.lr, metrics, per_target, skipped)
        history.append(record)
        bar.set_postfix(loss=f"{record.train_loss:.3f}", **({"srcc": f"{metrics['srcc']:.3f}"} if metrics else {}))
        if on_epoch is not None and on_epoch(record):
            stopped = epoch + 1 < cfg.epochs
            break
        if out_of_time:
            break
    bar.close()
    if average:
        model.load_state_dict(average.model.state_dict())
    model.eval()
    return TrainResult(history, stopped, train_seconds, per_target)

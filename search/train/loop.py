"""The budgeted trainer: any `nn.Module` that maps an image batch to scores, trained from scratch.

Images go to the device once as uint8 when they fit (`search.train.step.Images`); each step gathers a batch
there, crops and flips it there, and runs the model under the recipe's autocast (`search.train.step`). If the
model has `target_mean` / `target_std` buffers, they are set from the training targets and the loss is
computed on standardised scores, so the model predicts MOS directly. A set combining several sources
(`search.data.imageset.combine`) holds them on one scale: each batch is drawn from one source, and
validation scores each source on its own scale. One epoch loop (`fit`) serves MOS
training and pair training (`search.train.pairs`): budget in epochs and/or seconds (with seconds, the
remaining epochs and the LR schedule are refit to the measured pace after every epoch), validation,
early stopping, EMA. An epoch in which every step was skipped, or non-finite validation predictions,
raise `TrainingDiverged` rather than carrying NaN weights on.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from search.train.augment import crop_views, random_crop_flip, to_model_input
from search.data.imageset import ImageSet
from search.train.losses import make_loss
from search.metrics import iqa_metrics
from search.train.pretrain import pretrain
from search.train.recipe import TrainConfig
from search.train.snapshot import BestSnapshot
from search.train.step import (Batches, Images, Stepper, TrainingDiverged, WeightAverage, autocast, model_device,
                               resolve_precision, run_epoch)

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
    resident: bool = True
    """Whether the training set lived on the device (False: kept on the host, one batch copied per step)."""
    stop: str = ""
    """Why training ended: its planned epochs, the time budget, early stopping, or no validation gain."""
    best_epoch: int | None = None
    """With a `BestSnapshot` watch: the validated epoch whose weights the model ends on."""
    curve: list[tuple[int, float]] = field(default_factory=list)
    """With a watch: (epoch, validation score) of every validation."""
    member_epochs: list[int] = field(default_factory=list)
    """Of an ensemble (`search.train.retrain.train_members`): the epochs each member ran, in order; `history`
    holds them all."""

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


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 64, device: torch.device | str | None = None,
            crop: int | None = None, views: int = 1, precision: str = "auto", channels_last: bool = True) -> np.ndarray:
    """Scores [N, T] (float32) for uint8 images [N,3,S,S], averaged over `views` deterministic crops of
    `crop` px (None = the full image). Eval mode, no grad; autocast as `resolve_precision` says. Moves
    the model to `device` (default: where the model is); the images may stay on the host."""
    device = torch.device(device) if device is not None else model_device(model)
    dtype = resolve_precision(precision, device)
    model.eval().to(device)
    crop = crop or images.shape[-1]
    channels_last = channels_last and device.type == "cuda"
    out = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].to(device, non_blocking=True)
        preds = []
        for view in crop_views(batch, crop, views):
            with autocast(device, dtype):
                preds.append(model(to_model_input(view, channels_last, model)).float())
        out.append(torch.stack(preds).mean(0).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)


def _metrics_per_target(pred: np.ndarray, data: ImageSet) -> dict[str, dict[str, float]]:
    """`iqa_metrics` per target. A combined set is scored per source, on the source's own scale (predictions
    mapped back), and each metric averaged over the sources weighted by their images; a source with fewer
    than 2 images here is left out."""
    truth = data.targets.numpy()
    parts = [(p, t) for (_, p), (_, t) in zip(data.own_scale(pred), data.own_scale(truth)) if len(p) >= 2]
    out = {}
    for i, name in enumerate(data.target_names):
        scored = ([(len(p), iqa_metrics(p[:, i], t[:, i])) for p, t in parts]
                  or [(1, iqa_metrics(pred[:, i], truth[:, i]))])
        total = sum(n for n, _ in scored)
        out[name] = (scored[0][1] if len(scored) == 1
                     else {k: sum(n * m[k] for n, m in scored) / total for k in scored[0][1]})
    return out


def evaluate(model: nn.Module, data: ImageSet, crop: int | None = None, views: int = 1, batch_size: int = 64,
             device: torch.device | str | None = None, precision: str = "auto") -> dict[str, dict[str, float]]:
    """Metrics (`iqa_metrics`) per target name of `model` on `data`."""
    return _metrics_per_target(predict(model, data.images, batch_size, device, crop, views, precision), data)


def _validate(model: nn.Module, val_set: ImageSet | None, cfg: TrainConfig, device: torch.device, crop: int,
              epoch: int) -> dict[str, dict[str, float]]:
    """Validation metrics per target after `epoch` ({} without a validation set of 2+ images)."""
    if val_set is None or len(val_set) < 2:
        return {}
    pred = predict(model, val_set.images, device=device, crop=crop, views=cfg.eval_views, precision=cfg.precision)
    bad = int((~np.isfinite(pred)).sum())
    if bad:
        raise TrainingDiverged(f"{bad} non-finite validation prediction(s) after epoch {epoch}")
    return _metrics_per_target(pred, val_set)


def _mos_loss(model: nn.Module, images: Images, targets: torch.Tensor, cfg: TrainConfig,
              norm: tuple[torch.Tensor, torch.Tensor] | None, gen: torch.Generator,
              teacher: nn.Module | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The loss of one MOS step on images `idx`: the recipe's loss on standardised scores, plus the
    distillation term towards the teacher's scores on the same crops."""
    device, loss_fn = images.device, make_loss(cfg.loss_weights)
    crop = cfg.crop or images.data.shape[-1]
    channels_last = cfg.channels_last and device.type == "cuda"
    dtype = resolve_precision(cfg.precision, device)

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        x = to_model_input(random_crop_flip(images.batch(idx), crop, gen, cfg.hflip), channels_last, model)
        with autocast(device, dtype):
            pred = model(x).float()
        pred = _standardise(pred, norm)
        loss = loss_fn(pred, targets[idx.to(device)])
        if teacher is not None:
            with torch.no_grad(), autocast(device, dtype):
                taught = _standardise(teacher(x).float(), norm)
            loss = loss + cfg.distill_weight * F.mse_loss(pred, taught)
        return loss

    return batch_loss


def _prepare(model: nn.Module, train_set: ImageSet, cfg: TrainConfig, device: torch.device,
             teacher: nn.Module | None) -> tuple[Images, torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
    """Check the inputs, move the models and the set, set the target buffers: (images, standardised
    targets on the device, (mean, std) or None)."""
    cfg.validate()
    if (teacher is None) != (cfg.distill_weight == 0):
        raise ValueError(f"TrainConfig.distill_weight is {cfg.distill_weight} but a teacher was "
                         f"{'not ' if teacher is None else ''}given: distillation needs both or neither")
    if len(train_set) < 2:
        raise ValueError(f"training needs at least 2 images, got {len(train_set)}")
    seed_everything(cfg.seed)
    for net in (model, teacher):
        if net is not None:
            net.to(device)
            if cfg.channels_last and device.type == "cuda":
                net.to(memory_format=torch.channels_last)
    if teacher is not None:
        teacher.eval()
    images = Images(train_set.images, device)  # uint8, once: resident on the device when it fits
    targets = train_set.targets.to(device)
    norm = _set_target_buffers(model, targets)
    return images, (targets - norm[0]) / norm[1] if norm else targets, norm


def _refit(wanted: int, durations: list[float], left: float) -> int:
    """Epochs to plan for, after epochs that took `durations` seconds, with `left` seconds to go: the
    `wanted` ones, or fewer when the pace of the epochs after the first (which carries the warm-up)
    says they would not fit; no more epoch when none fits."""
    if not math.isfinite(left):
        return wanted
    recent = durations[1:] or durations
    return min(wanted, len(durations) + int(left // (sum(recent) / len(recent))))


@dataclass
class FitTask:
    """What one kind of training gives the shared epoch loop (`fit`)."""

    batch_loss: Callable[[torch.Tensor], torch.Tensor]
    """The loss of one step on item indices (on `index_device`)."""
    items: int
    """Items per epoch: images, or pairs."""
    index_device: torch.device
    validate: Callable[[nn.Module, int], dict[str, dict[str, float]]]
    """Validation metrics per target of the scored model after an epoch ({} without validation)."""
    resident: bool = True
    sources: np.ndarray | None = None
    """Each item's source when a set combines several (every batch then holds one: `Batches`)."""


def fit(model: nn.Module, task: FitTask, cfg: TrainConfig, device: torch.device, spent_s: float,
        on_epoch: Callable[[EpochRecord], bool] | None, progress: bool,
        watch: BestSnapshot | None = None) -> TrainResult:
    """Epochs of `task` under `cfg` (after `spent_s` seconds of pretraining): the optimiser, EMA, the
    time budget with refitting of the remaining epochs, validation and early stopping. With a `watch`,
    validation runs on the epochs it says are due, it may end training, and the model ends on its best
    validated snapshot."""
    batches = Batches(task.items, min(cfg.batch_size, task.items), task.sources)
    epoch_steps = len(batches)
    average = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay else None
    optimise = Stepper(model, cfg, cfg.epochs * epoch_steps, round(cfg.warmup_epochs * epoch_steps), device, average)
    scored = average.model if average else model
    perm_gen = torch.Generator().manual_seed(cfg.seed + 1)
    budget_s, train_seconds = cfg.time_budget_s or math.inf, spent_s
    history: list[EpochRecord] = []
    per_target: dict[str, dict[str, float]] = {}
    stopped, planned, durations = False, cfg.epochs, []
    stop, annealed_at = "", 0
    bar = tqdm(total=planned, desc="training", unit="epoch", disable=not progress, leave=False)
    while len(history) < planned:
        epoch = len(history) + 1
        model.train()
        stats = run_epoch(task.batch_loss, optimise, batches, task.index_device, perm_gen, budget_s - train_seconds)
        train_seconds += stats.seconds
        durations.append(stats.seconds)
        if stats.skipped == stats.steps:
            raise TrainingDiverged(f"every step of epoch {epoch} had a non-finite loss"
                                   + (" (fp16 autocast: activations may overflow)" if optimise.fp16 else ""))
        due = watch is None or watch.due(epoch, planned, stats.out_of_time)
        per_target = task.validate(scored, epoch) if due else {}
        metrics = next(iter(per_target.values())) if per_target else {}
        history.append(EpochRecord(epoch, stats.loss, train_seconds, stats.images / max(stats.seconds, 1e-9),
                                   optimise.lr, metrics, per_target, stats.skipped))
        bar.update()
        bar.set_postfix(loss=f"{stats.loss:.3f}",
                        **{k: f"{metrics[k]:.3f}" for k in ("srcc", "pair_acc") if k in metrics})
        if on_epoch is not None and on_epoch(history[-1]):
            stopped, stop = epoch < cfg.epochs, "stopped by the study's early stopping"
            break
        if watch is not None and per_target and watch(scored, epoch, per_target):
            stopped, stop = True, watch.stopped
            tail = min(watch.anneal_epochs(epoch), cfg.epochs - epoch)  # never past the planned epochs
            if tail <= 0:
                break
            optimise.anneal(tail * epoch_steps)
            annealed_at, stop = epoch + tail, f"{stop}; then annealed over {tail} epochs"
        if stats.out_of_time:
            stop = "the time budget ran out"
            break
        planned = _refit(annealed_at or cfg.epochs, durations, budget_s - train_seconds)
        bar.total, optimise.total_steps = planned, planned * epoch_steps
    bar.close()
    if average:
        model.load_state_dict(average.model.state_dict())
    if watch is not None:
        watch.restore(model)
    model.eval()
    if not stop:
        stop = ("its planned epochs ran" if planned >= cfg.epochs else
                f"its epochs ran, {planned} of {cfg.epochs} planned: refit to end by the time budget")
    return TrainResult(history, stopped, train_seconds, per_target, task.resident, stop,
                       watch.best_epoch if watch and watch.curve else None, list(watch.curve) if watch else [])


def train_model(model: nn.Module, train_set: ImageSet, val_set: ImageSet | None, cfg: TrainConfig,
                device: torch.device | str | None = None, on_epoch: Callable[[EpochRecord], bool] | None = None,
                progress: bool = False, teacher: nn.Module | None = None,
                watch: BestSnapshot | None = None) -> TrainResult:
    """Train `model` on `train_set` under `cfg`'s budget on `device` (default: where the model is);
    evaluate on `val_set` (if given, at least 2 images) after every epoch, or on the epochs `watch` says,
    which keeps the best validated snapshot and may stop training (`search.train.snapshot`).

    `on_epoch(record)` returning True stops training (the study's early stopping). With
    `cfg.distill_weight`, a trained `teacher` (same outputs) scores every training crop too and the model
    is also pulled towards its scores. Deterministic on the CPU for a given seed. Leaves the model in
    eval mode on `device`.
    """
    device = torch.device(device) if device is not None else model_device(model)
    images, targets, norm = _prepare(model, train_set, cfg, device, teacher)
    spent = pretrain(model, images, cfg, device, cfg.time_budget_s or math.inf) if cfg.pretrain_epochs else 0.0
    gen = torch.Generator(device=device if device.type == "cuda" else "cpu").manual_seed(cfg.seed)
    crop = cfg.crop or images.data.shape[-1]
    task = FitTask(_mos_loss(model, images, targets, cfg, norm, gen, teacher), len(images), images.index_device,
                lambda scored, epoch: _validate(scored, val_set, cfg, device, crop, epoch), images.resident,
                train_set.sources)
    return fit(model, task, cfg, device, spent, on_epoch, progress, watch)

"""The budgeted trainer: any `nn.Module` that maps an image batch to scores, trained from scratch.

Images go to the device once as uint8; each step gathers a batch there, crops and flips it there,
and runs the model under autocast on CUDA (bf16 where the GPU supports it natively, fp16 with loss
scaling otherwise, e.g. a T4). AdamW with linear warm-up and cosine decay; a budget in epochs and,
optionally, seconds. If the model has `target_mean` / `target_std` buffers, they are set from the
training targets and the loss is computed on standardised scores, so the model predicts MOS directly.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from search.augment import crop_views, random_crop_flip, to_model_input
from search.data.imageset import ImageSet
from search.losses import make_loss
from search.metrics import iqa_metrics


@dataclass
class TrainConfig:
    epochs: int = 10
    time_budget_s: float | None = None
    """Stop after this many seconds of training, whichever of epochs and seconds comes first."""
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    loss_weights: dict[str, float] = field(default_factory=lambda: {"mse": 1.0})
    crop: int | None = None
    """Training crop and evaluation view size; None = the full cached image."""
    hflip: bool = True
    eval_views: int = 1
    amp: bool = True
    channels_last: bool = True
    seed: int = 0
    grad_clip: float | None = 1.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        return cls(**data)


@dataclass
class EpochRecord:
    epoch: int
    """1-based."""
    train_loss: float
    seconds: float
    """Cumulative training wall time (evaluation excluded)."""
    images_per_s: float
    lr: float
    metrics: dict[str, float]
    """Validation metrics of the first target ({} without a validation set)."""
    target_metrics: dict[str, dict[str, float]]
    """Validation metrics per target name."""


@dataclass
class TrainResult:
    history: list[EpochRecord]
    stopped_early: bool
    seconds: float
    target_metrics: dict[str, dict[str, float]]
    """Final validation metrics per target name."""

    @property
    def epochs_run(self) -> int:
        return len(self.history)

    @property
    def metrics(self) -> dict[str, float]:
        return self.history[-1].metrics if self.history else {}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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
    if not (hasattr(model, "target_mean") and hasattr(model, "target_std")):
        return None
    mean = targets.mean(0)
    std = targets.std(0, unbiased=False).clamp_min(1e-6) if len(targets) > 1 else torch.ones_like(mean)
    model.target_mean.copy_(mean)
    model.target_std.copy_(std)
    return mean, std


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 64, device: torch.device | str | None = None,
            crop: int | None = None, views: int = 1, amp: bool = True, channels_last: bool = True) -> np.ndarray:
    """Scores [N, T] for uint8 images [N,3,S,S], averaged over `views` deterministic crops of `crop` px."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
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


def evaluate(model: nn.Module, data: ImageSet, crop: int | None = None, views: int = 1, batch_size: int = 64,
             device: torch.device | str | None = None, amp: bool = True) -> dict[str, dict[str, float]]:
    """Metrics per target name on `data`."""
    pred = predict(model, data.images, batch_size, device, crop, views, amp)
    truth = data.targets.numpy()
    return {name: iqa_metrics(pred[:, i], truth[:, i]) for i, name in enumerate(data.target_names)}


def train_model(model: nn.Module, train_set: ImageSet, val_set: ImageSet | None, cfg: TrainConfig,
                device: torch.device | str | None = None, on_epoch: Callable[[EpochRecord], bool] | None = None,
                progress: bool = False) -> TrainResult:
    """Train `model` on `train_set` under `cfg`'s budget; evaluate on `val_set` after every epoch.

    `on_epoch(record)` returning True stops training (the study's early stopping).
    """
    if len(train_set) < 2:
        raise ValueError(f"training needs at least 2 images, got {len(train_set)}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    seed_everything(cfg.seed)
    crop = cfg.crop or train_set.size
    channels_last = cfg.channels_last and device.type == "cuda"
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    images = train_set.images.to(device)
    targets = train_set.targets.to(device)
    norm = _set_target_buffers(model, targets)
    std_targets = (targets - norm[0]) / norm[1] if norm else targets

    n, bs = len(train_set), min(cfg.batch_size, len(train_set))
    steps_per_epoch = n // bs + (1 if n % bs > 1 else 0)  # a last batch of one would break BatchNorm
    total_steps = max(1, cfg.epochs * steps_per_epoch)
    warmup = max(1, int(cfg.warmup_epochs * steps_per_epoch))
    optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min((s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(1.0, s / total_steps)))))
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and not torch.cuda.is_bf16_supported())
    loss_fn = make_loss(cfg.loss_weights)
    gen = torch.Generator(device=device if device.type == "cuda" else "cpu").manual_seed(cfg.seed)
    perm_gen = torch.Generator().manual_seed(cfg.seed + 1)

    history: list[EpochRecord] = []
    per_target: dict[str, dict[str, float]] = {}
    stopped, train_seconds, out_of_time = False, 0.0, False
    bar = tqdm(range(cfg.epochs), desc="training", unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        start, loss_sum, seen = time.perf_counter(), 0.0, 0
        order = torch.randperm(n, generator=perm_gen).to(device)
        for step in range(steps_per_epoch):
            idx = order[step * bs:(step + 1) * bs]
            batch = random_crop_flip(images[idx], crop, gen, cfg.hflip)
            x = to_model_input(batch, channels_last)
            with _autocast(device, cfg.amp):
                pred = model(x).float()
            if norm:
                pred = (pred - norm[0]) / norm[1]
            loss = loss_fn(pred, std_targets[idx])
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            schedule.step()
            loss_sum += loss.item() * len(idx)
            seen += len(idx)
            if cfg.time_budget_s is not None and train_seconds + time.perf_counter() - start >= cfg.time_budget_s:
                out_of_time = True
                break
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        epoch_s = time.perf_counter() - start
        train_seconds += epoch_s
        if val_set is not None and len(val_set) >= 2:
            per_target = evaluate(model, val_set, crop, cfg.eval_views, device=device, amp=cfg.amp)
        metrics = per_target[val_set.target_names[0]] if per_target else {}
        record = EpochRecord(epoch + 1, loss_sum / max(1, seen), train_seconds, seen / max(epoch_s, 1e-9),
                             optimizer.param_groups[0]["lr"], metrics, per_target)
        history.append(record)
        bar.set_postfix(loss=f"{record.train_loss:.3f}", **({"srcc": f"{metrics['srcc']:.3f}"} if metrics else {}))
        if on_epoch is not None and on_epoch(record):
            stopped = epoch + 1 < cfg.epochs
            break
        if out_of_time:
            break
    bar.close()
    return TrainResult(history, stopped, train_seconds, per_target)

"""Structured channel pruning with torch-pruning, and re-expressing the pruned model as a spec.

torch-pruning's dependency graph removes coupled channels together (depthwise groups, residual adds,
concatenated mean/std pooling). Left out, and reported: the output layer, attention-pooling score
convs (one output channel each), and attention blocks (their head split needs whole heads). The
pruned network is rebuilt from an updated `ArchSpec` (stage widths, per-block hidden and SE widths),
its weights loaded strictly, so a pruned model is exported and reloaded like any other.
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from search.augment import to_model_input
from search.data import ImageSet
from search.losses import mse_loss
from search.train import TrainConfig, seed_everything, train_model
from space import ArchSpec, IQANet, build_model, count_params
from space.layers.attention import AttentionBlock
from space.layers.convnext import ConvNeXtBlock
from space.layers.mbconv import MBConvBlock
from space.layers.residual import ResidualBlock

IMPORTANCES = ("magnitude", "taylor")


@dataclass
class PruneResult:
    model: IQANet
    spec: ArchSpec
    params_before: int
    params_after: int
    left_out: list[str]
    """Layers kept whole, and why."""


def _ignored(model: IQANet) -> tuple[list[nn.Module], list[str]]:
    ignored: list[nn.Module] = [model.head.mlp[-1]]
    notes = ["head output layer (its width is the number of targets)"]
    for i, pool in enumerate(model.pools):
        if pool.score is not None:
            ignored.append(pool.score)
            notes.append(f"pools[{i}].score (attention-pooling score map)")
    for si, stage in enumerate(model.stages):
        for bi, block in enumerate(stage):
            if isinstance(block, AttentionBlock):
                ignored.append(block)
                notes.append(f"stages[{si}][{bi}] attention block (whole heads only)")
    return ignored, notes


def _importance(kind: str):
    if kind not in IMPORTANCES:
        raise ValueError(f"unknown importance {kind!r}; choose from {', '.join(IMPORTANCES)}")
    return tp.importance.MagnitudeImportance(p=2) if kind == "magnitude" else tp.importance.TaylorImportance()


def _prune_once(model: IQANet, channel_ratio: float, importance: str, global_pruning: bool,
                batch: torch.Tensor, targets: torch.Tensor) -> IQANet:
    """Prune `model` in place by `channel_ratio` of the channels of every prunable group."""
    ignored, _ = _ignored(model)
    model.eval()
    if importance == "taylor":  # Taylor importance reads gradients of a real loss
        model.zero_grad()
        mse_loss((model(batch) - model.target_mean) / model.target_std, (targets - model.target_mean) / model.target_std).backward()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner = tp.pruner.MetaPruner(model, batch[:2], _importance(importance), pruning_ratio=channel_ratio,
                                      global_pruning=global_pruning, ignored_layers=ignored, round_to=8)
        pruner.step()
    model.zero_grad(set_to_none=True)
    return model


def _prune_to(model: IQANet, target_params: int, importance: str, global_pruning: bool,
              batch: torch.Tensor, targets: torch.Tensor) -> IQANet:
    """Binary-search the channel ratio whose pruned copy lands closest to `target_params`."""
    lo, hi, best = 0.0, 0.95, None
    for _ in range(8):
        mid = (lo + hi) / 2
        trial = _prune_once(copy.deepcopy(model), mid, importance, global_pruning, batch, targets)
        n = sum(p.numel() for p in trial.parameters())
        if best is None or abs(n - target_params) < abs(best[0] - target_params):
            best = (n, trial)
        lo, hi = (mid, hi) if n > target_params else (lo, mid)
    return best[1]


def _block_widths(block: nn.Module) -> tuple[int, int, int]:
    """(output width, hidden width, SE width or 0) read off a (pruned) block."""
    se = block.se.fc1.out_channels if isinstance(getattr(block, "se", None), nn.Module) and hasattr(block.se, "fc1") else 0
    if isinstance(block, ResidualBlock):
        return block.conv2[0].out_channels, block.conv1[0].out_channels, se
    if isinstance(block, MBConvBlock):
        return block.project[0].out_channels, block.expand[0].out_channels, se
    if isinstance(block, ConvNeXtBlock):
        return block.pw2.out_channels, block.pw1.out_channels, 0
    if isinstance(block, AttentionBlock):
        return block.proj.out_channels, block.mlp[0].out_channels, 0
    raise TypeError(f"unknown block type {type(block).__name__}")


def spec_of(model: IQANet) -> ArchSpec:
    """The spec that rebuilds `model` as it is now (after pruning), widths read off its layers."""
    spec = copy.deepcopy(model.spec)
    spec.stem.width = model.stem.body[0].out_channels
    for stage_spec, stage in zip(spec.stages, model.stages):
        widths = [_block_widths(b) for b in stage]
        outs = {w[0] for w in widths}
        if len(outs) != 1:
            raise ValueError(f"blocks of one stage ended with different widths {sorted(outs)}")
        stage_spec.width = outs.pop()
        stage_spec.hidden = [w[1] for w in widths]
        stage_spec.se_hidden = [w[2] for w in widths] if any(w[2] for w in widths) else None
    if spec.head.hidden:
        spec.head.hidden = model.head.mlp[0].out_features
    return spec.validate()


def rebuild(model: IQANet) -> tuple[IQANet, ArchSpec]:
    """A fresh model built from `spec_of(model)` holding the same weights (strict load)."""
    spec = spec_of(model)
    fresh = build_model(spec)
    fresh.load_state_dict(model.state_dict(), strict=True)
    if count_params(spec) != sum(p.numel() for p in fresh.parameters()):
        raise AssertionError("the re-expressed spec does not count the rebuilt model's parameters")
    return fresh.eval(), spec


def prune_model(model: IQANet, train_set: ImageSet, ratio: float, importance: str = "magnitude",
                global_pruning: bool = False, iterative_steps: int = 1, finetune: TrainConfig | None = None,
                device: torch.device | str = "cpu", seed: int = 0) -> PruneResult:
    """Remove about `ratio` of the parameters, in `iterative_steps` steps each followed by fine-tuning
    (`finetune`, epochs split across the steps; None = no fine-tuning)."""
    if not 0 < ratio < 1:
        raise ValueError(f"pruning ratio must be in (0, 1), got {ratio}")
    seed_everything(seed)
    model = copy.deepcopy(model).cpu().eval()
    before = sum(p.numel() for p in model.parameters())
    crop = model.spec.input.crop
    batch = to_model_input(train_set.images[:16, :, :crop, :crop])
    targets = train_set.targets[:16]
    _, notes = _ignored(model)
    for step in range(1, iterative_steps + 1):
        target = round(before * (1 - ratio * step / iterative_steps))
        model = _prune_to(model, target, importance, global_pruning, batch, targets)
        model, _ = rebuild(model)
        if finetune is not None and finetune.epochs:
            cfg = copy.deepcopy(finetune)
            cfg.epochs = max(1, finetune.epochs // iterative_steps)
            cfg.crop = crop
            train_model(model, train_set, None, cfg, device=device)
            model = model.cpu().eval()
    model, spec = rebuild(model)
    return PruneResult(model, spec, before, sum(p.numel() for p in model.parameters()), notes)

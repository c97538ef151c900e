"""Structured channel pruning with torch-pruning, re-expressed as an updated `ArchSpec`.

`prune_model(model, target_params)` is the whole API, in torch-pruning's narrow style: an importance
("magnitude" or "taylor"), per-layer or global ranking, and a number of iterative steps. Fine-tuning
belongs to the caller (`compress.stage`), through the `finetune` hook called after each step.

torch-pruning's dependency graph removes coupled channels together: depthwise groups, squeeze-
excitation gates, residual adds (a stage's width shrinks uniformly), the concatenated mean/std and
multi-stage pooled features. Kept whole and reported in `left_out`: the output Linear (its width is
the number of targets), attention-pooling score convs and a patch model's patch-attention score Linear
(one output channel each; their inputs prune with the features they score), the qkv/proj convs of
attention blocks (whole heads only; this also fixes their stage's width, while the block's MLP
hidden still prunes), and the two widths around a stride-1 block that changes width (if pruning made
them equal the spec would build an identity shortcut instead of a conv). A search over the channel
ratio hits the parameter target; the pruned network is rebuilt from `spec_of` with a strict load, so
a pruned model is saved, exported and reloaded like any other.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
import torch_pruning as tp
from torch import nn

from search.train.augment import to_model_input
from search.data import ImageSet
from search.train.losses import mse_loss
from space import ArchSpec, IQANet, build_model, count_params

IMPORTANCES = ("magnitude", "taylor")
SEARCH_STEPS = 8
MAX_RATIO = 0.95
TOLERANCE = 0.01
"""Stop searching once the parameter count is within 1 % (of the original count) of the target."""
TAYLOR_BATCHES = 4


@dataclass
class PruneResult:
    """The pruned model (built from `spec`), its counts before and after, and what was kept whole."""

    model: IQANet
    spec: ArchSpec
    params_before: int
    params_after: int
    left_out: list[str]
    """Layers kept whole, and why."""


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def ignored_layers(model: IQANet) -> tuple[list[nn.Module], list[str]]:
    """Layers torch-pruning must not prune (as group roots), with a note for each: what the model keeps
    whole, and the two widths around a stride-1 block that changes width."""
    kept = model.kept_whole()
    ignored, notes = [m for layers, _ in kept for m in layers], [why for _, why in kept]
    producer = model.stem_conv()
    for stage in model.blocks():
        for b in stage:
            out = b.family.out_layer(b.module)
            if b.index == 0 and b.stride == 1 and producer.out_channels != out.out_channels:
                ignored += [producer, out]
                notes.append(f"{b.name} input and output widths (stride-1 width change must stay a change)")
            producer = out
    return ignored, notes


def _importance(kind: str) -> tp.importance.Importance:
    return tp.importance.MagnitudeImportance(p=2) if kind == "magnitude" else tp.importance.TaylorImportance()


def _taylor_grads(model: IQANet, data: ImageSet) -> dict[str, torch.Tensor]:
    """Gradients of the standardised MSE over a few batches of `data` (what Taylor importance reads)."""
    crop = model.spec.input.crop
    model.eval().zero_grad()
    for start in range(0, min(len(data), 16 * TAYLOR_BATCHES), 16):
        x = to_model_input(data.images[start:start + 16, :, :crop, :crop])
        y = data.targets[start:start + 16]
        mse_loss((model(x) - model.target_mean) / model.target_std,
                 (y - model.target_mean) / model.target_std).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def _prune_once(model: IQANet, channel_ratio: float, importance: str, global_pruning: bool,
                grads: dict[str, torch.Tensor] | None) -> IQANet:
    """A copy of `model` with `channel_ratio` of the channels of every prunable group removed."""
    model = copy.deepcopy(model).eval()
    if grads is not None:
        for name, p in model.named_parameters():
            p.grad = grads[name].clone() if name in grads else None
    crop = model.spec.input.crop
    example = torch.rand(1, 3, crop, crop, generator=torch.Generator().manual_seed(0))  # tracing reads only shapes
    pruner = tp.pruner.BasePruner(model, example, _importance(importance), pruning_ratio=channel_ratio,
                                  global_pruning=global_pruning, max_pruning_ratio=MAX_RATIO,
                                  ignored_layers=ignored_layers(model)[0])
    pruner.step()
    model.zero_grad(set_to_none=True)
    return model


def _prune_to(model: IQANet, target: int, importance: str, global_pruning: bool,
              grads: dict[str, torch.Tensor] | None) -> IQANet:
    """The pruned copy whose parameter count is closest to `target`. Searches the channel ratio r in
    u = (1 - r)^2, where the count is about linear (most layers lose channels on both sides):
    interpolation, or bisection after two steps on one side; a few prunings instead of ten."""
    before = _n_params(model)
    above, below = (1.0, before), (0.0, 0)  # (u, params) bracketing the target; u = 0 is a guess
    best, best_n, sides, seen = model, before, [], set()
    for _ in range(SEARCH_STEPS):
        if above[0] - below[0] < 1e-3:
            break
        bisect = len(sides) >= 2 and sides[-1] == sides[-2]
        frac = 0.5 if bisect else (target - below[1]) / max(1, above[1] - below[1])
        u = below[0] + (above[0] - below[0]) * frac
        ratio = min(MAX_RATIO, 1 - u ** 0.5)
        pruned = _prune_once(model, ratio, importance, global_pruning, grads)
        n = _n_params(pruned)
        if abs(n - target) < abs(best_n - target):
            best, best_n = pruned, n
        if abs(n - target) <= TOLERANCE * before or (ratio == MAX_RATIO and n > target) or n in seen:
            break  # close enough, as far as it goes, or a step of the channel rounding: no closer count
        seen.add(n)
        sides.append(n > target)
        if n > target:
            above = ((1 - ratio) ** 2, n)
        else:
            below = ((1 - ratio) ** 2, n)
    return best


def spec_of(model: IQANet, spec: ArchSpec) -> ArchSpec:
    """`spec` with every width read off `model` (after pruning): stem, stages, per-block hidden/SE, head."""
    spec = copy.deepcopy(spec)
    spec.stem.width = model.stem_conv().out_channels
    for stage_spec, stage in zip(spec.stages, model.blocks()):
        widths = [b.family.widths(b.module) for b in stage]
        outs = {w[0] for w in widths}
        if len(outs) != 1:
            raise ValueError(f"blocks of one stage ended with different widths {sorted(outs)}")
        stage_spec.width = outs.pop()
        stage_spec.hidden = [w[1] for w in widths]
        stage_spec.se_hidden = [w[2] for w in widths] if any(w[2] for w in widths) else None
    if spec.head.hidden:
        spec.head.hidden = model.head_hidden_linear().out_features
    return spec.validate()


def rebuild(model: IQANet) -> IQANet:
    """A fresh model built from `spec_of(model, model.spec)` holding the same weights (strict load)."""
    fresh = build_model(spec_of(model, model.spec))
    fresh.load_state_dict(model.state_dict(), strict=True)
    if count_params(fresh.spec) != _n_params(model):
        raise AssertionError("the re-expressed spec does not count the pruned model's parameters")
    return fresh.eval()


def prune_model(model: IQANet, target_params: int, importance: str = "magnitude", global_pruning: bool = False,
                iterative_steps: int = 1, data: ImageSet | None = None,
                finetune: Callable[[IQANet], None] | None = None) -> PruneResult:
    """A pruned copy of `model` with about `target_params` parameters, rebuilt from its own spec.

    Pruning runs on the CPU in `iterative_steps` equal steps, importance re-estimated before each
    (Taylor: gradients of the MSE on a few batches of `data`, which it then requires). `finetune(model)`,
    when given, trains the model in place after each step; the next step prunes what it learned.
    """
    if importance not in IMPORTANCES:
        raise ValueError(f"unknown importance {importance!r}; choose from {', '.join(IMPORTANCES)}")
    if importance == "taylor" and data is None:
        raise ValueError("Taylor importance reads gradients: pass `data` (labelled images) to prune_model")
    before = _n_params(model)
    if not 0 < target_params < before:
        raise ValueError(f"target_params must be in (0, {before:,}) (the model's count), got {target_params:,}")
    if iterative_steps < 1:
        raise ValueError(f"iterative_steps must be at least 1, got {iterative_steps}")
    model = copy.deepcopy(model).cpu().eval()
    notes = ignored_layers(model)[1]
    for step in range(1, iterative_steps + 1):
        grads = _taylor_grads(model, data) if importance == "taylor" else None
        target = round(before - (before - target_params) * step / iterative_steps)
        model = rebuild(_prune_to(model, target, importance, global_pruning, grads))
        if finetune is not None:
            finetune(model)
            model = model.cpu().eval()
    return PruneResult(model, model.spec, before, _n_params(model), notes)

"""Exact parameter and FLOP counts from a spec, without building the model (over-cap specs are
rejected before anything is allocated). Each family's formulas live beside its module; this module
walks a spec once, part by part (`part_costs`, of one member of an ensemble), and every total is the sum of
that walk times the spec's `members`."""
from __future__ import annotations

from dataclasses import dataclass

from space.layers import BLOCK_FAMILIES
from space.layers.conv import stem_flops, stem_out, stem_params
from space.layers.heads import head_flops, head_params, patch_pool_flops, patch_pool_params, pool_flops, pool_params
from space.model import feature_width, fused_widths, head_in
from space.spec import ArchSpec, block_plan


@dataclass(frozen=True)
class PartCost:
    """Exact cost of one part of the model: the stem, a stage (its blocks) or the head (the pools of the
    fused stages and the regressor)."""

    name: str
    """"stem", "stage I" (I from 1) or "head"."""
    params: int
    flops: int
    """Per image: the sum over the views of `backbone_views` (each times its count), plus for the head
    the regressor and a patch model's pooling over its patches, once."""
    view_flops: tuple[int, ...]
    """FLOPs on one view of each size of `backbone_views` (the head's: its pools; the regressor and the
    pooling over patches are not per view)."""
    out_sizes: tuple[int, ...]
    """The side of the part's output on one view of each size of `backbone_views` (the head: none)."""


def part_costs(spec: ArchSpec, training: bool = False) -> list[PartCost]:
    """Stem, each stage and the head, with FLOPs per scored image (`training`: per training image, a
    step's patches), of one member; times `ArchSpec.members` they add up to `count_params` and
    `count_flops` (`train_flops`)."""
    views = backbone_views(spec, training)
    walks = [_view_walk(spec, size) for size, _ in views]  # per view: (FLOPs of each part, output sides)
    names = ["stem"] + [f"stage {i}" for i in range(1, len(spec.stages) + 1)] + ["head"]
    costs = []
    for i, (name, params) in enumerate(zip(names, _part_params(spec))):
        per_view = tuple(flops[i] for flops, _ in walks)
        once = _once_flops(spec, training) if name == "head" else 0
        costs.append(PartCost(name, params, sum(n * f for f, (_, n) in zip(per_view, views)) + once, per_view,
                              tuple(sides[i] for _, sides in walks if i < len(sides))))
    return costs


def count_params(spec: ArchSpec) -> int:
    """Exactly `sum(p.numel() for p in build_model(spec).parameters())`: all members of an ensemble."""
    return spec.members * sum(_part_params(spec))


def count_flops(spec: ArchSpec) -> int:
    """Forward FLOPs to score one image (one multiply-add = one FLOP): one crop, the spliced fragments,
    or every test patch (the grid at each test scale, mirrored too with `test_flip`; and the global stream)."""
    return spec.members * sum(p.flops for p in part_costs(spec))


def train_flops(spec: ArchSpec) -> int:
    """Forward FLOPs per training image: one crop, the spliced fragments, or the random patches of one
    step (and the global stream). What the budget model charges for training."""
    return spec.members * sum(p.flops for p in part_costs(spec, training=True))


def stage_sizes(spec: ArchSpec, size: int | None = None) -> list[int]:
    """Spatial size of each stage's output for a `size` x `size` input (default: what the backbone
    sees, `InputSpec.view`: the spliced fragments, the patch or the crop)."""
    return _view_walk(spec, size or spec.input.view)[1][1:]


def backbone_views(spec: ArchSpec, training: bool = False) -> list[tuple[int, int]]:
    """(side in px, how many) of the views the stem and stages run on per image: the crop or the spliced
    fragments once, or the patches (a training step's, or every test patch: `InputSpec.test_patches`) and
    the reduced whole image."""
    inp = spec.input
    if not inp.patch:
        return [(inp.view, 1)]
    return [(inp.patch, inp.train_patches if training else inp.test_patches)] + (
        [(inp.global_size, 1)] if inp.global_size else [])


def _part_params(spec: ArchSpec) -> list[int]:
    """Parameters of the stem, each stage and the head (pools and regressor)."""
    stem = stem_params(spec.stem.kind, spec.stem.width, spec.stem.kernel, spec.input.mscn)
    stages = [sum(BLOCK_FAMILIES[b.block].count_params(b) for b in blocks) for blocks in block_plan(spec)]
    head = (sum(pool_params(spec.head.pool, c) for c in fused_widths(spec))
            + patch_pool_params(spec.head.patch_pool, feature_width(spec))
            + head_params(head_in(spec), spec.head.hidden, spec.num_outputs))
    return [stem] + stages + [head]


def _once_flops(spec: ArchSpec, training: bool) -> int:
    """FLOPs of the head's Linear layers and of a patch model's pooling over its patches, once per image."""
    patches = backbone_views(spec, training)[0][1] if spec.input.patch else 0
    return (head_flops(head_in(spec), spec.head.hidden, spec.num_outputs)
            + patch_pool_flops(spec.head.patch_pool, feature_width(spec), patches))


def _view_walk(spec: ArchSpec, size: int) -> tuple[list[int], list[int]]:
    """On one `size` px view: (FLOPs of the stem, each stage and the pools; output side of the stem and
    each stage)."""
    flops = [stem_flops(spec.stem.kind, spec.stem.width, spec.stem.kernel, size, spec.input.mscn)]
    sizes = [stem_out(spec.stem.kind, spec.stem.kernel, size)]
    if sizes[0] < 1:
        raise ValueError(f"input {size}px is too small for the stem")
    for blocks in block_plan(spec):
        stage, x = 0, sizes[-1]
        for b in blocks:
            f, x = BLOCK_FAMILIES[b.block].count_flops(b, x)
            if x < 1:
                raise ValueError(f"input {size}px is too small: a stage's feature map vanishes")
            stage += f
        flops.append(stage)
        sizes.append(x)
    pools = sum(pool_flops(spec.head.pool, c, s) for c, s in zip(fused_widths(spec), sizes[-spec.head.fuse:]))
    return flops + [pools], sizes

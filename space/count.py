"""Exact parameter and FLOP counts from a spec, without building the model (over-cap specs are
rejected before anything is allocated). Each family's formulas live beside its module."""
from __future__ import annotations

from dataclasses import dataclass

from space.layers import BLOCK_FAMILIES
from space.layers.conv import stem_flops, stem_out, stem_params
from space.layers.heads import head_flops, head_params, pool_dim, pool_flops, pool_params
from space.model import streams
from space.spec import ArchSpec, block_plan


@dataclass(frozen=True)
class Part:
    """One part of the model and its exact counts."""

    name: str
    """"stem", "stage 1", ..., "pools + head"."""
    params: int
    flops: int
    """Forward FLOPs of this part to score one image (over every backbone view), or per training image."""


def parts(spec: ArchSpec, training: bool = False) -> list[Part]:
    """Parameters and FLOPs per part: the stem, each stage, the pooling and the head (what
    `count_params`, `count_flops` and `train_flops` add up, and the notebook's model card shows)."""
    walks = [(n, _walk(spec, size)) for size, n in backbone_views(spec, training)]
    flops = ([sum(n * w[0] for n, w in walks)] + [sum(n * w[1][i] for n, w in walks) for i in range(len(spec.stages))]
             + [sum(n * w[2] for n, w in walks) + head_flops(_head_in(spec), spec.head.hidden, spec.num_outputs)])
    names = ["stem"] + [f"stage {i + 1}" for i in range(len(spec.stages))] + ["pools + head"]
    return [Part(*row) for row in zip(names, _part_params(spec), flops)]


def _part_params(spec: ArchSpec) -> list[int]:
    """Parameters of the stem, of each stage, and of the pools and head."""
    stages = [sum(BLOCK_FAMILIES[b.block][1](b.cin, b.cout, b.stride, b.kernel, b.hidden, b.se_hidden) for b in blocks)
              for blocks in block_plan(spec)]
    fused = [s.width for s in spec.stages[-spec.head.fuse:]]
    return ([stem_params(spec.stem.kind, spec.stem.width, spec.stem.kernel, spec.input.mscn)] + stages
            + [sum(pool_params(spec.head.pool, c) for c in fused) + head_params(_head_in(spec), spec.head.hidden, spec.num_outputs)])


def count_params(spec: ArchSpec) -> int:
    """Exactly `sum(p.numel() for p in build_model(spec).parameters())`."""
    return sum(_part_params(spec))


def stage_sizes(spec: ArchSpec, size: int | None = None) -> list[int]:
    """Spatial size of each stage's output for a `size` x `size` input (default: what the backbone
    sees, `InputSpec.view`: the patch or the crop)."""
    return _walk(spec, size or spec.input.view)[3]


def count_flops(spec: ArchSpec) -> int:
    """Forward FLOPs to score one image (one multiply-add = one FLOP): one crop, or every patch of the
    test grid (and the global stream)."""
    return sum(p.flops for p in parts(spec))


def train_flops(spec: ArchSpec) -> int:
    """Forward FLOPs per training image: one crop, or the random patches of one step (and the global
    stream). What the budget model charges for training."""
    return sum(p.flops for p in parts(spec, training=True))


def backbone_views(spec: ArchSpec, training: bool = False) -> list[tuple[int, int]]:
    """(side in px, how many) of the views the stem and stages run on per image: the crop once, or the
    patches (a training step's or the test grid) and the reduced whole image."""
    inp = spec.input
    if not inp.patch:
        return [(inp.crop, 1)]
    return [(inp.patch, inp.train_patches if training else inp.grid ** 2)] + (
        [(inp.global_size, 1)] if inp.global_size else [])


def _head_in(spec: ArchSpec) -> int:
    return streams(spec) * sum(pool_dim(spec.head.pool, s.width) for s in spec.stages[-spec.head.fuse:])


def _walk(spec: ArchSpec, size: int) -> tuple[int, list[int], int, list[int]]:
    """FLOPs on one `size` px view: (of the stem, of each stage, of the pools), and each stage's output size."""
    stem = stem_flops(spec.stem.kind, spec.stem.width, spec.stem.kernel, size, spec.input.mscn)
    x = stem_out(spec.stem.kind, spec.stem.kernel, size)
    if x < 1:
        raise ValueError(f"input {size}px is too small for the stem")
    stages, sizes = [], []
    for blocks in block_plan(spec):
        flops = 0
        for b in blocks:
            f, x = BLOCK_FAMILIES[b.block][2](b.cin, b.cout, b.stride, b.kernel, b.hidden, b.se_hidden, x)
            if x < 1:
                raise ValueError(f"input {size}px is too small: a stage's feature map vanishes")
            flops += f
        stages.append(flops)
        sizes.append(x)
    fused = list(zip([s.width for s in spec.stages], sizes))[-spec.head.fuse:]
    return stem, stages, sum(pool_flops(spec.head.pool, c, s) for c, s in fused), sizes

"""Exact parameter and FLOP counts from a spec, without building the model (over-cap specs are
rejected before anything is allocated). Each family's formulas live beside its module."""
from __future__ import annotations

from space.layers import BLOCK_FAMILIES
from space.layers.conv import stem_flops, stem_out, stem_params
from space.layers.heads import head_flops, head_params, pool_dim, pool_flops, pool_params
from space.model import streams
from space.spec import ArchSpec, block_plan


def count_params(spec: ArchSpec) -> int:
    """Exactly `sum(p.numel() for p in build_model(spec).parameters())`."""
    total = stem_params(spec.stem.kind, spec.stem.width, spec.stem.kernel, spec.input.mscn)
    for blocks in block_plan(spec):
        for b in blocks:
            total += BLOCK_FAMILIES[b.block][1](b.cin, b.cout, b.stride, b.kernel, b.hidden, b.se_hidden)
    fused = [s.width for s in spec.stages[-spec.head.fuse:]]
    total += sum(pool_params(spec.head.pool, c) for c in fused)
    return total + head_params(_head_in(spec), spec.head.hidden, spec.num_outputs)


def stage_sizes(spec: ArchSpec, size: int | None = None) -> list[int]:
    """Spatial size of each stage's output for a `size` x `size` input (default: what the backbone
    sees, `InputSpec.view`: the patch or the crop)."""
    return _walk(spec, size or spec.input.view)[1]


def count_flops(spec: ArchSpec) -> int:
    """Forward FLOPs to score one image (one multiply-add = one FLOP): one crop, or every patch of the
    test grid (and the global stream)."""
    return _image_flops(spec, training=False)


def train_flops(spec: ArchSpec) -> int:
    """Forward FLOPs per training image: one crop, or the random patches of one step (and the global
    stream). What the budget model charges for training."""
    return _image_flops(spec, training=True)


def backbone_views(spec: ArchSpec, training: bool = False) -> list[tuple[int, int]]:
    """(side in px, how many) of the views the stem and stages run on per image: the crop once, or the
    patches (a training step's or the test grid) and the reduced whole image."""
    inp = spec.input
    if not inp.patch:
        return [(inp.crop, 1)]
    return [(inp.patch, inp.train_patches if training else inp.grid ** 2)] + (
        [(inp.global_size, 1)] if inp.global_size else [])


def _image_flops(spec: ArchSpec, training: bool) -> int:
    backbone = sum(n * _walk(spec, size)[0] for size, n in backbone_views(spec, training))
    return backbone + head_flops(_head_in(spec), spec.head.hidden, spec.num_outputs)


def _head_in(spec: ArchSpec) -> int:
    return streams(spec) * sum(pool_dim(spec.head.pool, s.width) for s in spec.stages[-spec.head.fuse:])


def _walk(spec: ArchSpec, size: int) -> tuple[int, list[int]]:
    """(FLOPs of the stem, stages and pools on one `size` px view, each stage's output size)."""
    flops = stem_flops(spec.stem.kind, spec.stem.width, spec.stem.kernel, size, spec.input.mscn)
    x = stem_out(spec.stem.kind, spec.stem.kernel, size)
    if x < 1:
        raise ValueError(f"input {size}px is too small for the stem")
    sizes = []
    for blocks in block_plan(spec):
        for b in blocks:
            f, x = BLOCK_FAMILIES[b.block][2](b.cin, b.cout, b.stride, b.kernel, b.hidden, b.se_hidden, x)
            if x < 1:
                raise ValueError(f"input {size}px is too small: a stage's feature map vanishes")
            flops += f
        sizes.append(x)
    fused = list(zip([s.width for s in spec.stages], sizes))[-spec.head.fuse:]
    return flops + sum(pool_flops(spec.head.pool, c, s) for c, s in fused), sizes

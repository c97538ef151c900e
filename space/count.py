"""Exact parameter and FLOP counts from a spec, without building the model (over-cap specs are
rejected before anything is allocated). Each family's formulas live beside its module."""
from __future__ import annotations

from space.layers import BLOCK_FAMILIES
from space.layers.conv import stem_flops, stem_out, stem_params
from space.layers.heads import head_flops, head_params, pool_dim, pool_flops, pool_params
from space.spec import ArchSpec, block_plan


def count_params(spec: ArchSpec) -> int:
    """Exactly `sum(p.numel() for p in build_model(spec).parameters())`."""
    total = stem_params(spec.stem.kind, spec.stem.width, spec.stem.kernel, spec.input.mscn)
    for blocks in block_plan(spec):
        for b in blocks:
            total += BLOCK_FAMILIES[b.block][1](b.cin, b.cout, b.stride, b.kernel, b.hidden, b.se_hidden)
    fused = [s.width for s in spec.stages[-spec.head.fuse:]]
    total += sum(pool_params(spec.head.pool, c) for c in fused)
    return total + head_params(sum(pool_dim(spec.head.pool, c) for c in fused), spec.head.hidden, spec.num_outputs)


def stage_sizes(spec: ArchSpec, size: int | None = None) -> list[int]:
    """Spatial size of each stage's output for a `size` x `size` input (default: the spec's crop)."""
    return _walk(spec, size or spec.input.crop)[1]


def count_flops(spec: ArchSpec, size: int | None = None) -> int:
    """Forward FLOPs per image (one multiply-add = one FLOP) at `size` (default: the spec's crop)."""
    return _walk(spec, size or spec.input.crop)[0]


def _walk(spec: ArchSpec, size: int) -> tuple[int, list[int]]:
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
    flops += sum(pool_flops(spec.head.pool, c, s) for c, s in fused)
    return flops + head_flops(sum(pool_dim(spec.head.pool, c) for c, _ in fused), spec.head.hidden, spec.num_outputs), sizes

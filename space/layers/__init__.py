"""Layer families, one file each; every stage-block family declares its `BlockFamily` beside its module."""
from __future__ import annotations

from space.layers.attention import ATTENTION
from space.layers.conv import BlockFamily
from space.layers.convnext import CONVNEXT
from space.layers.mbconv import MBCONV
from space.layers.residual import RESIDUAL

BLOCK_FAMILIES: dict[str, BlockFamily] = {
    "residual": RESIDUAL, "mbconv": MBCONV, "convnext": CONVNEXT, "attention": ATTENTION,
}
"""Every stage-block family by its name (`StageSpec.block`; each key is its family's `name`, tested). A literal
table, so the notebook can cut it to the families its model uses."""


def register_family(family: BlockFamily) -> BlockFamily:
    """Add a family defined outside this package (e.g. a test's) to `BLOCK_FAMILIES`; its traits then reach spec
    validation, sampling, counting, building, pruning and the paper. Refuses a name already taken."""
    if family.name in BLOCK_FAMILIES:
        raise ValueError(f"block family {family.name!r} is already registered")
    BLOCK_FAMILIES[family.name] = family
    return family

"""Layer families, one file each; every stage-block family declares its `BlockFamily` beside its module."""
from __future__ import annotations

from space.layers.attention import ATTENTION
from space.layers.conv import BlockFamily
from space.layers.convnext import CONVNEXT
from space.layers.mbconv import MBCONV
from space.layers.residual import RESIDUAL

BLOCK_FAMILIES: dict[str, BlockFamily] = {"residual": RESIDUAL, "mbconv": MBCONV, "convnext": CONVNEXT, "attention": ATTENTION}
"""Every stage-block family by its name (`StageSpec.block`; each key is its family's `name`, tested). A literal
table, so the notebook can cut it to the families its model uses."""

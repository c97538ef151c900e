"""What can be built: architecture specs, their layers, exact counts, and the search space."""
from __future__ import annotations

from space.count import PartCost, count_flops, count_params, part_costs, stage_sizes, train_flops
from space.model import IQANet, build_model
from space.sample import (
    CapError, Caps, SpaceConfig, fit_to_caps, sample_spec, scale_widths, shrink_to_fit, spec_summary,
)
from space.spec import ArchSpec, BlockPlan, HeadSpec, InputSpec, StageSpec, StemSpec, block_plan, make_divisible

__all__ = ["ArchSpec", "BlockPlan", "CapError", "Caps", "HeadSpec", "IQANet", "InputSpec", "PartCost", "SpaceConfig",
           "StageSpec", "StemSpec", "block_plan", "build_model", "count_flops", "count_params", "fit_to_caps",
           "make_divisible", "part_costs", "sample_spec", "scale_widths", "shrink_to_fit", "spec_summary",
           "stage_sizes", "train_flops"]

"""The reference architectures the benchmarks measure: about 0.2M, 1M and 5M parameters."""
from __future__ import annotations

from space import ArchSpec, HeadSpec, InputSpec, StageSpec, StemSpec


def reference_specs(size: int = 320) -> dict[str, ArchSpec]:
    """Plain residual CNNs of three sizes at `size` px (full-image crops)."""
    def cnn(widths: list[int], depth: int) -> ArchSpec:
        return ArchSpec(InputSpec(size, size), StemSpec("conv", widths[0], 3),
                        [StageSpec("residual", w, depth, 2, 3) for w in widths], HeadSpec("avgstd", 1))

    return {"0.2M": cnn([16, 32, 64, 96], 1), "1M": cnn([32, 64, 128, 192], 1), "5M": cnn([48, 96, 192, 320], 2)}

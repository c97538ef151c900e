"""Compression: structured pruning (re-expressed as specs) and quantized storage, measured per variant."""
from __future__ import annotations

from compress.prune import PruneResult, prune_model, rebuild, spec_of
from compress.stage import candidates, compress_study
from compress.variants import VariantStore

__all__ = ["PruneResult", "VariantStore", "candidates", "compress_study", "prune_model", "rebuild", "spec_of"]

"""Compression: structured pruning (re-expressed as specs), int8/fp16 storage, variants measured and recorded."""
from __future__ import annotations

from compress.prune import PruneResult, prune_model, spec_of
from compress.stage import compress_study
from compress.variants import Variant, VariantStore

__all__ = ["PruneResult", "Variant", "VariantStore", "compress_study", "prune_model", "spec_of"]

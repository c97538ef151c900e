"""Compression: structured pruning (re-expressed as specs), int8/fp16 storage, variants measured and recorded."""
from __future__ import annotations

from compress.prune import PruneResult, prune_model, rebuild, spec_of
from compress.quantize import Measurement, measure, roundtrip
from compress.stage import candidates, compress_study
from compress.variants import Variant, VariantStore, list_variants, record_variant, variant_exists

__all__ = ["Measurement", "PruneResult", "Variant", "VariantStore", "candidates", "compress_study", "list_variants",
           "measure", "prune_model", "rebuild", "record_variant", "roundtrip", "spec_of", "variant_exists"]

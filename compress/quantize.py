"""Quantized storage (int8, fp16) and the measurement every variant gets.

int8 is weight-only: each conv / linear weight is stored as symmetric per-output-channel int8 plus
fp32 scales (biases and norms stay fp32) and dequantised at load, so the common checkpoint loader
rebuilds it like any other model and it runs anywhere in fp32. FX-graph static PTQ
(`prepare_fx`/`convert_fx`, x86 qconfig) was tried on IQANet: it converts, but quantised activations
of these small regressors break their predictions (correlation with the fp32 model near 0 on
synthetic images, against > 0.9999 for weight-only), and the result needs the FX graph to reload.
fp16 stores `half()` weights and evaluates after `.float()`. Challenges rank parameters, not bytes,
so quantisation buys disk size only; its cost is the score change measured here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from search.checkpoint import load_checkpoint
from search.data import ImageSet
from search.profiles import Profile
from search.train.loop import evaluate
from space import count_flops, count_params

WEIGHT_FORMATS = ("int8", "fp16")


@dataclass
class Measurement:
    params: int
    bytes: int
    flops: int
    score: float
    metrics: dict[str, float]
    """The first target's metrics."""

    def delta(self, parent: "Measurement") -> dict[str, float]:
        """Change against `parent`: parameters, bytes, score and each metric."""
        out = {"params": self.params - parent.params, "bytes": self.bytes - parent.bytes,
               "score": self.score - parent.score}
        out.update({k: v - parent.metrics[k] for k, v in self.metrics.items() if k in parent.metrics})
        return out


def measure(path: Path, val_set: ImageSet, profile: Profile, views: int = 1,
            device: torch.device | str = "cpu") -> Measurement:
    """Reload a saved checkpoint through the common loader and score it on `val_set`."""
    model, _ = load_checkpoint(path)
    spec = model.spec
    per_target = evaluate(model, val_set, spec.input.crop, views, device=device)
    return Measurement(count_params(spec), Path(path).stat().st_size, count_flops(spec),
                       float(profile.score(per_target)), next(iter(per_target.values())))

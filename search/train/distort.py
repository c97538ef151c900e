"""Synthetic distortions at graded strength, for self-supervised pretraining without external data: an
image is better than a copy of itself degraded a little, which is better than one degraded more
(RankIQA's idea). Every function maps a float batch in [0, 1] ([N, 3, H, W]) and a strength in (0, 1]
to a degraded batch of the same shape, on the batch's device, without host synchronisation."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

Distortion = Callable[[torch.Tensor, float, torch.Generator | None], torch.Tensor]


def blur(x: torch.Tensor, strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Separable Gaussian blur, sigma 0.5 to 3 pixels."""
    sigma = 0.5 + 2.5 * strength
    radius = max(1, round(2 * sigma))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-t.pow(2) / (2 * sigma ** 2))
    k = (k / k.sum()).repeat(x.shape[1], 1)  # [C, K]
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), k[:, None, None, :], groups=c)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), k[:, None, :, None], groups=c)


def noise(x: torch.Tensor, strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Additive white Gaussian noise, standard deviation up to 0.15."""
    gen_dev = generator.device if generator is not None else torch.device("cpu")
    z = torch.randn(x.shape, generator=generator, device=gen_dev, dtype=x.dtype).to(x.device)
    return (x + 0.15 * strength * z).clamp_(0, 1)


def pixelate(x: torch.Tensor, strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Down-sampled by up to 6x and scaled back up: lost detail, blocky edges."""
    h, w = x.shape[-2:]
    factor = 1 + 5 * strength
    small = F.interpolate(x, size=(max(1, round(h / factor)), max(1, round(w / factor))), mode="area")
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


def contrast(x: torch.Tensor, strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Contrast pulled towards each image's mean grey by up to 80 %."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return mean + (x - mean) * (1 - 0.8 * strength)


def quantize(x: torch.Tensor, strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Fewer grey levels per channel: from 64 down to 4 (banding)."""
    levels = round(2 ** (6 - 4 * strength))
    return torch.round(x * (levels - 1)) / (levels - 1)


DISTORTIONS: dict[str, Distortion] = {"blur": blur, "noise": noise, "pixelate": pixelate, "contrast": contrast,
                                      "quantize": quantize}


def graded_pair(x: torch.Tensor, names: list[str], host: torch.Generator, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(mildly, strongly) degraded copies of `x` by one of the distortions `names`. The distortion and the
    two strengths are drawn from the CPU generator `host` (no GPU value is read back); noise comes from
    `generator`."""
    fn = DISTORTIONS[names[int(torch.randint(len(names), (1,), generator=host))]]
    mild = 0.1 + 0.4 * float(torch.rand((), generator=host))
    strong = min(1.0, mild + 0.3 + 0.3 * float(torch.rand((), generator=host)))
    return fn(x, mild, generator), fn(x, strong, generator)

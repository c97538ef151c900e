"""Convolution + BatchNorm (+ activation) and the stems; each with its exact parameter and FLOP count.

FLOPs count one multiply-add as one FLOP (fvcore's convention); BatchNorm, activations, pooling and
additions are not counted.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATION_LAYERS = {"relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU}
"""The layer of each name in `space.spec.ACTIVATIONS`."""


def unit_float(x: torch.Tensor) -> torch.Tensor:
    """Images as float32 in [0, 1] (the backbone's input convention): uint8 ones converted, float ones as they
    are. A view that cuts patches or fragments converts only what it cut, not the whole native image."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


def make_act(name: str) -> nn.Module:
    return ACTIVATION_LAYERS[name]()


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class ConvBN(nn.Sequential):
    """Conv2d without bias, BatchNorm, optional activation; padding k//2 unless given."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: str | None = None, padding: int | None = None):
        pad = kernel // 2 if padding is None else padding
        layers = [nn.Conv2d(cin, cout, kernel, stride, pad, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        if act:
            layers.append(make_act(act))
        super().__init__(*layers)


def conv_bn_params(cin: int, cout: int, kernel: int, groups: int = 1) -> int:
    return cin // groups * cout * kernel * kernel + 2 * cout


def conv_flops(cin: int, cout: int, kernel: int, out_size: int, groups: int = 1) -> int:
    return cin // groups * cout * kernel * kernel * out_size * out_size


@dataclass(frozen=True)
class BlockPlan:
    """One block with every width resolved (`space.spec.block_plan`), as its family builds and counts it."""

    block: str
    cin: int
    cout: int
    stride: int
    kernel: int
    hidden: int
    se_hidden: int
    """0 = no squeeze-excitation."""


@dataclass(frozen=True)
class BlockFamily:
    """A stage-block family as the rest of the project sees it, declared once beside its module: how it is
    built and counted, which layers carry its widths (so a pruned block is re-expressed as a spec), and its
    traits, which spec validation and defaults (`space.spec`), sampling and the notation (`space.sample`) and
    the paper (`results.paper`) ask it instead of naming families. Registered by name in
    `space.layers.BLOCK_FAMILIES` (`space.layers.register_family` for one defined elsewhere)."""

    name: str
    module: type[nn.Module]
    """Built as `module(cin, cout, stride, kernel, hidden, se_hidden, act)`."""
    params: Callable[[int, int, int, int, int, int], int]
    """(cin, cout, stride, kernel, hidden, se_hidden) -> exact parameter count."""
    flops: Callable[[int, int, int, int, int, int, int], tuple[int, int]]
    """(cin, cout, stride, kernel, hidden, se_hidden, size) -> (FLOPs, output size)."""
    out_layer: Callable[[nn.Module], nn.Module]
    """The layer whose output channels are the block's (and so its stage's) width."""
    hidden_layer: Callable[[nn.Module], nn.Module]
    """The layer whose output channels are the block's hidden width."""
    se_layer: Callable[[nn.Module], nn.Module | None] = lambda block: None
    """The squeeze-excitation's first layer (its output channels are the SE width), None without SE."""
    kept_whole: Callable[[nn.Module], list[nn.Module]] = lambda block: []
    """Layers channel pruning must leave whole, and `kept_whole_why` says why."""
    kept_whole_why: str = ""
    title: str = ""
    """Its name in the paper's prose and tables (e.g. "MBConv"); empty: `name`."""
    short: str = ""
    """Its prefix in the one-line notation (`space.sample.spec_summary`, e.g. "mb"); empty: `name`."""
    kernel: bool = True
    """Whether it has a kernel size (`StageSpec.kernel`: sampled, shown); False (attention): the kernel is unused."""
    expansion: bool = True
    """Whether its hidden width is the stage width times `StageSpec.expansion` (sampled, shown); False: the
    hidden width is the stage width."""
    se_channels: Callable[[int, int], int] | None = None
    """(stage width, hidden width) -> the channels its optional squeeze-excitation acts on (`StageSpec.se`:
    sampled, shown); None: the family has no SE."""
    late_only: bool = False
    """Offered only in the last two stages, where the map has at most `SpaceConfig.attention_max_tokens`
    positions (global attention's cost grows with the square of the positions)."""

    def __post_init__(self):
        object.__setattr__(self, "title", self.title or self.name)
        object.__setattr__(self, "short", self.short or self.name)

    @property
    def has_se(self) -> bool:
        """Whether a stage of this family may add a squeeze-excitation."""
        return self.se_channels is not None

    def build(self, b: BlockPlan, act: str) -> nn.Module:
        return self.module(b.cin, b.cout, b.stride, b.kernel, b.hidden, b.se_hidden, act)

    def count_params(self, b: BlockPlan) -> int:
        return self.params(b.cin, b.cout, b.stride, b.kernel, b.hidden, b.se_hidden)

    def count_flops(self, b: BlockPlan, size: int) -> tuple[int, int]:
        """(FLOPs, output size) on a `size` x `size` input."""
        return self.flops(b.cin, b.cout, b.stride, b.kernel, b.hidden, b.se_hidden, size)

    def widths(self, block: nn.Module) -> tuple[int, int, int]:
        """(output, hidden, SE or 0) widths read off a built, possibly pruned, block of this family."""
        se = self.se_layer(block)
        return self.out_layer(block).out_channels, self.hidden_layer(block).out_channels, se.out_channels if se else 0


MSCN_WINDOW = 7


class MSCN(nn.Module):
    """Appends BRISQUE's mean-subtracted, contrast-normalised luminance, (Y - mu) / (sigma + 1/255)
    with a 7x7 Gaussian window (sigma 7/6), as a fourth channel. Parameter-free: it hands a small
    from-scratch model the local-contrast statistics that natural-scene quality models are built on.
    Computed in fp32 even under autocast (a variance in bf16 is too coarse)."""

    def __init__(self):
        super().__init__()
        taps = torch.arange(MSCN_WINDOW, dtype=torch.float32) - MSCN_WINDOW // 2
        window = torch.exp(-taps ** 2 / (2 * (7 / 6) ** 2))
        self.register_buffer("window", window / window.sum(), persistent=False)

    def _blur(self, x: torch.Tensor) -> torch.Tensor:
        pad = MSCN_WINDOW // 2
        x = F.conv2d(F.pad(x, (pad, pad, 0, 0), mode="reflect"), self.window.view(1, 1, 1, -1))
        return F.conv2d(F.pad(x, (0, 0, pad, pad), mode="reflect"), self.window.view(1, 1, -1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            rgb = x.float()
            luma = 0.299 * rgb[:, 0:1] + 0.587 * rgb[:, 1:2] + 0.114 * rgb[:, 2:3]
            mu = self._blur(luma)
            sigma = (self._blur(luma * luma) - mu * mu).clamp_min(0).sqrt()
            return torch.cat([rgb, (luma - mu) / (sigma + 1 / 255)], 1).to(x.dtype)


def mscn_flops(size: int) -> int:
    """Two separable 7-tap blurs (of Y and Y^2) over one channel."""
    return 2 * 2 * MSCN_WINDOW * size * size


class Stem(nn.Module):
    """conv: kxk stride-2 conv-BN-act. patchify: kxk stride-k conv (with bias) + BN, non-overlapping.
    With `mscn`, the MSCN channel is appended to the RGB input first."""

    def __init__(self, kind: str, width: int, kernel: int, act: str, mscn: bool = False):
        super().__init__()
        cin = stem_in(mscn)
        self.mscn = MSCN() if mscn else nn.Identity()
        if kind == "conv":
            self.body = ConvBN(cin, width, kernel, 2, act=act)
        else:
            self.body = nn.Sequential(nn.Conv2d(cin, width, kernel, kernel), nn.BatchNorm2d(width))

    def conv(self) -> nn.Conv2d:
        """The stem's convolution: its output channels are the stem width."""
        return self.body[0]

    def forward(self, x):
        return self.body(self.mscn(x))


def stem_in(mscn: bool) -> int:
    return 4 if mscn else 3


def stem_out(kind: str, kernel: int, size: int) -> int:
    return conv_out(size, kernel, 2, kernel // 2) if kind == "conv" else conv_out(size, kernel, kernel, 0)


def stem_params(kind: str, width: int, kernel: int, mscn: bool = False) -> int:
    return conv_bn_params(stem_in(mscn), width, kernel) + (width if kind == "patchify" else 0)


def stem_flops(kind: str, width: int, kernel: int, size: int, mscn: bool = False) -> int:
    stem = conv_flops(stem_in(mscn), width, kernel, stem_out(kind, kernel, size))
    return stem + (mscn_flops(size) if mscn else 0)

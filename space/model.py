"""IQANet: a from-scratch quality model built from an `ArchSpec`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from space.layers import BLOCK_FAMILIES
from space.layers.conv import BlockFamily, Stem, unit_float
from space.layers.fragments import FragmentView
from space.layers.heads import Head, Pool, patch_pool_dim, pool_dim
from space.layers.patches import PatchView
from space.spec import ArchSpec, block_plan


class CropView(nn.Module):
    """A whole-image model's features of each image: the backbone's pooled features of the view itself."""

    def kept_whole(self) -> list[tuple[list[nn.Module], str]]:
        """None: the view has no layers (`IQANet.kept_whole`)."""
        return []

    def forward(self, features: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return features(x)


# what the backbone sees of an image -> the module that forms its features, built from the spec (`view_kind`):
# its `InputSpec`, and for patches also how they are pooled (`HeadSpec.patch_pool`) and the features' width
VIEWS: dict[str, Callable[[ArchSpec], nn.Module]] = {
    "crop": lambda spec: CropView(),
    "patches": lambda spec: PatchView(spec.input, spec.head.patch_pool, feature_width(spec)),
    "fragments": lambda spec: FragmentView(spec.input.fragments, spec.input.fragment),
}


def view_kind(spec: ArchSpec) -> str:
    """"fragments" for a fragment model (`InputSpec.fragments`), "patches" for a patch model
    (`InputSpec.patch`), else "crop"."""
    return "fragments" if spec.input.fragments else "patches" if spec.input.patch else "crop"


def fused_widths(spec: ArchSpec) -> list[int]:
    """Widths of the last `HeadSpec.fuse` stages, whose pooled features the head reads."""
    return [s.width for s in spec.stages[-spec.head.fuse:]]


def feature_width(spec: ArchSpec) -> int:
    """Width of the backbone's pooled, fused features of one view (`IQANet.features`)."""
    return sum(pool_dim(spec.head.pool, c) for c in fused_widths(spec))


def head_in(spec: ArchSpec) -> int:
    """Width of the feature vector the regressor reads: the view's features (a patch model's pooled over
    its patches, twice as wide with meanstd), and a global stream's beside them."""
    width = feature_width(spec)
    return patch_pool_dim(spec.head.patch_pool, width) + (width if spec.input.global_size else 0)


@dataclass(frozen=True)
class BuiltBlock:
    """One block of a built model: where it sits, its family, its module and its stride."""

    stage: int
    index: int
    family: BlockFamily
    module: nn.Module
    stride: int

    @property
    def name(self) -> str:
        return f"stages[{self.stage}][{self.index}]"


class IQANet(nn.Module):
    """stem -> stages -> pooled features of the last `fuse` stages -> head -> scores in target units.
    A patch model (`InputSpec.patch`) runs the stem and stages on each patch, pools the patches' pooled
    features (`HeadSpec.patch_pool`), and with a global stream appends those of the reduced whole image.
    A fragment model (`InputSpec.fragments`) runs them once on the image's fragments spliced into one view.

    Input: float [N,3,H,W] in [0, 1], or uint8 [N,3,H,W] (`takes_uint8`: a patch or fragment view cuts the
    native image first and converts only what it cut). Output: [N, num_outputs] = raw * target_std + target_mean, with
    the two buffers set by the trainer from the training targets, so saved weights predict MOS.
    """

    def __init__(self, spec: ArchSpec):
        super().__init__()
        spec.validate()
        self.spec = spec
        self.stem = Stem(spec.stem.kind, spec.stem.width, spec.stem.kernel, spec.act, spec.input.mscn)
        self.stages = nn.ModuleList(
            nn.Sequential(*(BLOCK_FAMILIES[b.block].build(b, spec.act) for b in blocks)) for blocks in block_plan(spec))
        self.pools = nn.ModuleList(Pool(spec.head.pool, c) for c in fused_widths(spec))
        self.view = VIEWS[view_kind(spec)](spec)
        self.head = Head(head_in(spec), spec.head.hidden, spec.head.dropout, spec.num_outputs, spec.act)
        self.register_buffer("target_mean", torch.zeros(spec.num_outputs))
        self.register_buffer("target_std", torch.ones(spec.num_outputs))

    @property
    def takes_uint8(self) -> bool:
        """Whether the trainer should hand it uint8 images: its view cuts patches or fragments, so converting
        the whole native image to float first would cost more than the backbone's step on what is cut."""
        return view_kind(self.spec) != "crop"

    def stem_conv(self) -> nn.Conv2d:
        """The stem's convolution: its output channels are the stem width."""
        return self.stem.conv()

    def output_linear(self) -> nn.Linear:
        """The head's last Linear: its output width is the number of targets."""
        return self.head.output_linear()

    def head_hidden_linear(self) -> nn.Linear | None:
        """The head's hidden Linear (its output channels are `HeadSpec.hidden`), None without one."""
        return self.head.hidden_linear()

    def blocks(self) -> list[list[BuiltBlock]]:
        """Per stage, its blocks with their families (layers' widths may differ from the spec's after
        channel pruning; the families, depths and strides never do)."""
        return [[BuiltBlock(si, bi, BLOCK_FAMILIES[plan.block], module, plan.stride)
                 for bi, (plan, module) in enumerate(zip(plans, stage))]
                for si, (plans, stage) in enumerate(zip(block_plan(self.spec), self.stages))]

    def kept_whole(self) -> list[tuple[list[nn.Module], str]]:
        """Layers whose output width the model's function fixes (so channel pruning must leave them
        whole), each group with why: the output Linear, attention-pooling score convs, a patch model's
        patch-attention score Linear, and what each block's family keeps whole."""
        kept = [([self.output_linear()], "head output Linear (its width is the number of targets)")]
        kept += [([pool.score], f"pools[{i}].score (attention-pooling score conv)")
                 for i, pool in enumerate(self.pools) if pool.score is not None]
        kept += self.view.kept_whole()
        return kept + [(b.family.kept_whole(b.module), f"{b.name} {b.family.kept_whole_why}")
                       for stage in self.blocks() for b in stage if b.family.kept_whole(b.module)]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled, fused feature vector the head regresses from."""
        x = self.stem(unit_float(x))
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        fused = maps[-len(self.pools):]
        return torch.cat([pool(m) for pool, m in zip(self.pools, fused)], 1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The feature vector of each image: of the view itself, of its patches (and whole image), or of its
        spliced fragments."""
        return self.view(self.features, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x)) * self.target_std + self.target_mean


class Ensemble(nn.Module):
    """`spec.members` networks of one architecture (`ArchSpec.member`), trained apart, scoring an image by the
    mean of their scores (each in target units). Untrained from `build_model`; trained member by member
    (`search.train.retrain`), then put together by passing the trained `members`."""

    def __init__(self, spec: ArchSpec, members: list[IQANet] | None = None):
        super().__init__()
        spec.validate()
        if members is not None and len(members) != spec.members:
            raise ValueError(f"an ensemble of {spec.members} members cannot hold {len(members)}")
        self.spec = spec
        self.members = nn.ModuleList(members if members is not None else
                                     [IQANet(spec.member()) for _ in range(spec.members)])

    @property
    def takes_uint8(self) -> bool:
        return self.members[0].takes_uint8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(x) for member in self.members]).mean(0)


def build_model(spec: ArchSpec) -> IQANet | Ensemble:
    """The untrained model of `spec`: one `IQANet`, or an `Ensemble` of them when `spec.members` > 1."""
    return Ensemble(spec) if spec.members > 1 else IQANet(spec)

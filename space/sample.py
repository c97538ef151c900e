"""The search space: what a trial may choose, and how an Optuna trial becomes a spec under the caps."""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Callable

from space.count import count_flops, count_params
from space.layers import BLOCK_FAMILIES
from space.spec import ArchSpec, HeadSpec, InputSpec, StageSpec, StemSpec, family, has_se, make_divisible


class CapError(ValueError):
    """A spec cannot be brought under the caps by shrinking widths."""


@dataclass(frozen=True)
class Caps:
    """Hard limits: a spec over either is never built or trained."""

    params: int = 10_000_000
    flops: int | None = None

    def allows(self, spec: ArchSpec) -> bool:
        return count_params(spec) <= self.params and (self.flops is None or count_flops(spec) <= self.flops)

    def check(self, spec: ArchSpec, role: str = "model") -> None:
        """Raise CapError naming `role`, its counts and the caps when `spec` is over a cap: the one
        cap check of every stage (search, compress, report, export)."""
        if not self.allows(spec):
            raise CapError(f"{role} ({count_params(spec):,} params, {count_flops(spec):,} FLOPs) is over the caps "
                           f"({self})")


@dataclass(frozen=True)
class SpaceConfig:
    """The choices the sampler draws from. Defaults suit 512 px AIGC images; `tiny()` suits tests."""

    resizes: tuple[int, ...] = (224, 288, 384)
    crop_fractions: tuple[float, ...] = (1.0, 0.75)
    patches: tuple[int, ...] = (0, 128, 256)
    """Input patch sizes a trial may choose: 0 = a view of the image at one of `resizes`; P > 0 = the
    model cuts P x P patches from the image at `native` px (`InputSpec.patch`). On the CPU ladder
    (bench/NOTES.md) 256 px and 128 px patches of the 512 px image beat the 160 px whole image at
    equal CPU time on every fold."""
    native: int = 512
    """The images' own size (AGIQA-1K/3K: 512 px), where patch trials cut their patches."""
    train_patches: tuple[int, ...] = (1, 2)
    """Patches per image per training step a patch trial may choose (4 did no better than 1 at equal time)."""
    patch_grids: tuple[int, ...] = (3, 4)
    """Test patches of a patch trial: grid x grid, a grid side it may choose."""
    global_sizes: tuple[int, ...] = (0, 160)
    """Whole-image stream sizes a patch trial may choose (0: patches only)."""
    test_scales: tuple[float, ...] = (1.0, 0.75)
    """Multi-scale test views a patch trial may choose, as a fraction of `native`: 1.0, the native image
    only; f < 1, also the test grid of the image reduced to f x native (`InputSpec.test_scales`)."""
    test_flips: tuple[bool, ...] = (False, True)
    """Whether a patch trial may also score every test patch mirrored (`InputSpec.test_flip`)."""
    patch_pools: tuple[str, ...] = ("mean", "attn", "meanstd")
    """How a patch trial with 2 or more training patches may pool its patches' features (`HeadSpec.patch_pool`;
    with one training patch: the mean, as pooling over one patch learns nothing)."""
    fragments: tuple[int, ...] = (0, 7)
    """Fragment grids a trial without patches may choose (`InputSpec.fragments`): 0 = the image at one of
    `resizes`; S > 0 = an S x S grid of native-resolution mini-patches of the image at `native` px,
    spliced into one view (FAST-VQA): 7 x 32 px = 224 px, the cost of the smallest resize."""
    fragment_sizes: tuple[int, ...] = (32,)
    """Fragment sides in px a fragment trial may choose (`InputSpec.fragment`)."""
    mscn: tuple[bool, ...] = (False, True)
    """Whether the MSCN contrast channel may be appended to the input (`InputSpec.mscn`)."""
    activations: tuple[str, ...] = ("relu", "silu", "gelu")
    stem_kinds: tuple[str, ...] = ("conv", "patchify")
    stem_widths: tuple[int, ...] = (16, 24, 32)
    patch_sizes: tuple[int, ...] = (2, 4)
    stages: tuple[int, int] = (3, 5)
    blocks: tuple[str, ...] = ("residual", "mbconv", "convnext", "attention")
    widths: tuple[int, ...] = (16, 24, 32, 48, 64, 96, 128, 160, 192, 256)
    depths: tuple[int, int] = (1, 4)
    kernels: tuple[int, ...] = (3, 5, 7)
    expansions: tuple[float, ...] = (2.0, 3.0, 4.0, 6.0)
    attention_max_tokens: int = 256
    """Families that are `late_only` (attention) are offered only in the last two stages, and only where the map
    has at most this many positions."""
    pools: tuple[str, ...] = ("avg", "avgstd", "attn")
    max_fuse: int = 3
    head_hiddens: tuple[int, ...] = (0, 64, 128, 256)
    dropouts: tuple[float, ...] = (0.0, 0.1, 0.3)

    @property
    def largest_input(self) -> int:
        """The largest image side a trial may decode (the native size when patches or fragments are offered)."""
        return max(self.resizes + ((self.native,) if any(self.patches) or any(self.fragments) else ()))

    @classmethod
    def small(cls) -> "SpaceConfig":
        """128-160 px inputs (or 128/256 px patches or a 5 x 5 grid of 32 px fragments of the 512 px image)
        and models up to ~1M parameters: quick real-data studies, even on a CPU."""
        return cls(resizes=(128, 160), fragments=(0, 5), stem_widths=(16, 24), stages=(3, 4),
                   widths=(16, 24, 32, 48, 64, 96, 128), depths=(1, 3), expansions=(2.0, 3.0, 4.0),
                   attention_max_tokens=64, head_hiddens=(0, 64, 128))

    @classmethod
    def tiny(cls) -> "SpaceConfig":
        """64 px images, models of a few thousand to ~100k parameters that train in seconds on a CPU."""
        return cls(resizes=(64,), patches=(0,), fragments=(0,), native=64, global_sizes=(0, 32), stem_widths=(8, 16),
                   patch_sizes=(2,), stages=(2, 3), widths=(8, 16, 24, 32, 48), depths=(1, 2), kernels=(3, 5),
                   expansions=(2.0, 3.0, 4.0), attention_max_tokens=64, head_hiddens=(0, 32), max_fuse=2,
                   patch_grids=(3,), test_scales=(1.0,), test_flips=(False,), patch_pools=("mean",))

    def to_dict(self) -> dict:
        return asdict(self)


def sample_spec(trial, space: SpaceConfig, caps: Caps, num_outputs: int = 1) -> ArchSpec:
    """Define-by-run sampling with conditional choices, then shrunk to fit `caps` (never over them)."""
    inp = _sample_input(trial, space)
    act = trial.suggest_categorical("act", list(space.activations))
    stem_kind = trial.suggest_categorical("stem", list(space.stem_kinds))
    kernel = trial.suggest_categorical("stem_patch", list(space.patch_sizes)) if stem_kind == "patchify" else 3
    stem = StemSpec(stem_kind, trial.suggest_categorical("stem_width", list(space.stem_widths)), kernel)
    size = inp.view // 2 if stem_kind == "conv" else inp.view // kernel
    n = trial.suggest_int("stages", *space.stages)
    stages, width = [], stem.width
    for i in range(n):
        stride = trial.suggest_categorical("s0_stride", [1, 2]) if i == 0 else 2
        size = max(1, size // stride)
        late_ok = (i >= n - 2 and size * size <= space.attention_max_tokens
                   and any(BLOCK_FAMILIES[b].late_only for b in space.blocks))
        choices = [b for b in space.blocks if late_ok or not BLOCK_FAMILIES[b].late_only]
        block = trial.suggest_categorical(f"s{i}_block" + ("_late" if late_ok else ""), choices)
        width = max(width, trial.suggest_categorical(f"s{i}_width", list(space.widths)))
        stage = StageSpec(block, width, depth=trial.suggest_int(f"s{i}_depth", *space.depths), stride=stride)
        traits = family(stage)
        if traits.kernel:
            stage.kernel = trial.suggest_categorical(f"s{i}_kernel", list(space.kernels))
        if traits.expansion:
            stage.expansion = trial.suggest_categorical(f"s{i}_expansion", list(space.expansions))
        if traits.has_se:
            stage.se = trial.suggest_categorical(f"s{i}_se", [False, True])
        stages.append(stage)
    head = HeadSpec(
        pool=trial.suggest_categorical("pool", list(space.pools)),
        fuse=trial.suggest_int("fuse", 1, min(space.max_fuse, n)),
        hidden=trial.suggest_categorical("head_hidden", list(space.head_hiddens)),
        dropout=trial.suggest_categorical("dropout", list(space.dropouts)),
    )
    inp.mscn = trial.suggest_categorical("mscn", list(space.mscn))
    if inp.patch:
        _sample_test_views(trial, space, inp, head)
    spec = ArchSpec(inp, stem, stages, head, num_outputs=num_outputs, act=act).validate()
    return fit_to_caps(spec, caps)


def _choose(trial, name: str, choices: tuple):
    """`trial`'s pick among `choices`; a single choice is taken without recording a parameter, so a
    space that offers one option samples exactly as before the option existed."""
    return trial.suggest_categorical(name, list(choices)) if len(choices) > 1 else choices[0]


def _sample_input(trial, space: SpaceConfig) -> InputSpec:
    """A whole-image view (resize, crop fraction), native-resolution patches (size, count, global stream)
    or native-resolution fragments (grid, size)."""
    patch = _choose(trial, "patch", space.patches)
    if patch:
        return InputSpec(space.native, space.native, patch=patch,
                         train_patches=_choose(trial, "train_patches", space.train_patches),
                         global_size=_choose(trial, "global_size", space.global_sizes))
    fragments = _choose(trial, "fragments", space.fragments)
    if fragments:
        return InputSpec(space.native, space.native, fragments=fragments,
                         fragment=_choose(trial, "fragment", space.fragment_sizes))
    resize = trial.suggest_categorical("resize", list(space.resizes))
    crop_fraction = trial.suggest_categorical("crop_fraction", list(space.crop_fractions))
    return InputSpec(resize, make_divisible(resize * crop_fraction))


def _sample_test_views(trial, space: SpaceConfig, inp: InputSpec, head: HeadSpec) -> None:
    """A patch trial's test views (grid, multi-scale, flips) and pooling over patches, set in place; asked
    last, so the choices before them are drawn as before they existed."""
    inp.grid = _choose(trial, "patch_grid", space.patch_grids)
    reduced = round(space.native * _choose(trial, "test_scale", space.test_scales))
    inp.test_scales = [reduced] if inp.patch <= reduced < space.native else []
    inp.test_flip = _choose(trial, "test_flip", space.test_flips)
    pools_over = inp.train_patches > 1 and inp.test_patches > 1
    head.patch_pool = _choose(trial, "patch_pool", space.patch_pools if pools_over else ("mean",))


def scale_widths(spec: ArchSpec, factor: float) -> ArchSpec:
    """A copy with every width (stem, stages, per-block overrides, head hidden) scaled by `factor`."""
    out = copy.deepcopy(spec)
    out.stem.width = make_divisible(spec.stem.width * factor)
    for s in out.stages:
        s.width = make_divisible(s.width * factor)
        s.hidden = [make_divisible(h * factor) for h in s.hidden] if s.hidden else None
        s.se_hidden = [make_divisible(h * factor) for h in s.se_hidden] if s.se_hidden else None
    out.head.hidden = make_divisible(spec.head.hidden * factor) if spec.head.hidden else 0
    return out


def fit_to_caps(spec: ArchSpec, caps: Caps) -> ArchSpec:
    """`spec` itself when it fits, else its widths shrunk step by step until it does.

    Raises CapError when even the narrowest version (every width at 8) is over a cap: the depth or
    resolution is then the problem, and shrinking widths cannot fix it.
    """
    return shrink_to_fit(spec, caps.allows, f"the caps ({caps})")


def shrink_to_fit(spec: ArchSpec, fits: Callable[[ArchSpec], bool], what: str) -> ArchSpec:
    """`spec` itself when `fits(spec)`, else its widths scaled down by 0.9 at a time until it fits;
    CapError naming `what` when even every width at 8 does not."""
    factor, candidate, narrowest = 1.0, spec, scale_widths(spec, 0.0)
    while not fits(candidate):
        if candidate == narrowest:
            raise CapError(f"spec cannot fit {what} by shrinking widths: "
                           f"{count_params(candidate):,} params, {count_flops(candidate):,} FLOPs at minimum width")
        factor *= 0.9
        candidate = scale_widths(spec, factor)
    return candidate


def spec_summary(spec: ArchSpec) -> str:
    """One line, e.g. `conv16 | mb32x2k5e4se | cnx64x2k7e4 | attn128x1e4 | avgstd·f2·h64 | 192/256`; a patch
    model's head and input e.g. `attn·f1·h64·pmeanstd | p128x2g4s384f+160/512` (its patches pooled by mean
    and std; 128 px patches, 2 per training step, a 4 x 4 test grid, also at 384 px, flipped too, and a
    160 px global stream)."""
    parts = [f"{spec.stem.kind}{spec.stem.width}" + (f"p{spec.stem.kernel}" if spec.stem.kind == "patchify" else "")]
    for s in spec.stages:
        traits = family(s)
        desc = f"{traits.short}{s.width}x{s.depth}"
        if traits.kernel:
            desc += f"k{s.kernel}"
        if traits.expansion:
            desc += f"e{s.expansion:g}"
        if has_se(s):
            desc += "se"
        if s.stride == 1:
            desc += "s1"
        if s.hidden:
            desc += "*"
        parts.append(desc)
    head = spec.head
    parts.append(f"{head.pool}·f{head.fuse}" + (f"·h{head.hidden}" if head.hidden else "")
                 + (f"·p{head.patch_pool}" if head.patch_pool != "mean" else ""))
    inp = spec.input
    view = (f"p{inp.patch}x{inp.train_patches}g{inp.grid}" + "".join(f"s{s}" for s in inp.test_scales)
            + ("f" if inp.test_flip else "") + (f"+{inp.global_size}" if inp.global_size else "")
            ) if inp.patch else inp.crop
    view = f"fr{inp.fragments}x{inp.fragment}" if inp.fragments else view
    parts.append(f"{view}/{inp.resize}" + ("+mscn" if inp.mscn else ""))
    if spec.members > 1:
        parts.append(f"ensemble x{spec.members}")
    return " | ".join(parts)

"""Architecture specs: plain dataclasses that round-trip through JSON, and the resolved block plan
that both the model builder and the analytic counters read (one source of truth for every width)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from space.layers import BLOCK_FAMILIES
from space.layers.conv import BlockFamily, BlockPlan

POOLS = ("avg", "avgstd", "attn")
PATCH_POOLS = ("mean", "attn", "meanstd")
STEMS = ("conv", "patchify")
ACTIVATIONS = ("relu", "silu", "gelu")


class UnknownBlock(ValueError):
    """A stage names a block family that is not registered (`space.layers.BLOCK_FAMILIES`): a typo, or, in a
    notebook, a family its code does not carry (it holds only its own model's)."""


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of `divisor`, at least `divisor` (hardware-friendly widths)."""
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


@dataclass
class InputSpec:
    resize: int
    """Working resolution: images are decoded once to resize x resize."""
    crop: int
    """Train crops and evaluation views are crop x crop (crop == resize: the full image)."""
    mscn: bool = False
    """Append the MSCN (local-contrast-normalised) luminance as a fourth input channel (`layers.conv.MSCN`)."""
    patch: int = 0
    """0: the backbone sees the `crop` x `crop` view. P > 0: the model takes the whole `resize` image
    (crop == resize, e.g. AIGC images at their native 512 px) and cuts P x P patches from it itself
    (`layers.patches`): `train_patches` at random per image in training, a fixed `grid` x `grid` at
    test; the backbone pools each patch and the patches' features are pooled (`HeadSpec.patch_pool`).
    Quality cues of AIGC images (malformed hands, smeared texture, banding) are local and fade when the
    image is downscaled."""
    train_patches: int = 1
    grid: int = 3
    global_size: int = 0
    """Patch models only: 0, or a second stream through the same backbone, the whole image reduced to
    this size, whose features are concatenated with the patches' (global composition + local artefacts)."""
    fragments: int = 0
    """0: off. S > 0: an input mode of its own (patch must be 0), FAST-VQA's fragments (`layers.fragments`):
    the model takes the whole `resize` image (crop == resize, e.g. the native 512 px), cuts an S x S grid of
    cells and one `fragment` px patch per cell (at random in its cell in training, centred at test), and
    the backbone sees them spliced into one S*fragment px view: native texture and the whole layout."""
    fragment: int = 32
    """Side of each fragment in px (fragments only): at most resize // fragments, so each fits its cell."""
    test_scales: list[int] = field(default_factory=list)
    """Patch models only, test only: sides (px, in patch..resize-1) of reduced copies of the image from which
    a further `grid` x `grid` of test patches each is cut (multi-scale test views, pooled with the native ones)."""
    test_flip: bool = False
    """Patch models only, test only: each test patch is also scored mirrored left-right, pooled with the rest."""

    @property
    def view(self) -> int:
        """The side of what the backbone sees: the spliced fragments, the patch, else the crop."""
        return self.fragments * self.fragment if self.fragments else self.patch or self.crop

    @property
    def test_patches(self) -> int:
        """Patches a patch model scores per image at test: the grid at the native size and at each of
        `test_scales`, twice with `test_flip`."""
        return self.grid ** 2 * (1 + len(self.test_scales)) * (2 if self.test_flip else 1)


@dataclass
class StemSpec:
    kind: str = "conv"
    """conv: kxk stride-2 conv-BN-act; patchify: kxk stride-k conv + BN."""
    width: int = 16
    kernel: int = 3


@dataclass
class StageSpec:
    block: str
    width: int
    depth: int = 1
    stride: int = 2
    kernel: int = 3
    expansion: float = 4.0
    se: bool = False
    hidden: list[int] | None = None
    """Per-block internal width, overriding the default from width/expansion (pruned models)."""
    se_hidden: list[int] | None = None
    """Per-block squeeze-excitation width, overriding the default (pruned models)."""


@dataclass
class HeadSpec:
    pool: str = "avg"
    fuse: int = 1
    """How many of the last stages are pooled and concatenated."""
    hidden: int = 0
    dropout: float = 0.0
    patch_pool: str = "mean"
    """Patch models: how the patches' features of one image are pooled (`layers.heads.PatchPool`):
    mean; attn, a learned score per patch, softmax over the image's patches, weighted sum; meanstd, mean
    and standard deviation side by side (twice the features). Whole-image models: mean."""


@dataclass
class ArchSpec:
    input: InputSpec
    stem: StemSpec
    stages: list[StageSpec]
    head: HeadSpec = field(default_factory=HeadSpec)
    num_outputs: int = 1
    act: str = "silu"
    members: int = 1
    """Independently trained copies of this network whose scores are averaged (an ensemble): every count
    (`space.count`) and so the parameter cap and the size tier take all of them."""

    def to_dict(self) -> dict:
        """The spec as plain data; `members` only when it is an ensemble, so a single network's dict is as before."""
        out = asdict(self)
        if self.members == 1:
            del out["members"]
        return out

    def member(self) -> "ArchSpec":
        """One member of the ensemble: this spec with `members` 1 (a copy)."""
        return ArchSpec.from_dict({**self.to_dict(), "members": 1})

    @classmethod
    def from_dict(cls, data: dict) -> "ArchSpec":
        try:
            spec = cls(
                input=InputSpec(**data["input"]), stem=StemSpec(**data["stem"]),
                stages=[StageSpec(**s) for s in data["stages"]], head=HeadSpec(**data.get("head", {})),
                num_outputs=data.get("num_outputs", 1), act=data.get("act", "silu"), members=data.get("members", 1),
            )
        except (KeyError, TypeError) as err:
            raise ValueError(f"malformed architecture spec: {err}") from None
        spec.validate()
        return spec

    def validate(self) -> "ArchSpec":
        """Raise ValueError naming the first bad field; return self."""
        def bad(path: str, why: str, value) -> None:
            raise ValueError(f"{path}: {why}, got {value!r}")

        inp = self.input
        if inp.crop < 8 or inp.resize < inp.crop:
            bad("input", "need 8 <= crop <= resize", (inp.crop, inp.resize))
        if inp.patch:
            if not 8 <= inp.patch <= inp.resize or inp.crop != inp.resize:
                bad("input.patch", "needs 8 <= patch <= resize and crop == resize (the model cuts its own patches)",
                    (inp.patch, inp.crop, inp.resize))
            if inp.train_patches < 1 or inp.grid < 1:
                bad("input", "need train_patches >= 1 and grid >= 1", (inp.train_patches, inp.grid))
            if inp.global_size and not 8 <= inp.global_size <= inp.resize:
                bad("input.global_size", "must be 0 or in 8..resize", inp.global_size)
            if any(not inp.patch <= s < inp.resize for s in inp.test_scales):
                bad("input.test_scales", "must be sides in patch..resize-1", inp.test_scales)
        elif inp.global_size:
            bad("input.global_size", "needs patches (input.patch > 0)", inp.global_size)
        elif inp.test_scales or inp.test_flip:
            bad("input", "test_scales and test_flip need patches (input.patch > 0)", (inp.test_scales, inp.test_flip))
        if inp.fragments:
            if inp.patch:
                bad("input.fragments", "is an input mode of its own: needs patch == 0", (inp.fragments, inp.patch))
            if inp.crop != inp.resize or not 1 <= inp.fragment <= inp.resize // inp.fragments or inp.view < 8:
                bad("input.fragments", "needs crop == resize (the model cuts its own fragments), 1 <= fragment <= "
                    "resize // fragments and fragments * fragment >= 8",
                    (inp.fragments, inp.fragment, inp.crop, inp.resize))
        if isinstance(self.members, bool) or not isinstance(self.members, int) or self.members < 1:
            bad("members", "must be a whole number >= 1", self.members)
        if self.stem.kind not in STEMS:
            bad("stem.kind", f"must be one of {STEMS}", self.stem.kind)
        if self.stem.width < 1:
            bad("stem.width", "must be >= 1", self.stem.width)
        if self.stem.kind == "conv" and self.stem.kernel % 2 == 0:
            bad("stem.kernel", "must be odd for a conv stem", self.stem.kernel)
        if self.act not in ACTIVATIONS:
            bad("act", f"must be one of {ACTIVATIONS}", self.act)
        if not self.stages:
            bad("stages", "need at least one stage", self.stages)
        for i, s in enumerate(self.stages):
            p = f"stages[{i}]"
            if s.block not in BLOCK_FAMILIES:
                raise UnknownBlock(f"{p}.block: must be one of {tuple(BLOCK_FAMILIES)}, got {s.block!r}")
            for name in ("width", "depth"):
                if getattr(s, name) < 1:
                    bad(f"{p}.{name}", "must be >= 1", getattr(s, name))
            if s.stride not in (1, 2):
                bad(f"{p}.stride", "must be 1 or 2", s.stride)
            if s.kernel % 2 == 0 or s.kernel < 1:
                bad(f"{p}.kernel", "must be odd", s.kernel)
            if s.expansion <= 0:
                bad(f"{p}.expansion", "must be > 0", s.expansion)
            for name in ("hidden", "se_hidden"):
                values = getattr(s, name)
                if values is not None and (len(values) != s.depth or min(values) < 1):
                    bad(f"{p}.{name}", f"needs {s.depth} positive widths (one per block)", values)
        if self.head.pool not in POOLS:
            bad("head.pool", f"must be one of {POOLS}", self.head.pool)
        if not 1 <= self.head.fuse <= len(self.stages):
            bad("head.fuse", f"must be in 1..{len(self.stages)}", self.head.fuse)
        if self.head.patch_pool not in PATCH_POOLS:
            bad("head.patch_pool", f"must be one of {PATCH_POOLS}", self.head.patch_pool)
        if self.head.patch_pool != "mean" and (not inp.patch or inp.train_patches < 2 or inp.test_patches < 2):
            bad("head.patch_pool", "needs patches, at least 2 per training step and 2 at test (it pools over them)",
                self.head.patch_pool)
        if self.head.hidden < 0 or not 0 <= self.head.dropout < 1:
            bad("head", "need hidden >= 0 and 0 <= dropout < 1", (self.head.hidden, self.head.dropout))
        if self.num_outputs < 1:
            bad("num_outputs", "must be >= 1", self.num_outputs)
        return self


def family(stage: StageSpec) -> BlockFamily:
    """The block family of `stage` (`space.layers.BLOCK_FAMILIES`), which says what its fields mean for it."""
    return BLOCK_FAMILIES[stage.block]


def default_hidden(stage: StageSpec) -> int:
    """The stage width times its expansion, or the width itself for a family without an expansion."""
    return make_divisible(stage.width * stage.expansion) if family(stage).expansion else stage.width


def has_se(stage: StageSpec) -> bool:
    """Whether the stage's blocks have a squeeze-excitation: asked for (`se`) and offered by the family."""
    return stage.se and family(stage).has_se


def default_se_hidden(stage: StageSpec, hidden: int) -> int:
    """A quarter of the channels the family's squeeze-excitation acts on."""
    return make_divisible(family(stage).se_channels(stage.width, hidden) / 4)


def block_plan(spec: ArchSpec) -> list[list[BlockPlan]]:
    """Per stage, the resolved blocks (defaults from the stage, overridden by per-block lists)."""
    plans, cin = [], spec.stem.width
    for s in spec.stages:
        blocks = []
        for i in range(s.depth):
            hidden = s.hidden[i] if s.hidden else default_hidden(s)
            se_hidden = (s.se_hidden[i] if s.se_hidden else default_se_hidden(s, hidden)) if has_se(s) else 0
            blocks.append(BlockPlan(s.block, cin, s.width, s.stride if i == 0 else 1, s.kernel, hidden, se_hidden))
            cin = s.width
        plans.append(blocks)
    return plans

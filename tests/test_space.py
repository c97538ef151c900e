"""The search space: exact counts before building, caps, specs, and every block and pool working."""
from __future__ import annotations

import json

import optuna
import pytest
import torch
from torch import nn

from space import (
    ArchSpec, CapError, Caps, HeadSpec, InputSpec, SpaceConfig, StageSpec, StemSpec, build_model, count_flops, count_params,
    fit_to_caps, sample_spec, spec_summary,
)
from space.layers.attention import TokenAttention
from space.layers.conv import MSCN


def _random_specs(n: int, space: SpaceConfig, caps: Caps, seed: int) -> list[ArchSpec]:
    """`n` sampled specs; draws that cannot fit the caps fail, as in the study, at most one in four."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed))
    specs, refused = [], 0
    while len(specs) < n:
        trial = study.ask()
        try:
            specs.append(sample_spec(trial, space, caps))
            study.tell(trial, 0.0)
        except CapError:
            refused += 1
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
    assert refused <= n / 4, f"{refused} of {n + refused} draws could not fit {caps}"
    return specs


def _built_params(spec: ArchSpec) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in build_model(spec).parameters())


@pytest.mark.parametrize("space, caps, n, seed", [
    (SpaceConfig(), Caps(), 120, 0),
    (SpaceConfig(), Caps(params=500_000), 40, 1),  # forces shrinking
    (SpaceConfig.tiny(), Caps(), 60, 2),
])
def test_counted_params_equal_built_params_exactly(space, caps, n, seed):
    for spec in _random_specs(n, space, caps, seed):
        assert count_params(spec) == _built_params(spec), spec_summary(spec)
        assert count_params(spec) <= caps.params


def test_flops_cap_is_never_exceeded():
    caps = Caps(params=2_000_000, flops=150_000_000)
    for spec in _random_specs(40, SpaceConfig(), caps, 3):
        assert count_params(spec) <= caps.params and count_flops(spec) <= caps.flops


def _measured_flops(model: nn.Module, size: int) -> int:
    total = 0

    def conv(m, inp, out):
        nonlocal total
        total += out.numel() // out.shape[0] * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear(m, inp, out):
        nonlocal total
        total += m.in_features * m.out_features

    def attention(m, inp, out):
        nonlocal total
        _, c3, h, w = inp[0].shape
        total += 2 * (h * w) ** 2 * (c3 // 3)

    def mscn(m, inp, out):  # separable blurs of Y and Y^2: two passes of the window's taps per pixel each
        nonlocal total
        total += 2 * 2 * m.window.numel() * inp[0].shape[-2] * inp[0].shape[-1]

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(conv)
        elif isinstance(m, nn.Linear):
            m.register_forward_hook(linear)
        elif isinstance(m, TokenAttention):
            m.register_forward_hook(attention)
        elif isinstance(m, MSCN):
            m.register_forward_hook(mscn)
    with torch.no_grad():
        model.eval()(torch.rand(1, 3, size, size))
    return total


def test_counted_flops_equal_hook_measurement():
    for spec in _random_specs(25, SpaceConfig.tiny(), Caps(), 4) + _random_specs(4, SpaceConfig(), Caps(params=300_000), 5):
        assert count_flops(spec) == _measured_flops(build_model(spec), spec.input.crop), spec_summary(spec)


def _spec(block: str, pool: str = "avgstd", fuse: int = 2, stem: str = "conv", se: bool = True) -> ArchSpec:
    return ArchSpec(InputSpec(32, 32), StemSpec(stem, 8, 3 if stem == "conv" else 2),
                    [StageSpec("mbconv", 16, 1, 2, 3, 2.0, se), StageSpec(block, 24, 2, 2, 3, 2.0, se)],
                    HeadSpec(pool, fuse, 16, 0.1), num_outputs=2, act="gelu")


@pytest.mark.parametrize("block", ["residual", "mbconv", "convnext", "attention"])
@pytest.mark.parametrize("pool", ["avg", "avgstd", "attn"])
def test_every_block_and_pool_trains_a_step(block, pool):
    spec = _spec(block, pool, stem="patchify" if pool == "attn" else "conv")
    model = build_model(spec)
    out = model(torch.rand(4, 3, 32, 32))
    assert out.shape == (4, 2)
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_target_buffers_map_to_mos_and_channels_last_autocast():
    model = build_model(_spec("convnext")).eval()
    x = torch.rand(3, 3, 32, 32)
    raw = model(x)
    model.target_mean.fill_(3.0)
    model.target_std.fill_(2.0)
    assert torch.allclose(model(x), raw * 2 + 3, atol=1e-5)
    model = model.to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(x.contiguous(memory_format=torch.channels_last)).shape == (3, 2)


def test_per_block_width_overrides_are_counted_and_built():
    spec = _spec("mbconv")
    spec.stages[1].hidden = [40, 24]
    spec.stages[1].se_hidden = [8, 16]
    model = build_model(spec)
    assert model.stages[1][0].dw[0].out_channels == 40 and model.stages[1][1].se.fc1.out_channels == 16
    assert count_params(spec) == sum(p.numel() for p in model.parameters())


def test_json_round_trip_and_validation_names_the_field():
    spec = _random_specs(1, SpaceConfig(), Caps(), 6)[0]
    again = ArchSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and count_params(again) == count_params(spec)
    bad = spec.to_dict()
    bad["stages"][0]["kernel"] = 4
    with pytest.raises(ValueError, match=r"stages\[0\]\.kernel: must be odd, got 4"):
        ArchSpec.from_dict(bad)
    bad = spec.to_dict()
    bad["head"]["fuse"] = 9
    with pytest.raises(ValueError, match=r"head\.fuse"):
        ArchSpec.from_dict(bad)


def test_fit_to_caps_shrinks_or_refuses():
    spec = _spec("residual")
    big = count_params(spec)
    small = fit_to_caps(spec, Caps(params=big // 2))
    assert count_params(small) <= big // 2 and small.stages[-1].width < spec.stages[-1].width
    assert fit_to_caps(spec, Caps(params=big)) is spec
    with pytest.raises(ValueError, match="cannot fit the caps"):
        fit_to_caps(spec, Caps(params=100))


def test_mscn_channel_normalises_local_contrast():
    mscn = MSCN()
    flat = mscn(torch.full((1, 3, 32, 32), 0.5))
    assert flat.shape == (1, 4, 32, 32) and flat[:, 3].abs().max() < 1e-3
    torch.manual_seed(0)
    noisy = mscn(torch.rand(2, 3, 48, 48))[:, 3]
    assert abs(noisy.mean().item()) < 0.1 and 0.5 < noisy.std().item() < 3  # about zero mean, unit scale
    spec = _spec("residual")
    spec.input.mscn = True
    model = build_model(spec)
    assert count_params(spec) == sum(p.numel() for p in model.parameters())
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 2)

"""The search space: exact counts before building, caps, specs, and every block and pool working."""
from __future__ import annotations

import dataclasses
import json

import optuna
import pytest
import torch
from torch import nn

from space import (
    ArchSpec, CapError, Caps, HeadSpec, InputSpec, SpaceConfig, StageSpec, StemSpec, build_model, count_flops, count_params,
    fit_to_caps, sample_spec, spec_summary, train_flops,
)
from space.layers.patches import Patches, grid_offsets
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
    whole_images = dataclasses.replace(SpaceConfig(), patches=(0,))  # a 3x3 grid of 256 px patches cannot fit 150M
    for spec in _random_specs(40, whole_images, caps, 3):
        assert count_params(spec) <= caps.params and count_flops(spec) <= caps.flops


def _measured_flops(model: nn.Module, size: int, train: bool = False) -> int:
    """Multiply-adds of one forward pass on one image, counted by hooks (in training mode: a patch
    model's training patches; BatchNorm kept in eval mode, which costs the same)."""
    total = 0

    def conv(m, inp, out):
        nonlocal total
        total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear(m, inp, out):
        nonlocal total
        total += inp[0].numel() // m.in_features * m.in_features * m.out_features

    def attention(m, inp, out):
        nonlocal total
        n, c3, h, w = inp[0].shape
        total += n * 2 * (h * w) ** 2 * (c3 // 3)

    def mscn(m, inp, out):  # separable blurs of Y and Y^2: two passes of the window's taps per pixel each
        nonlocal total
        total += inp[0].shape[0] * 2 * 2 * m.window.numel() * inp[0].shape[-2] * inp[0].shape[-1]

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(conv)
        elif isinstance(m, nn.Linear):
            m.register_forward_hook(linear)
        elif isinstance(m, TokenAttention):
            m.register_forward_hook(attention)
        elif isinstance(m, MSCN):
            m.register_forward_hook(mscn)
    model.train(train)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    with torch.no_grad():
        model(torch.rand(1, 3, size, size))
    return total


def test_counted_flops_equal_hook_measurement():
    for spec in _random_specs(25, SpaceConfig.tiny(), Caps(), 4) + _random_specs(4, SpaceConfig(), Caps(params=300_000), 5):
        assert count_flops(spec) == _measured_flops(build_model(spec), spec.input.crop), spec_summary(spec)


PATCH_SPACE = dataclasses.replace(SpaceConfig.tiny(), patches=(0, 16, 24), native=48, train_patches=(1, 3),
                                  global_sizes=(0, 32))


def test_patch_models_count_exactly_and_sample_both_inputs():
    specs = _random_specs(30, PATCH_SPACE, Caps(), 6)
    assert {s.input.patch for s in specs} == {0, 16, 24} and {s.input.global_size for s in specs} == {0, 32}
    for spec in specs:
        model = build_model(spec)
        assert count_params(spec) == sum(p.numel() for p in model.parameters()), spec_summary(spec)
        assert count_flops(spec) == _measured_flops(model, spec.input.crop), spec_summary(spec)
        assert train_flops(spec) == _measured_flops(model, spec.input.crop, train=True), spec_summary(spec)
        if spec.input.patch:
            assert spec.input.resize == spec.input.crop == 48 and f"p{spec.input.patch}x" in spec_summary(spec)


def test_patches_are_windows_of_the_image_random_in_training_and_a_grid_at_test():
    x = torch.arange(2 * 3 * 40 * 40, dtype=torch.float32).reshape(2, 3, 40, 40)
    cut = Patches(16, 5, 3)
    assert grid_offsets(40, 16, 3) == [0, 12, 24] and grid_offsets(40, 16, 1) == [12]
    test = cut.eval()(x)
    assert test.shape == (18, 3, 16, 16)
    assert torch.equal(test[8], x[0, :, 24:40, 24:40]) and torch.equal(test[9], x[1, :, 0:16, 0:16])
    torch.manual_seed(0)
    train = cut.train()(x)
    assert train.shape == (10, 3, 16, 16)
    for i, patch in enumerate(train):  # every training patch is a window of its own image
        top, left = divmod(int(patch[0, 0, 0]) - (i // 5) * 3 * 1600, 40)
        assert torch.equal(patch, x[i // 5, :, top:top + 16, left:left + 16])
    torch.manual_seed(0)
    assert torch.equal(cut(x), train)  # the global generator decides: a seeded run repeats


def test_a_single_choice_records_no_parameter_so_whole_image_trials_sample_as_before():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(0))
    trial = study.ask()
    sample_spec(trial, SpaceConfig.tiny(), Caps())
    assert "patch" not in trial.params and "resize" in trial.params


@pytest.mark.parametrize("change, field", [
    (dict(patch=16, crop=32), "input.patch"), (dict(patch=80), "input.patch"), (dict(global_size=16), "input.global_size"),
    (dict(patch=16, train_patches=0), "input"),
])
def test_bad_patch_inputs_name_the_field(change, field):
    spec = ArchSpec(InputSpec(64, 64), StemSpec(), [StageSpec("residual", 16)])
    spec.input = dataclasses.replace(spec.input, **change)
    with pytest.raises(ValueError, match=f"^{field}:"):
        spec.validate()


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

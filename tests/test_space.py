"""The search space: exact counts before building (per part, against the built model), caps checked on
built models, specs, block families, and every block and pool working."""
from __future__ import annotations

import dataclasses
import json

import optuna
import pytest
import torch

from space import (
    ArchSpec, CapError, Caps, HeadSpec, InputSpec, SpaceConfig, StageSpec, StemSpec, block_plan, build_model,
    count_flops, count_params, fit_to_caps, part_costs, sample_spec, spec_summary, train_flops,
)
from space.layers import BLOCK_FAMILIES
from space.count import backbone_views
from space.layers.fragments import Fragments, cell_edges
from space.layers.heads import PatchPool
from space.layers.patches import Patches, grid_offsets, reduce_image
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


@pytest.mark.parametrize("space, caps, n, seed", [
    (SpaceConfig(), Caps(), 120, 0),
    (SpaceConfig(), Caps(params=500_000), 40, 1),  # forces shrinking
    (SpaceConfig.tiny(), Caps(), 60, 2),
])
def test_built_models_have_the_counted_params_and_stay_under_the_cap(built_params, space, caps, n, seed):
    for spec in _random_specs(n, space, caps, seed):
        built = built_params(spec)
        assert built == count_params(spec) and built <= caps.params, spec_summary(spec)


def test_built_models_stay_under_the_flops_cap(built_params, measured_flops):
    caps = Caps(params=2_000_000, flops=150_000_000)
    # a 3x3 grid of 256 px patches cannot fit 150M; no MSCN, so that the model runs on the meta device
    whole_images = dataclasses.replace(SpaceConfig(), patches=(0,), mscn=(False,))
    for spec in _random_specs(40, whole_images, caps, 3):
        assert built_params(spec) <= caps.params, spec_summary(spec)
        with torch.device("meta"):  # shapes are all the hooks read
            measured = sum(measured_flops(build_model(spec), spec.input.crop).values())
        assert measured == count_flops(spec) and measured <= caps.flops, spec_summary(spec)


def _assert_parts_measured(spec: ArchSpec, measured_flops, training: bool = False) -> None:
    """Every part's counted parameters and FLOPs are those of the built model's own layers."""
    model = build_model(spec)
    numel = lambda *mods: sum(p.numel() for m in mods for p in m.parameters())  # noqa: E731
    built = [numel(model.stem)] + [numel(s) for s in model.stages] + [numel(model.pools, model.view, model.head)]
    parts = part_costs(spec, training)
    assert [p.params for p in parts] == built, spec_summary(spec)
    measured = measured_flops(model, spec.input.crop, training)
    assert {p.name: p.flops for p in parts if p.flops} == measured, spec_summary(spec)
    assert count_params(spec) == sum(built), spec_summary(spec)
    assert (train_flops if training else count_flops)(spec) == sum(measured.values()), spec_summary(spec)


def test_counted_params_and_flops_per_part_equal_the_built_model(measured_flops):
    for spec in (_random_specs(25, SpaceConfig.tiny(), Caps(), 4)
                 + _random_specs(4, SpaceConfig(), Caps(params=300_000), 5)):
        _assert_parts_measured(spec, measured_flops)


PATCH_SPACE = dataclasses.replace(SpaceConfig.tiny(), patches=(0, 16, 24), native=48, train_patches=(1, 3),
                                  global_sizes=(0, 32), patch_grids=(3, 4), test_scales=(1.0, 0.75),
                                  test_flips=(False, True),
                                  patch_pools=("mean", "attn", "meanstd"))


def test_patch_models_count_exactly_and_sample_both_inputs(measured_flops):
    specs = _random_specs(40, PATCH_SPACE, Caps(), 6)
    assert {s.input.patch for s in specs} == {0, 16, 24} and {s.input.global_size for s in specs} == {0, 32}
    patched = [s for s in specs if s.input.patch]
    assert {s.input.grid for s in patched} == {3, 4} and {tuple(s.input.test_scales) for s in patched} == {(), (36,)}
    assert {s.input.test_flip for s in patched} == {False, True}
    assert {s.head.patch_pool for s in patched} == {"mean", "attn", "meanstd"}
    assert all(s.head.patch_pool == "mean" for s in specs if s.input.train_patches == 1)
    for spec in specs:
        _assert_parts_measured(spec, measured_flops)
        _assert_parts_measured(spec, measured_flops, training=True)
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


FRAGMENT_SPACE = dataclasses.replace(SpaceConfig.tiny(), patches=(0, 16), fragments=(0, 2, 3), fragment_sizes=(8, 16),
                                     native=48)


def test_fragment_models_count_exactly_and_sample_every_input(measured_flops):
    specs = _random_specs(30, FRAGMENT_SPACE, Caps(), 7)
    assert ({(s.input.fragments, s.input.fragment) for s in specs if s.input.fragments}
            == {(2, 8), (2, 16), (3, 8), (3, 16)})
    assert any(s.input.patch for s in specs) and any(not s.input.patch and not s.input.fragments for s in specs)
    for spec in specs:
        _assert_parts_measured(spec, measured_flops)
        _assert_parts_measured(spec, measured_flops, training=True)
        if spec.input.fragments:
            inp = spec.input
            assert inp.resize == inp.crop == 48 and not inp.patch and inp.view == inp.fragments * inp.fragment
            assert (count_flops(spec) == train_flops(spec)
                    and f"fr{inp.fragments}x{inp.fragment}/48" in spec_summary(spec))


def _fragment_origins(view: torch.Tensor, grid: int, size: int, width: int) -> list[list[list[tuple[int, int]]]]:
    """Per image and cell of a spliced view of `Fragments` cut from `_coded` images: (top, left) of the
    window each fragment came from (its first pixel codes its place)."""
    return [[[divmod(int(view[n, 0, i * size, j * size]) % (1 << 12), width) for j in range(grid)] for i in range(grid)]
            for n in range(len(view))]


def _coded(n: int, h: int, w: int) -> torch.Tensor:
    """[n,3,h,w] images whose pixel values code their place: value = (image*3 + channel) << 12 | y*w + x."""
    return (torch.arange(n * 3)[:, None] * (1 << 12) + torch.arange(h * w)).reshape(n, 3, h, w).float()


def test_fragments_come_from_inside_each_cell_random_in_training_and_centred_at_test():
    x = _coded(2, 50, 44)  # cells of 16/17/17 rows and 14/15/15 columns
    rows, cols = cell_edges(50, 3), cell_edges(44, 3)
    assert rows == [0, 16, 33, 50] and cols == [0, 14, 29, 44]
    cut = Fragments(3, 10)
    test = cut.eval()(x)
    assert test.shape == (2, 3, 30, 30) and torch.equal(test, cut(x))  # deterministic
    for n, image in enumerate(_fragment_origins(test, 3, 10, 44)):
        for i, row in enumerate(image):
            for j, (top, left) in enumerate(row):  # the cell's centre
                assert (top, left) == (rows[i] + (rows[i + 1] - rows[i] - 10) // 2,
                                       cols[j] + (cols[j + 1] - cols[j] - 10) // 2)
                assert torch.equal(test[n, :, i * 10:(i + 1) * 10, j * 10:(j + 1) * 10],
                                   x[n, :, top:top + 10, left:left + 10])
    torch.manual_seed(0)
    cut.train()
    seen: set[tuple[int, int, int, int]] = set()
    for _ in range(60):
        train = cut(x)
        assert train.shape == (2, 3, 30, 30)
        for n, image in enumerate(_fragment_origins(train, 3, 10, 44)):
            for i, row in enumerate(image):
                for j, (top, left) in enumerate(row):  # a window of its own image, inside its own cell
                    assert rows[i] <= top <= rows[i + 1] - 10 and cols[j] <= left <= cols[j + 1] - 10
                    assert torch.equal(train[n, :, i * 10:(i + 1) * 10, j * 10:(j + 1) * 10],
                                       x[n, :, top:top + 10, left:left + 10])
                    seen.add((i, j, top - rows[i], left - cols[j]))
    assert {(top, left) for i, j, top, left in seen if (i, j) == (0, 0)} == {(a, b) for a in range(7) for b in range(5)}
    torch.manual_seed(1)
    first = cut(x)
    torch.manual_seed(1)
    assert torch.equal(cut(x), first) and not torch.equal(cut(x), first)  # the global generator decides


def test_specs_stored_before_fragments_load_unchanged():
    spec = ArchSpec(InputSpec(64, 48), StemSpec(), [StageSpec("residual", 16)])
    old = spec.to_dict()
    for key in ("fragments", "fragment"):
        old["input"].pop(key)
    assert ArchSpec.from_dict(old) == spec and spec.input.view == 48 and spec_summary(spec).endswith("| 48/64")
    assert build_model(ArchSpec.from_dict(old)).view.__class__.__name__ == "CropView"
    fragments = ArchSpec(InputSpec(64, 64, fragments=4, fragment=16), StemSpec(), [StageSpec("residual", 16)])
    assert ArchSpec.from_dict(json.loads(json.dumps(fragments.to_dict()))) == fragments
    assert fragments.to_dict()["input"] == {**old["input"], "resize": 64, "crop": 64, "fragments": 4, "fragment": 16}


def test_the_default_and_small_spaces_offer_fragments_of_the_native_image():
    assert ((SpaceConfig().fragments, SpaceConfig.small().fragments, SpaceConfig.tiny().fragments)
            == ((0, 7), (0, 5), (0,)))
    for space, view in ((SpaceConfig(), 224), (SpaceConfig.small(), 160)):
        specs = _random_specs(12, dataclasses.replace(space, patches=(0,), mscn=(False,)), Caps(), 8)
        fragments = [s for s in specs if s.input.fragments]
        assert fragments and len(fragments) < len(specs) and space.largest_input == 512
        assert {(s.input.resize, s.input.crop, s.input.view) for s in fragments} == {(512, 512, view)}


def test_a_single_choice_records_no_parameter_so_whole_image_trials_sample_as_before():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(0))
    trial = study.ask()
    sample_spec(trial, SpaceConfig.tiny(), Caps())
    assert not {"patch", "fragments", "fragment"} & set(trial.params) and "resize" in trial.params
    trial = study.ask()  # the tiny space offers one test view and the mean over patches: nothing is asked
    spec = sample_spec(trial, dataclasses.replace(SpaceConfig.tiny(), patches=(32,), train_patches=(2,)), Caps())
    assert not {"patch_grid", "test_scale", "test_flip", "patch_pool"} & set(trial.params)
    assert ((spec.input.grid, spec.input.test_scales, spec.input.test_flip, spec.head.patch_pool)
            == (3, [], False, "mean"))


def test_the_default_and_small_spaces_offer_the_test_views_and_patch_pools():
    for space in (SpaceConfig(), SpaceConfig.small()):
        assert (space.patch_grids, space.test_scales, space.test_flips) == ((3, 4), (1.0, 0.75), (False, True))
        assert space.patch_pools == ("mean", "attn", "meanstd")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(0))
    study.enqueue_trial({"patch": 128, "train_patches": 2})
    trial = study.ask()
    spec = sample_spec(trial, SpaceConfig.small(), Caps())
    assert {"patch_grid", "test_scale", "test_flip", "patch_pool"} <= set(trial.params)
    assert spec.input.test_scales in ([], [384])


def _views_spec(grid: int = 3, scales: tuple[int, ...] = (), flip: bool = False, pool: str = "mean",
                global_size: int = 0, head_pool: str = "avgstd") -> ArchSpec:
    return ArchSpec(InputSpec(48, 48, False, 16, 2, grid, global_size, test_scales=list(scales), test_flip=flip),
                    StemSpec("conv", 8),
                    [StageSpec("mbconv", 16, 1, 2, 3, 2.0, True), StageSpec("residual", 24, 1, 2, 3)],
                    HeadSpec(head_pool, 2, 16, patch_pool=pool))


@pytest.mark.parametrize("grid, scales, flip, pool, global_size", [
    (4, (), False, "mean", 0), (3, (32,), False, "mean", 32), (3, (), True, "mean", 0),
    (4, (24, 32), True, "mean", 32), (3, (), False, "attn", 0), (4, (32,), True, "attn", 32),
    (3, (), False, "meanstd", 0), (3, (32,), True, "meanstd", 32),
])
def test_test_views_and_patch_pools_count_exactly(measured_flops, grid, scales, flip, pool, global_size):
    spec = _views_spec(grid, scales, flip, pool, global_size)
    _assert_parts_measured(spec, measured_flops)
    _assert_parts_measured(spec, measured_flops, training=True)
    n = grid ** 2 * (1 + len(scales)) * (2 if flip else 1)
    assert spec.input.test_patches == n and dict(backbone_views(spec)) == {16: n} | ({32: 1} if global_size else {})
    assert dict(backbone_views(spec, training=True))[16] == 2
    plain, features = _views_spec(global_size=global_size), 2 * (16 + 24)  # avgstd of the two fused stages
    pooling = {"mean": 0, "attn": 2 * features, "meanstd": features * 16}[pool]  # scores of 2 patches; a wider Linear
    assert train_flops(spec) == train_flops(plain) + pooling  # test views cost nothing in training
    assert (build_model(spec).head.mlp[0].in_features
            == (2 if pool == "meanstd" else 1) * features + (features if global_size else 0))
    extra = count_params(spec) - count_params(plain)
    assert extra == {"mean": 0, "attn": features + 1, "meanstd": features * 16}[pool]  # meanstd: a wider head Linear


def test_test_patches_are_the_grid_at_each_scale_then_mirrored():
    x = torch.rand(2, 3, 40, 40)
    cut = Patches(16, 5, 3, [32], flip=True).eval()
    test = cut(x)
    assert cut.count() == 36 and test.shape == (72, 3, 16, 16)
    reduced = reduce_image(x, 32)
    assert torch.equal(test[0], x[0, :, 0:16, 0:16]) and torch.equal(test[8], x[0, :, 24:40, 24:40])
    assert torch.equal(test[9], reduced[0, :, 0:16, 0:16]) and torch.equal(test[17], reduced[0, :, 16:32, 16:32])
    assert torch.equal(test[18], test[0].flip(-1)) and torch.equal(test[35], test[17].flip(-1))
    assert torch.equal(test[36], x[1, :, 0:16, 0:16])
    assert cut.train()(x).shape == (10, 3, 16, 16)  # training: the random windows only


def test_patch_pools_weigh_the_patches_of_each_image():
    torch.manual_seed(0)
    feats = torch.randn(3, 7, 10)
    attn = PatchPool("attn", 10)
    assert torch.allclose(attn(feats), feats.mean(1))  # zero-initialised: starts as the mean
    torch.nn.init.normal_(attn.score.weight)
    w = attn.weights(feats)
    assert w.shape == (3, 7, 1) and torch.allclose(w.sum(1), torch.ones(3, 1)) and w.std() > 0.01
    assert torch.allclose(attn(feats), (feats * w).sum(1))
    meanstd = PatchPool("meanstd", 10)(feats)
    assert meanstd.shape == (3, 20) and torch.allclose(meanstd[:, 10:], feats.std(1), atol=1e-4)
    assert PatchPool("mean", 10)(feats).shape == (3, 10) and PatchPool("mean", 10).score is None


def test_spec_dicts_without_the_test_view_fields_load_unchanged():
    spec = _views_spec(4, (32,), True, "attn", 32)
    assert ArchSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    old = _views_spec(global_size=32).to_dict()
    for key in ("test_scales", "test_flip"):
        del old["input"][key]
    del old["head"]["patch_pool"]
    again = ArchSpec.from_dict(old)
    assert again == _views_spec(global_size=32) and again.to_dict() == _views_spec(global_size=32).to_dict()
    assert spec_summary(again).endswith("avgstd·f2·h16 | p16x2g3+32/48")
    assert spec_summary(spec).endswith("avgstd·f2·h16·pattn | p16x2g4s32f+32/48")


@pytest.mark.parametrize("change, field", [
    (dict(patch=16, crop=32), "input.patch"), (dict(patch=80), "input.patch"),
    (dict(global_size=16), "input.global_size"),
    (dict(patch=16, train_patches=0), "input"), (dict(patch=16, test_scales=[64]), "input.test_scales"),
    (dict(patch=16, test_scales=[8]), "input.test_scales"), (dict(test_flip=True), "input"),
    (dict(test_scales=[32]), "input"),
    (dict(patch_pool="max"), "head.patch_pool"), (dict(patch_pool="attn"), "head.patch_pool"),
    (dict(patch=16, patch_pool="meanstd"), "head.patch_pool"),  # one training patch: nothing to pool over
    (dict(patch=16, train_patches=2, grid=1, patch_pool="attn"), "head.patch_pool"),  # one test patch
    (dict(fragments=2, patch=16), "input.fragments"), (dict(fragments=2, fragment=8, crop=32), "input.fragments"),
    (dict(fragments=3, fragment=22), "input.fragments"), (dict(fragments=2, fragment=3), "input.fragments"),
    (dict(fragments=-2), "input.fragments"), (dict(fragments=2, global_size=16), "input.global_size"),
    (dict(fragments=2, fragment=8, test_flip=True), "input"),
    (dict(fragments=2, fragment=8, test_scales=[32]), "input"),
    (dict(fragments=2, fragment=8, patch_pool="attn"), "head.patch_pool"),
])
def test_bad_patch_inputs_name_the_field(change, field):
    spec = ArchSpec(InputSpec(64, 64), StemSpec(), [StageSpec("residual", 16)])
    pool = change.pop("patch_pool", "mean")
    spec.input, spec.head.patch_pool = dataclasses.replace(spec.input, **change), pool
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


def test_every_block_family_is_registered_and_reads_its_widths_off_a_built_block():
    assert list(BLOCK_FAMILIES) == list(SpaceConfig().blocks)  # the default space offers every family
    assert all(f.name == name for name, f in BLOCK_FAMILIES.items())
    for block in BLOCK_FAMILIES:
        spec = _spec(block)
        spec.stages[1].hidden = [40, 24]
        model = build_model(spec)
        for plans, stage in zip(block_plan(spec), model.blocks()):
            for plan, built in zip(plans, stage):
                assert built.family is BLOCK_FAMILIES[plan.block] and isinstance(built.module, built.family.module)
                assert built.family.widths(built.module) == (plan.cout, plan.hidden, plan.se_hidden), \
                    (block, built.name)
                assert built.stride == plan.stride


def test_the_model_names_its_stem_conv_output_linear_and_what_stays_whole():
    model = build_model(_spec("attention", pool="attn"))
    assert model.stem_conv().out_channels == 8 and model.output_linear().out_features == 2
    assert model.head_hidden_linear().out_features == 16
    kept = dict((why.split(" ")[0], layers) for layers, why in model.kept_whole())
    assert kept["head"] == [model.output_linear()] and kept["pools[1].score"] == [model.pools[1].score]
    assert kept["stages[1][0]"] == [model.stages[1][0].qkv, model.stages[1][0].proj] and "stages[0][0]" not in kept


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

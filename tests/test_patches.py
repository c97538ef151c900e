"""Native-resolution patch recipes end to end: a study whose trials cut patches plans them by their
training FLOPs, a patch model trains, prunes and rebuilds, and the exported notebook trains and
predicts the patch recipe. (Whether patches pay is measured by `bench/ladder.py`, not here.)"""
from __future__ import annotations

import nbformat
import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState

from compress import prune_model
from notebook_run import run_smoke, write_labelled_pngs
from results.export import ExportOptions, export_submission
from search.checkpoint import load_checkpoint
from search.data import decode_images, load_folder, make_synthetic
from search.study import StudyConfig, TrialRecord, run_search
from search.train.loop import predict, train_model
from search.train.recipe import TrainConfig
from space import (
    ArchSpec, Caps, HeadSpec, InputSpec, StageSpec, StemSpec, build_model, count_flops, count_params, sample_spec,
    train_flops,
)


@pytest.fixture(scope="module")
def patch_study(tmp_path_factory):
    """A 2-trial study of tiny models that may only cut 32 px patches of the 64 px synthetic images."""
    root = tmp_path_factory.mktemp("patch-study")
    cfg = StudyConfig(space="tiny", patches=[32], n_synthetic=160, max_epochs=2, trial_budget_s=1000.0,
                      early_stop=False, device="cpu", cache_dir=str(root / "cache"))
    run_dir = root / "runs" / "patches"
    return run_search(cfg, "patches", 2, run_dir, progress=False), cfg, run_dir


def test_patch_trials_are_planned_by_their_training_flops(patch_study):
    study, _, _ = patch_study
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 2
    for t in trials:
        spec = ArchSpec.from_dict(TrialRecord.from_trial(t).spec)
        assert spec.input.patch == 32 and spec.input.resize == spec.input.crop == 64
        assert t.user_attrs["flops"] == count_flops(spec) > train_flops(spec)  # a 3x3 test grid, 1-2 patches a step
        assert t.user_attrs["epochs_run"] == t.user_attrs["epochs_planned"] == 2 and np.isfinite(t.values).all()


def test_the_exported_notebook_trains_and_predicts_the_patch_recipe(patch_study, tmp_path):
    study, cfg, run_dir = patch_study
    exported = export_submission(study, cfg, run_dir, ExportOptions("Team_P", date="20261123", smoke=True))
    assert exported.model.spec.input.patch == 32
    labels = write_labelled_pngs(tmp_path, 20, 64, seed=5)
    out = run_smoke(nbformat.read(exported.notebook, as_version=4), tmp_path,
                    f"TRAIN_IMAGES = TEST_IMAGES = {str(tmp_path / 'imgs')!r}\n"
                    f"TRAIN_LABELS = TEST_LABELS = {str(labels)!r}")
    assert len(out) == 20 and out["score"].notna().all()
    model, _ = load_checkpoint(tmp_path / "Team_P_20261123_model.pth")
    assert (model.spec.input.resize, model.spec.input.patch) == (32, 16)  # the smoke size: 16 px patches of 32 px
    images = decode_images(load_folder(tmp_path / "imgs"), 32, tmp_path / "cache", progress=False)
    ours = predict(model, images.images, crop=model.spec.input.crop)[:, 0]
    assert np.abs(out.sort_values("image")["score"].to_numpy() - ours).max() < 1e-4


def _patch_spec(global_size: int, patch_pool: str = "mean", scales: tuple[int, ...] = (),
                flip: bool = False) -> ArchSpec:
    return ArchSpec(InputSpec(64, 64, False, 24, 2, 3, global_size, test_scales=list(scales), test_flip=flip),
                    StemSpec("conv", 16),
                    [StageSpec("mbconv", 24, 1, 2, 3, 2.0, True), StageSpec("residual", 32, 2, 2, 3, 2.0, True)],
                    HeadSpec("avgstd", 2, 32, patch_pool=patch_pool), act="silu")


@pytest.mark.parametrize("global_size, patch_pool, scales, flip", [
    (0, "mean", (), False), (32, "mean", (), False), (0, "attn", (48,), True), (32, "meanstd", (48,), True),
])
def test_a_patch_model_trains_prunes_and_rebuilds(global_size, patch_pool, scales, flip):
    data = make_synthetic(n_images=64, size=64, seed=1)
    train, val = data.subset(np.arange(48)), data.subset(np.arange(48, 64))
    model = build_model(_patch_spec(global_size, patch_pool, scales, flip))
    result = train_model(model, train, val, TrainConfig(epochs=2, batch_size=16, crop=64), device="cpu")
    assert result.epochs_run == 2 and np.isfinite(result.metrics["srcc"])
    pruned = prune_model(model, count_params(model.spec) // 2, data=train)
    assert pruned.params_after == count_params(pruned.spec) < count_params(model.spec)
    assert pruned.spec.input == model.spec.input and pruned.spec.head.patch_pool == patch_pool
    assert ("view.pool.score (patch-attention score Linear)" in pruned.left_out) == (patch_pool == "attn")
    rebuilt = build_model(pruned.spec)
    rebuilt.load_state_dict(pruned.model.state_dict(), strict=True)
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(rebuilt.eval()(x), pruned.model.eval()(x), atol=1e-5)


def test_patch_choices_are_checked_before_a_study_exists():
    with pytest.raises(ValueError, match=r"patches must be 0 \(whole image\) or sizes in 8\.\.64 px"):
        StudyConfig(space="tiny", patches=[96])


def test_a_study_keeps_the_space_it_was_created_with():
    fresh = StudyConfig(space="small")
    assert fresh.patches == [0, 128, 256] and fresh.search_space().patches == (0, 128, 256)
    stored_before_patches = {k: v for k, v in fresh.to_dict().items() if k != "patches"}
    assert StudyConfig.from_dict(stored_before_patches).search_space().patches == (0,)  # whole images, as it ran


def test_a_study_keeps_the_test_views_it_was_created_with():
    fresh = StudyConfig(space="small")
    assert fresh.patch_views == {"patch_grids": [3, 4], "test_scales": [1.0, 0.75], "test_flips": [False, True],
                                 "patch_pools": ["mean", "attn", "meanstd"]}
    assert StudyConfig.from_dict(fresh.to_dict()).search_space() == fresh.search_space()
    stored_before_views = {k: v for k, v in fresh.to_dict().items() if k != "patch_views"}
    old = StudyConfig.from_dict(stored_before_views).search_space()
    assert (old.patch_grids, old.test_scales, old.test_flips, old.patch_pools) == ((3,), (1.0,), (False,), ("mean",))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):  # resumed, it samples as it ran: no view or pooling is asked, a 3 x 3 mean
        trial = study.ask()
        spec = sample_spec(trial, old, Caps())
        study.tell(trial, 0.0)
        assert not {"patch_grid", "test_scale", "test_flip", "patch_pool"} & set(trial.params)
        assert ((spec.input.grid, spec.input.test_scales, spec.input.test_flip, spec.head.patch_pool)
                == (3, [], False, "mean"))
    with pytest.raises(ValueError, match="patch_views must give a non-empty list for each of patch_grids"):
        StudyConfig(space="small", patch_views={"patch_grids": [3]})

"""Compression: every block type prunes by the requested ratio and rebuilds from its spec; int8/fp16
copies track their parent; the stage records variants in the study's database and resumes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from optuna.trial import TrialState

from compress.prune import prune_model
from compress.quantize import roundtrip
from compress.stage import compress_study
from compress.variants import list_variants, variants_url
from search.checkpoint import load_checkpoint, save_checkpoint
from search.data import make_synthetic
from search.study import StudyConfig, default_storage_url, run_search
from search.train import predict
from space import ArchSpec, HeadSpec, InputSpec, StageSpec, StemSpec, build_model, count_params


@pytest.fixture(scope="module")
def images():
    return make_synthetic(n_images=48, size=64, seed=0)


def _spec(block: str, pool: str, stem: str, first_stride: int = 2, mscn: bool = False) -> ArchSpec:
    """Two stages (an SE MBConv stage, then `block` x2) fused by the head; tiny widths as in SpaceConfig.tiny()."""
    return ArchSpec(InputSpec(64, 64, mscn), StemSpec(stem, 16, 3 if stem == "conv" else 2),
                    [StageSpec("mbconv", 24, 1, first_stride, 3, 2.0, True), StageSpec(block, 32, 2, 2, 3, 2.0, True)],
                    HeadSpec(pool, 2, 32, 0.1), act="gelu")


@pytest.mark.parametrize("block, pool, stem, first_stride, importance, global_pruning, mscn", [
    ("residual", "avgstd", "conv", 2, "magnitude", False, False),   # residual with SE
    ("convnext", "avgstd", "patchify", 2, "taylor", False, True),   # ConvNeXt (no SE), MSCN input channel
    ("mbconv", "attn", "patchify", 2, "taylor", True, False),       # MBConv with SE, attention pooling
    ("attention", "attn", "conv", 2, "magnitude", False, True),     # attention blocks: qkv/proj kept whole
    ("residual", "avg", "conv", 1, "magnitude", False, False),      # residual without SE, stride-1 first stage
])
def test_each_block_prunes_and_rebuilds_from_its_spec(images, block, pool, stem, first_stride, importance, global_pruning, mscn):
    torch.manual_seed(0)
    spec = _spec(block, pool, stem, first_stride, mscn)
    if first_stride == 1:  # no SE; the first stage keeps stride 1 but changes width, which must stay a change
        spec.stages[1].se = False
    model = build_model(spec).eval()
    result = prune_model(model, spec, images, 0.5, importance, global_pruning=global_pruning)
    assert result.params_after == count_params(result.spec) == sum(p.numel() for p in result.model.parameters())
    rebuilt = build_model(result.spec)
    rebuilt.load_state_dict(result.model.state_dict(), strict=True)
    x = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(rebuilt.eval()(x), result.model(x), atol=1e-5)
    assert abs(1 - result.params_after / result.params_before - 0.5) < 0.1
    assert "head output Linear" in result.left_out[0]
    if block == "attention":
        assert any("attention qkv/proj" in note for note in result.left_out)
        assert result.spec.stages[1].width == 32 and result.spec.stages[1].hidden != [64, 64]  # MLP still pruned
    if first_stride == 1:
        assert result.spec.stem.width != result.spec.stages[0].width


def test_iterative_pruning_with_finetuning(images):
    torch.manual_seed(0)
    model = build_model(_spec("mbconv", "avgstd", "conv")).eval()
    result = prune_model(model, model.spec, images, 0.3, iterative_steps=2, finetune_epochs=2)
    assert abs(1 - result.params_after / result.params_before - 0.3) < 0.1
    assert np.isfinite(predict(result.model, images.images[:8])).all()


def test_int8_and_fp16_copies_track_their_parent(images, tmp_path):
    torch.manual_seed(0)
    model = build_model(_spec("convnext", "avgstd", "conv")).eval()
    base = predict(model, images.images)[:, 0]
    sizes = {}
    for weights in ("fp32", "fp16", "int8"):
        path = save_checkpoint(tmp_path / f"{weights}.pt", model, model.spec, weights=weights)
        sizes[weights] = path.stat().st_size
        reloaded, payload = load_checkpoint(path)
        assert payload["weights"] == weights
        pred = predict(reloaded, images.images)[:, 0]
        assert np.corrcoef(pred, base)[0, 1] > 0.99
        if weights != "fp32":  # the in-memory copy is what the checkpoint loads
            assert np.allclose(pred, predict(roundtrip(model, weights), images.images)[:, 0], atol=1e-5)
    assert sizes["int8"] < sizes["fp16"] < sizes["fp32"]


def test_variants_fall_back_to_a_file_beside_the_run(tmp_path):
    assert variants_url("sqlite:///x.db", tmp_path) == "sqlite:///x.db"
    assert variants_url("not a url", tmp_path).endswith("compress/variants.db")


@pytest.fixture(scope="module")
def two_trial_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("compress-study")
    cfg = StudyConfig(space="tiny", n_synthetic=240, max_epochs=2, early_stop=False, device="cpu", cache_dir=str(root / "cache"))
    run_dir = root / "runs" / "tiny"
    return run_search(cfg, "tiny", 2, run_dir, progress=False), cfg, run_dir


def test_compress_stage_records_variants_and_resumes(two_trial_study):
    study, cfg, run_dir = two_trial_study
    storage = default_storage_url(run_dir)
    frame = compress_study(study, cfg, run_dir, storage, ratios=(0.5,), top_k=1, finetune_epochs=1, progress=False)
    best = max(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.values[0])
    t = f"t{best.number}"
    pid = f"{t}-prune0.5-magnitude"
    assert sorted(frame["id"]) == sorted([f"{t}-int8", f"{t}-fp16", pid, f"{pid}-int8", f"{pid}-fp16"])
    rows = frame.set_index("id")
    assert rows.loc[pid, "params"] < best.user_attrs["params"] and np.isfinite(rows.loc[pid, "score"])
    assert rows.loc[pid, "d_params"] == rows.loc[pid, "params"] - best.user_attrs["params"]
    assert rows.loc[f"{pid}-int8", "parent"] == pid and rows.loc[f"{pid}-int8", "bytes"] < rows.loc[pid, "bytes"]
    assert rows.loc[f"{t}-int8", "params"] == best.user_attrs["params"] and rows.loc[f"{t}-int8", "spec"] is None
    pruned, _ = load_checkpoint(run_dir / rows.loc[pid, "path"])
    assert count_params(pruned.spec) == rows.loc[pid, "params"] and rows.loc[pid, "spec"] == pruned.spec.to_dict()

    files = {p: p.stat().st_mtime_ns for p in (run_dir / "compress").iterdir()}
    again = compress_study(study, cfg, run_dir, storage, ratios=(0.5,), top_k=1, finetune_epochs=1, progress=False)
    assert dict(zip(again["id"], again["created"])) == dict(zip(frame["id"], frame["created"]))  # nothing redone
    assert {p: p.stat().st_mtime_ns for p in (run_dir / "compress").iterdir()} == files
    assert len(list_variants(storage, "tiny")) == 5

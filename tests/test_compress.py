"""Compression: every block type prunes by the requested ratio and rebuilds from its spec; quantized
copies track their parent; the stage records variants and resumes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from compress.prune import prune_model
from compress.stage import compress_study
from compress.variants import VariantStore
from search.checkpoint import load_checkpoint, save_checkpoint
from search.data import make_synthetic
from search.study import default_storage_url
from search.train import predict
from space import ArchSpec, HeadSpec, InputSpec, StageSpec, StemSpec, build_model, count_params
from run_search import main


@pytest.fixture(scope="module")
def images():
    return make_synthetic(n_images=48, size=32, seed=0)


def _spec(block: str, pool: str, stem: str) -> ArchSpec:
    return ArchSpec(InputSpec(32, 32), StemSpec(stem, 16, 3 if stem == "conv" else 2),
                    [StageSpec("mbconv", 16, 1, 2, 3, 2.0, True), StageSpec(block, 32, 2, 2, 3, 2.0, True)],
                    HeadSpec(pool, 2, 32, 0.1), act="gelu")


@pytest.mark.parametrize("block, pool, stem, importance", [
    ("residual", "avgstd", "conv", "magnitude"),
    ("mbconv", "avg", "patchify", "taylor"),
    ("convnext", "avgstd", "conv", "magnitude"),
    ("attention", "avg", "conv", "magnitude"),
    ("residual", "attn", "patchify", "magnitude"),
])
def test_each_block_prunes_and_rebuilds_from_its_spec(images, block, pool, stem, importance):
    torch.manual_seed(0)
    model = build_model(_spec(block, pool, stem)).eval()
    result = prune_model(model, images, 0.5, importance)
    assert result.params_after == count_params(result.spec) == sum(p.numel() for p in result.model.parameters())
    x = torch.rand(4, 3, 32, 32)
    rebuilt = build_model(result.spec)
    rebuilt.load_state_dict(result.model.state_dict(), strict=True)
    assert torch.allclose(rebuilt.eval()(x), result.model(x), atol=1e-5)
    reduction = 1 - result.params_after / result.params_before
    if block == "attention":  # the attention stage is kept whole and reported
        assert any("attention block" in note for note in result.left_out) and 0 < reduction < 0.5
    else:
        assert abs(reduction - 0.5) < 0.1, reduction


def test_int8_and_fp16_copies_track_their_parent(images, tmp_path):
    torch.manual_seed(0)
    model = build_model(_spec("mbconv", "avgstd", "conv")).eval()
    base = predict(model, images.images)[:, 0]
    sizes = {}
    for weights in ("fp32", "fp16", "int8"):
        path = save_checkpoint(tmp_path / f"{weights}.pt", model, model.spec, weights=weights)
        sizes[weights] = path.stat().st_size
        reloaded, payload = load_checkpoint(path)
        assert payload["weights"] == weights
        assert stats.pearsonr(predict(reloaded, images.images)[:, 0], base)[0] > 0.99
    assert sizes["int8"] < sizes["fp16"] < sizes["fp32"]


def test_compress_stage_records_variants_and_resumes(tiny_study, capsys):
    study, cfg, run_dir = tiny_study
    storage = default_storage_url(run_dir)
    frame = compress_study(study, cfg, run_dir, storage, ratios=(0.5,), top_k=1, finetune_epochs=1, progress=False)
    best = max(study.best_trials, key=lambda t: t.values[0])
    assert sorted(frame["id"]) == sorted([f"t{best.number}-int8", f"t{best.number}-fp16", f"t{best.number}-prune0.5-magnitude",
                                          f"t{best.number}-prune0.5-magnitude-int8", f"t{best.number}-prune0.5-magnitude-fp16"])
    pruned = frame.set_index("id").loc[f"t{best.number}-prune0.5-magnitude"]
    assert pruned["params"] < best.user_attrs["params"] and np.isfinite(pruned["score"])
    stamps = dict(zip(frame["id"], frame["created"]))
    again = compress_study(study, cfg, run_dir, storage, ratios=(0.5,), top_k=1, finetune_epochs=1, progress=False)
    assert dict(zip(again["id"], again["created"])) == stamps  # nothing redone
    assert main(["report", "--study", "tiny", "--runs-dir", str(run_dir.parent)]) == 0
    assert "prune" in (run_dir / "report" / "trials.csv").read_text()
    assert len(VariantStore(storage, "tiny").frame()) == 5

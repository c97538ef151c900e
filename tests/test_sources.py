"""Several labelled sources trained as one (`--data agiqa3k+agiqa1k`): loading, one scale, within-source
batches, per-source metrics, and a study on a combined dataset. Real AGIQA-1K images are not at hand, so
the sources here are small generated folders in the two label formats."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from results.export import ExportOptions, export_submission
from search.data import ImageSet, absolute_root, combine, load_imageset
from search.study import StudyConfig, check_study_inputs, run_search
from search.study.data import StudyData
from search.train.loop import evaluate, predict, train_model
from search.train.recipe import TrainConfig
from search.train.step import Batches


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread (conftest)


def _images(folder: Path, n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """`n` 16 px PNGs of noise of growing strength over smooth scenes, and their quality (falls with the noise)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    strength = rng.uniform(0, 1, n)
    names = [f"img{i}.png" for i in range(n)]  # the same file names in both sources
    for name, s in zip(names, strength):
        scene = np.kron(rng.uniform(60, 200, (4, 4, 3)), np.ones((4, 4, 1)))
        Image.fromarray(np.clip(scene + s * 80 * rng.standard_normal(scene.shape), 0, 255).astype(np.uint8)).save(
            folder / name)
    return names, 1 + 4 * (1 - strength)


def agiqa3k_like(root: Path, n: int = 24) -> Path:
    names, quality = _images(root / "images", n, seed=1)
    pd.DataFrame({"name": names, "prompt": [f"p{i // 2}" for i in range(n)], "mos_quality": quality}).to_csv(
        root / "labels.csv", index=False)
    return root


def agiqa1k_like(root: Path, n: int = 16) -> Path:
    """AGIQA-1K's format (an xlsx of `Image, Prompt, MOS`) with MOS on another scale: 3 * quality + 10."""
    names, quality = _images(root / "images", n, seed=2)
    pd.DataFrame({"Image": names, "Prompt": [f"p{i // 2}" for i in range(n)], "MOS": 3 * quality + 10}).to_excel(
        root / "AIGC_MOS_Zscore.xlsx", index=False)
    return root


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> str:
    tmp = tmp_path_factory.mktemp("sources")
    return f"agiqa3k={agiqa3k_like(tmp / 'a3k')},agiqa1k={agiqa1k_like(tmp / 'a1k')}"


def test_combined_set_prefixes_sources_and_puts_each_on_the_first_scale(roots, tmp_path):
    data = load_imageset("agiqa3k+agiqa1k", roots, size=16, cache_dir=tmp_path, progress=False)
    a3k = load_imageset("agiqa3k", roots.split(",")[0].split("=")[1], size=16, cache_dir=tmp_path, progress=False)
    assert len(data) == 40 and data.sources.tolist() == [0] * 24 + [1] * 16
    assert data.names[0] == "agiqa3k/img0.png" and data.names[24] == "agiqa1k/img0.png"
    assert data.groups[0] == "agiqa3k/p0" and data.groups[24] == "agiqa1k/p0"  # one prompt name, two groups
    assert torch.equal(data.targets[:24], a3k.targets)  # the first source keeps its own scores
    one, other = data.targets[:24].numpy(), data.targets[24:].numpy()
    assert other.mean() == pytest.approx(one.mean(), abs=1e-5) and other.std() == pytest.approx(one.std(), abs=1e-5)
    (_, first), (_, second) = data.own_scale(data.targets.numpy())
    mos_1k = pd.read_excel(roots.split("agiqa1k=")[1] + "/AIGC_MOS_Zscore.xlsx")["MOS"].to_numpy()
    assert np.allclose(first[:, 0], a3k.targets[:, 0]) and np.allclose(second[:, 0], mos_1k, atol=1e-4)
    part = data.subset([30, 2])  # a subset keeps where each image comes from
    assert part.sources.tolist() == [1, 0] and part.scales == data.scales


def test_a_combined_root_is_made_absolute_item_by_item(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_root("agiqa3k=a, agiqa1k=b/c") == f"agiqa3k={tmp_path / 'a'},agiqa1k={tmp_path / 'b/c'}"
    assert absolute_root("data/x=1") == str(tmp_path / "data/x=1")  # a folder with '=' in its name
    assert absolute_root(None) is None


def test_each_batch_holds_one_source_and_each_image_comes_once_an_epoch():
    sources = np.repeat([0, 1, 2], [50, 30, 13])
    batches = Batches(len(sources), 8, sources)
    drawn = batches.epoch(torch.Generator().manual_seed(0), torch.device("cpu"))
    assert len(drawn) == len(batches) == 7 + 4 + 2  # 50 -> 6 x 8 + 2, 30 -> 3 x 8 + 6, 13 -> 8 + 5
    assert all(len(set(sources[b.numpy()])) == 1 for b in drawn)
    seen = np.concatenate([b.numpy() for b in drawn])
    assert len(seen) == len(set(seen)) == 93
    assert [sources[b[0]] for b in drawn] != sorted(sources[b[0]] for b in drawn)  # sources interleave
    # one source: the plain permutation, exactly as before sources existed
    plain = Batches(20, 8, np.zeros(20, dtype=np.int64)).epoch(torch.Generator().manual_seed(3), torch.device("cpu"))
    order = torch.randperm(20, generator=torch.Generator().manual_seed(3))
    assert [b.tolist() for b in plain] == [order[:8].tolist(), order[8:16].tolist(), order[16:].tolist()]


class Tiny(nn.Module):
    """A conv, mean+std pooling, a linear head and the target buffers of IQANet."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Linear(16, 1)
        self.register_buffer("target_mean", torch.zeros(1))
        self.register_buffer("target_std", torch.ones(1))

    def forward(self, x):
        f = self.conv(x)
        return self.head(torch.cat([f.mean((2, 3)), f.std((2, 3))], 1)) * self.target_std + self.target_mean


def _scenes(n: int, seed: int) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    scenes = F.interpolate(torch.rand(n // 2, 3, 4, 4, generator=g), size=16, mode="bilinear").repeat_interleave(2, 0)
    noise = torch.rand(n, generator=g)
    images = (scenes + 0.15 * noise[:, None, None, None] * torch.randn(scenes.shape, generator=g)).clamp(0, 1)
    mos = (1 + 4 * (1 - noise) + 0.1 * torch.randn(n, generator=g))[:, None]
    return ImageSet((images * 255).round().to(torch.uint8), mos, np.repeat([f"s{i}" for i in range(n // 2)], 2),
                    [f"{i}.png" for i in range(n)], ["mos"])


@pytest.mark.parametrize("loss", [{"mse": 1.0, "rank": 1.0}, {"mse": 1.0, "nin": 1.0}])
def test_a_source_on_another_affine_scale_trains_and_scores_as_on_the_same_scale(loss):
    """B's MOS as 3 * mos + 10: standardised per source, the training, the predictions (on A's scale) and
    the correlations are those of B on A's own scale, and B's predictions map back onto its scale. Without
    the per-source standardisation the targets, and so every prediction, would differ."""
    a, b = _scenes(48, 0), _scenes(32, 1)
    b_moved = ImageSet(b.images, 3 * b.targets + 10, b.groups, b.names, b.target_names)
    same, moved = combine([("a", a), ("b", b)]), combine([("a", a), ("b", b_moved)])
    assert torch.allclose(same.targets, moved.targets, atol=1e-5)
    cfg = TrainConfig(epochs=3, batch_size=8, lr=3e-3, loss_weights=loss, seed=1)
    runs = []
    for data in (same, moved):
        train, val = data.subset(np.r_[0:36, 48:72]), data.subset(np.r_[36:48, 72:80])
        model = Tiny()
        result = train_model(model, train, val, cfg, device="cpu")
        runs.append((result, predict(model, val.images), evaluate(model, val), val))
    (r1, p1, m1, v1), (r2, p2, m2, v2) = runs
    assert np.allclose(p1, p2, atol=1e-3)
    for k in ("plcc", "srcc", "krcc"):
        assert m1["mos"][k] == pytest.approx(m2["mos"][k], abs=1e-3)
        assert r1.metrics[k] == pytest.approx(r2.metrics[k], abs=1e-3)
    (_, b_same), (_, b_own) = v1.own_scale(p1)[1], v2.own_scale(p2)[1]
    assert np.allclose(b_own, 3 * b_same + 10, atol=1e-2)


def test_scored_per_source_on_its_own_scale_and_averaged_by_images():
    """Predictions exact on one source and inverted on the other: each source's metrics are its own
    (SRCC 1 and -1), averaged by the number of images (not a correlation over both pooled)."""
    a, b = _scenes(12, 0), _scenes(4, 1)
    data = combine([("a", a), ("b", ImageSet(b.images, 3 * b.targets + 10, b.groups, b.names, b.target_names))])

    class Oracle(nn.Module):
        def __init__(self, scores):
            super().__init__()
            self.scores, self.p = scores, nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return self.scores[: len(x)] + 0 * self.p

    scores = data.targets.clone()
    scores[12:] = 2 * data.scales[0].mean[0] - scores[12:]  # on source b, reflected about its mean: order reversed
    metrics = evaluate(Oracle(scores), data, batch_size=16)["mos"]
    assert metrics["srcc"] == pytest.approx((12 * 1 + 4 * -1) / 16) and metrics["plcc"] == pytest.approx(0.5)
    # b's error on its own scale (3 * mos + 10) is twice its deviation from its mean: RMSE 2 std; a's is 0
    assert metrics["rmse"] == pytest.approx(4 / 16 * 2 * float((3 * b.targets + 10).std(unbiased=False)), rel=1e-4)


def test_a_study_on_a_combined_dataset_splits_by_prompt_across_sources_and_runs(roots, tmp_path):
    cfg = StudyConfig(dataset="agiqa3k+agiqa1k", root=roots, space="tiny", patches=[0], max_epochs=2, min_epochs=1,
                      trial_budget_s=1000.0, early_stop=False, device="cpu", cache_dir=str(tmp_path / "cache"),
                      ema_decays=[0.0], pretrain_shares=[0.0])
    check_study_inputs(cfg)
    data = StudyData(cfg)
    train, val = data.train_val(64)
    assert set(train.groups).isdisjoint(val.groups) and set(train.sources) == {0, 1}
    assert data.val_fingerprint() == StudyData(cfg).val_fingerprint()
    study = run_search(cfg, "combined", 1, tmp_path / "runs" / "combined", progress=False)
    assert len([t for t in study.trials if t.state.name == "COMPLETE"]) == 1
    result = export_submission(study, cfg, tmp_path / "runs" / "combined",
                               ExportOptions("T", date="20260101", smoke=True))
    notebook = json.loads(result.notebook.read_text())
    assert "['agiqa1k', '/kaggle/input/agiqa-1k']" in notebook["cells"][1]["source"] and result.summary["images"] == 40
    assert "TRAIN_SOURCES" in (result.notebook.parent / "HOW_TO_RUN.md").read_text()


def test_a_notebook_with_two_sources_runs_in_smoke_mode_and_predicts_on_the_first_scale(roots, tmp_path):
    """The exported notebook of a combined study, executed headless (SMOKE): it reads both sources by their
    loaders, trains on one scale and writes predictions on the first source's (1-5, not 13-25)."""
    import nbformat
    from nbclient import NotebookClient

    from results.notebook import build_notebook
    from search.train.recipe import Recipe
    from space import ArchSpec, HeadSpec, InputSpec, StageSpec, StemSpec

    spec = ArchSpec(InputSpec(48, 40, False), StemSpec("conv", 8, 3), [StageSpec("residual", 8, 1, 2, 3)],
                    HeadSpec("avg", 1))
    recipe = Recipe(spec, TrainConfig(epochs=3, batch_size=8, crop=40))
    sources = dict(item.split("=") for item in roots.split(","))
    nb = nbformat.from_dict(build_notebook("T", "20260101", recipe, ["mos_quality"], 0, 600, 10_000_000,
                                           task="sources", sources=list(sources)))
    settings = nb.cells[1].source
    assert "TRAIN_SOURCES = [" in settings and "['agiqa1k', '/kaggle/input/agiqa-1k']" in settings
    assert "train_sources=TRAIN_SOURCES" in nb.cells[-1].source and "task='sources'" in nb.cells[-1].source
    nb.cells.insert(2, nbformat.v4.new_code_cell(
        f"TRAIN_SOURCES = {[[n, p] for n, p in sources.items()]!r}\nTEST_IMAGES = {sources['agiqa1k'] + '/images'!r}\n"
        f"OUT_DIR = {str(tmp_path)!r}\nSMOKE = True"))
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert "40 training images" in printed and "wrote" in printed, printed
    scores = pd.read_csv(tmp_path / "predictions.csv")["score"]
    assert len(scores) == 16 and scores.notna().all() and 0 < scores.mean() < 6, scores.describe()

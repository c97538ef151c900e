"""The generated notebook: its cells and headings, the model card's numbers, only the code its run calls
(no pair code in a MOS notebook, only the block families and input view it uses), and the run itself:
the parameter count against the cap, environment.txt, an unreadable test image left out with an empty
score, and the predict-only switch executed headless."""
from __future__ import annotations

import ast

import nbformat
import numpy as np
import pandas as pd
import pytest
from nbclient import NotebookClient
from PIL import Image

from lint import undefined_names
from notebook_run import generated_code, run_smoke, write_labelled_pngs
from results.notebook import build_notebook
from results.submission import Submission, run_submission
from search.checkpoint import load_checkpoint
from search.data import decode_images, load_folder, make_synthetic
from search.train.loop import predict
from search.train.recipe import Recipe, TrainConfig
from space import ArchSpec, HeadSpec, InputSpec, StageSpec, StemSpec, count_flops, count_params
from space.count import part_costs

PAIR_NAMES = {"PairSet", "train_pairs", "read_pairs", "choices_frame", "retrain_pairs", "PREFERENCE", "PAIR_COLUMNS"}


def _recipe(patch: int = 0, fragments: int = 0) -> Recipe:
    spec = ArchSpec(InputSpec(48, 48 if patch or fragments else 40, False, patch, fragments=fragments, fragment=8),
                    StemSpec("conv", 8, 3),
                    [StageSpec("mbconv", 16, 2, 2, 3), StageSpec("residual", 24, 1, 2, 3)], HeadSpec("avgstd", 2),
                    num_outputs=1)
    return Recipe(spec, TrainConfig(epochs=7, batch_size=8, crop=spec.input.crop))


def _views_recipe() -> Recipe:
    """16 px patches, 2 per step, tested on a 4 x 4 grid, again at 32 px and mirrored, pooled by attention, with
    a 16 px global stream."""
    recipe = _recipe(patch=16)
    recipe.spec.input = InputSpec(48, 48, False, 16, 2, 4, 16, test_scales=[32], test_flip=True)
    recipe.spec.head.patch_pool = "attn"
    return recipe


def _code_names(nb: dict) -> set[str]:
    """The names the notebook's code defines (functions, classes) or reads."""
    tree = ast.parse("\n".join(c["source"] for c in nb["cells"] if c["cell_type"] == "code"))
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} | {
        n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}


def _undefined(code: str) -> str:
    return undefined_names(code)


def test_cells_headings_settings_and_model_card():
    recipe = _recipe()
    nb = build_notebook("T", "20260101", recipe, ["mos_quality"], 0, deadline_s=5400, param_cap=10_000_000)
    cells = nb["cells"]
    settings, card = cells[1]["source"], cells[2]["source"]
    assert cells[1]["cell_type"] == "code" and "DEADLINE_S = 5400 " in settings and "PARAM_CAP = 10000000 " in settings
    assert "WEIGHTS = None" in settings
    scope: dict = {}
    exec(settings, scope)
    assert scope["RECIPE"] == recipe.to_dict() and settings.count("\n") > 15  # the recipe spread over lines
    assert card.startswith("## Model card") and "**7 epochs** planned" in card
    for row in part_costs(recipe.spec):  # every part's exact counts, as space.count gives them
        assert f"| {row.name} |" in card and f"{row.params:,} | {row.flops:,} |" in card
    assert f"**{count_params(recipe.spec):,}** | **{count_flops(recipe.spec):,}**" in card
    headings = [c["source"].split("`")[1] for c in cells
                if c["cell_type"] == "markdown" and c["source"].startswith("### ")]
    code_after = [cells[i + 1]["cell_type"] for i, c in enumerate(cells) if c["source"].startswith("### ")]
    assert len(headings) > 10 and set(code_after) == {"code"} and len(set(headings)) == len(headings)
    assert ("search.budget" not in headings and "search.train.pairs" not in headings
            and "space.layers.patches" not in headings)
    assert cells[-1]["cell_type"] == "code" and "task='mos'" in cells[-1]["source"]


def test_a_fill_schedule_is_in_settings_with_its_reason_and_in_the_model_card():
    why = "fill (train until DEADLINE_S); the validation score was still rising over its last 3 of 7 epochs " * 2
    nb = build_notebook("T", "20260101", _recipe(), ["mos_quality"], 0, 5400, 10_000_000, epochs="fill", why=why)
    settings, card = nb["cells"][1]["source"], nb["cells"][2]["source"]
    scope: dict = {}
    exec(settings, scope)
    assert scope["EPOCHS"] == "fill" and 'EPOCHS = "fill"' in settings
    lines = settings.splitlines()
    comment = lines[lines.index("SEED = 0") + 1:[i for i, line in enumerate(lines) if line.startswith("EPOCHS")][0]]
    assert len(comment) > 1 and all(line.startswith("# ") and len(line) <= 110 for line in comment)  # wrapped
    assert " ".join(line[2:] for line in comment) == f"schedule: {why.strip()}"
    assert "**until `DEADLINE_S`**" in card and "7 epochs by the T4 budget model" in card


def test_a_mos_notebook_holds_only_what_its_run_calls():
    mos = _code_names(build_notebook("T", "20260101", _recipe(), ["mos_quality"], 0, 5400, 10_000_000))
    assert not mos & (PAIR_NAMES | {"BudgetModel", "budget_costs", "ConvNeXtBlock", "AttentionBlock", "Patches",
                                    "PatchView", "_pairs_read", "load_agiqa3k"})
    assert {"MBConvBlock", "ResidualBlock", "CropView", "load_csv", "_mos_read"} <= mos
    patch = _code_names(build_notebook("T", "20260101", _recipe(patch=16), ["mos_quality"], 0, 5400, 10_000_000))
    assert {"Patches", "PatchView"} <= patch and not {"CropView", "Fragments", "FragmentView"} & patch
    fragments = _code_names(build_notebook("T", "20260101", _recipe(fragments=3), ["mos_quality"], 0, 5400, 10_000_000))
    assert {"Fragments", "FragmentView", "cell_edges"} <= fragments and not {"CropView", "Patches"} & fragments
    assert not {"Fragments", "FragmentView"} & mos
    pairs = _code_names(build_notebook("T", "20260101", _recipe(), ["preference"], 0, 5400, 10_000_000,
                                       task="pairs", pair_columns=["image_a", "image_b", "winner"]))
    assert {"PairSet", "train_pairs", "_pairs_read"} <= pairs and not {"_mos_read", "load_csv", "iqa_metrics"} & pairs
    views = _code_names(build_notebook("T", "20260101", _views_recipe(), ["mos_quality"], 0, 5400, 10_000_000))
    assert {"Patches", "PatchView", "PatchPool", "reduce_image"} <= views
    sources = _code_names(build_notebook("T", "20260101", _recipe(), ["mos_quality"], 0, 5400, 10_000_000,
                                         task="sources", sources=["agiqa3k", "agiqa1k"]))
    assert {"_sources_read", "combine", "load_agiqa1k"} <= sources and not PAIR_NAMES & sources
    for code in (generated_code(_recipe()), generated_code(_recipe(patch=16)), generated_code(_recipe(fragments=3)),
                 generated_code(_views_recipe()), generated_code(task="pairs"),
                 generated_code(_recipe(), task="sources")):
        assert not _undefined(code), _undefined(code)


def test_the_notebook_trains_and_predicts_test_views_and_attention_over_patches(tmp_path):
    recipe = _views_recipe()
    card = build_notebook("T", "20260101", recipe, ["mos_quality"], 0, 600, 10_000_000)["cells"][2]["source"]
    assert "a 4 x 4 grid at test, again at 32 px, each also mirrored; the patches' features weighted" in card
    labels = write_labelled_pngs(tmp_path, 20, 48, seed=3)
    nb = nbformat.from_dict(build_notebook("T", "20260101", recipe, ["mos_quality"], 0, 600, 10_000_000))
    out = run_smoke(nb, tmp_path,
                    f"TRAIN_IMAGES = TEST_IMAGES = {str(tmp_path / 'imgs')!r}\nTRAIN_LABELS = {str(labels)!r}")
    assert len(out) == 20 and out["score"].notna().all()
    model, _ = load_checkpoint(tmp_path / "T_20260101_model.pth")
    inp = model.spec.input  # the smoke size: 16 px patches of 32 px, the test scale alike
    assert ((inp.resize, inp.patch, inp.grid, inp.test_scales, inp.test_flip, inp.global_size)
            == (32, 16, 4, [21], True, 16))
    assert model.spec.head.patch_pool == "attn" and model.view.pool.score.weight.abs().sum() > 0  # the scorer trained
    images = decode_images(load_folder(tmp_path / "imgs"), 32, tmp_path / "cache", progress=False)
    ours = predict(model, images.images)[:, 0]
    assert np.abs(out.sort_values("image")["score"].to_numpy() - ours).max() < 1e-4


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A smoke run of run_submission whose test folder holds a truncated JPEG."""
    root = tmp_path_factory.mktemp("run")
    data = make_synthetic(n_images=24, size=48, seed=2)
    for folder in ("train", "test"):
        (root / folder).mkdir()
    for name, img in zip(data.names, data.images):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(root / "train" / f"{name}.png")
    for name, img in list(zip(data.names, data.images))[:6]:
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(root / "test" / f"{name}.jpg", quality=90)
    whole = (root / "test" / f"{data.names[0]}.jpg").read_bytes()
    (root / "test" / "broken.jpg").write_bytes(whole[: len(whole) // 2])  # a truncated JPEG
    pd.DataFrame({"name": [f"{n}.png" for n in data.names], "mos_quality": data.targets[:, 0].numpy()}).to_csv(
        root / "train.csv", index=False)
    lines: list[str] = []
    out = run_submission(Submission(
        team="T", date="20260101", out_dir=str(root), recipe=_recipe().to_dict(), epochs=1, deadline_s=300,
        train_images=str(root / "train"), train_labels=str(root / "train.csv"), test_images=str(root / "test"),
        smoke=True, param_cap=10_000_000), log=lines.append)
    return root, out, lines


def test_a_truncated_test_image_is_named_and_left_empty(trained):
    root, out, lines = trained
    preds = pd.read_csv(out["predictions"])
    assert len(preds) == 7 and list(preds.columns) == ["image", "score"]
    assert preds.set_index("image")["score"].isna().to_dict() == {n: n == "broken.jpg" for n in preds["image"]}
    assert [line for line in lines if "unreadable" in line] == [
        "warning: 1 unreadable test image(s) left out (empty score): broken.jpg"]
    assert any(line.startswith("model: ") and "parameters, cap 10,000,000 (within the cap)" in line for line in lines)
    env = dict(line.split(": ", 1) for line in (root / "environment.txt").read_text().splitlines())
    assert {"python", "torch", "cuda", "cudnn", "gpu", "numpy", "pandas", "pillow"} <= set(env)


def test_predict_only_runs_headless_with_the_given_weights(trained, tmp_path):
    root, out, _ = trained
    recipe = _recipe()
    nb = nbformat.from_dict(build_notebook("T", "20260101", recipe, ["mos_quality"], 0, 600, 10_000_000))
    nb.cells.insert(2, nbformat.v4.new_code_cell(
        f"TEST_IMAGES = {str(root / 'test')!r}\nTRAIN_IMAGES = TRAIN_LABELS = '/nowhere'\n"
        f"OUT_DIR = {str(tmp_path)!r}\nWEIGHTS = {str(out['weights'])!r}"))
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert "predicted with" in printed and "broken.jpg" in printed and "epochs fit" not in printed, printed
    ours, theirs = pd.read_csv(tmp_path / "predictions.csv"), pd.read_csv(out["predictions"])
    assert np.allclose(ours["score"], theirs["score"], atol=1e-4, equal_nan=True)
    assert (tmp_path / "environment.txt").is_file() and not list(tmp_path.glob("*.pth"))


def test_the_notebook_trains_and_predicts_a_fragment_ensemble_in_smoke_mode(trained, tmp_path):
    root, _, _ = trained
    recipe = _recipe(fragments=3)
    recipe.spec.members = 2
    nb = nbformat.from_dict(build_notebook("T", "20260101", recipe, ["mos_quality"], 0, 600, 10_000_000))
    card = nb.cells[2].source
    assert "a 3 x 3 grid of 8 px fragments of the 48 px image, spliced into one 24 px view" in card
    assert f"**{count_params(recipe.spec):,} parameters**" in card and "An ensemble: 2 networks" in card
    assert f"| **total: 2 members** | | | | **{count_params(recipe.spec):,}** |" in card
    nb.cells.insert(2, nbformat.v4.new_code_cell(
        f"TRAIN_IMAGES = {str(root / 'train')!r}\nTRAIN_LABELS = {str(root / 'train.csv')!r}\n"
        f"TEST_IMAGES = {str(root / 'test')!r}\nOUT_DIR = {str(tmp_path)!r}\nSMOKE = True\nDEADLINE_S = 120"))
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    preds = pd.read_csv(tmp_path / "predictions.csv").set_index("image")["score"]
    assert len(preds) == 7 and preds.drop("broken.jpg").notna().all()
    model, _ = load_checkpoint(tmp_path / "T_20260101_model.pth")
    inp = model.spec.input
    assert (inp.resize, inp.crop, inp.fragments, inp.fragment, inp.patch) == (32, 32, 2, 8, 0)  # the smoke size
    assert model.spec.members == 2 and len(model.members) == 2
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert "trained 2 members, 1 + 1 epochs" in printed and f"model: {count_params(model.spec):,} parameters" in printed

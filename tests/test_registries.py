"""One registry per extension point: a profile, a loss or a labelled dataset format is one entry that carries what
the paper, the report and the notebook say of it, so adding one edits no other module."""
from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch

from results.notebook import build_notebook
from results.paper import write_paper_kit
from results.paper.bib import BIB, dataset_title
from results.paper.fmt import challenge_cite, challenge_title, score_words
from results.paper.tex import _loss
from results.report import chance_warning
from search.data import labels
from search.profiles import PAIR_ACCURACY, PROFILES
from search.train import losses
from search.train.losses import LOSS_PRESETS, LOSSES, Loss, make_loss
from search.train.recipe import Recipe, TrainConfig
from space import ArchSpec, HeadSpec, InputSpec, StageSpec, StemSpec

TOY_PROFILE = dataclasses.replace(
    PROFILES["vquala2025-fiqa"], name="toy-challenge", title="the Toy & Co. Challenge", cite=None,
    formula=r"S = \mathrm{TOY}(\hat y, y)", score_words="toy score")


def test_every_profile_says_its_title_formula_and_score_words():
    for profile in PROFILES.values():
        assert profile.title and profile.formula and profile.score_words, profile.name
        assert profile.cite is None or profile.cite in BIB
    assert [p.name for p in PROFILES.values() if p.pairwise] == ["ntire-pairwise"]
    assert challenge_title(TOY_PROFILE) == r"the Toy \& Co. Challenge" and challenge_cite(TOY_PROFILE) == ""
    assert score_words(TOY_PROFILE) == "toy score"
    assert challenge_cite(PROFILES["icme2026-aigc"]) == "~\\cite{icme2026challenge}"
    with pytest.raises(ValueError, match="score_kind"):
        dataclasses.replace(TOY_PROFILE, score_kind="rmse")


def test_a_new_profile_is_one_entry_the_paper_and_report_read(tiny_study, monkeypatch):
    study, cfg, run_dir = tiny_study
    monkeypatch.setitem(PROFILES, TOY_PROFILE.name, TOY_PROFILE)
    toy_cfg = dataclasses.replace(cfg, profile=TOY_PROFILE.name)
    paper = write_paper_kit(study, toy_cfg, run_dir / "toy-profile")
    method, intro = (paper / "method.tex").read_text(), (paper / "paper.tex").read_text()
    assert r"under the rules of the Toy \& Co. Challenge; no" in method
    assert "S = \\mathrm{TOY}(\\hat y, y)." in method and "The toy score is" in method
    assert r"The Toy \& Co. Challenge asks for" in intro and "icme2026challenge" not in intro
    pairs = dataclasses.replace(TOY_PROFILE, score_kind=PAIR_ACCURACY, score_max=1.0)
    ranking = pd.DataFrame({"score": [0.52], "finalist": [False]})
    assert "a coin scores 0.5" in chance_warning(ranking, pairs)
    assert "a coin" not in chance_warning(pd.DataFrame({"score": [0.1], "finalist": [False]}), TOY_PROFILE)


def test_a_new_loss_is_one_entry_training_and_the_paper_read(monkeypatch):
    monkeypatch.setitem(LOSSES, "l1", Loss(lambda p, t: (p - t).abs().mean(), "mean absolute error"))
    monkeypatch.setitem(LOSS_PRESETS, "mse+l1", {"mse": 1.0, "l1": 0.5})
    pred, target = torch.tensor([[1.0], [2.0]]), torch.tensor([[2.0], [2.0]])
    assert make_loss(LOSS_PRESETS["mse+l1"])(pred, target).item() == pytest.approx(0.5 + 0.5 * 0.5)
    assert _loss(LOSS_PRESETS["mse+l1"]) == "MSE + 0.5$\\times$mean absolute error"
    assert _loss({"mse": 1.0, "nin": 1.0}) == "MSE + norm-in-norm"
    assert set(LOSSES) == {"mse", "plcc", "rank", "nin", "l1"} and losses.LOSS_PRESETS is LOSS_PRESETS
    with pytest.raises(ValueError, match="unknown loss"):
        make_loss({"huber": 1.0})


def test_a_new_dataset_format_is_one_entry_the_paper_and_notebook_read(monkeypatch):
    assert dataset_title("agiqa3k") == ("AGIQA-3K", "li2024agiqa3k")
    assert dataset_title("agiqa3k+agiqa1k") == ("AGIQA-3K + AGIQA-1K", "li2024agiqa3k,zhang2023agiqa1k")
    assert dataset_title("synthetic")[1] is None and dataset_title("my_set") == (r"my\_set", None)
    assert all(f.cite in BIB for f in labels.LOADERS.values())
    toy = labels.LabelFormat(labels.load_agiqa3k, "Toy-IQA", None, "/kaggle/input/toy-iqa")
    monkeypatch.setitem(labels.LOADERS, "toyiqa", toy)
    assert dataset_title("agiqa3k+toyiqa") == ("AGIQA-3K + Toy-IQA", "li2024agiqa3k")
    spec = ArchSpec(InputSpec(32, 32), StemSpec("conv", 8, 3), [StageSpec("mbconv", 8, 1)], HeadSpec())
    nb = build_notebook("T", "20260101", Recipe(spec, TrainConfig(epochs=1)), ["mos_quality"], 0, 600, 10_000_000,
                        task="sources", sources=["agiqa3k", "toyiqa"])
    settings = nb["cells"][1]["source"]
    assert "['agiqa3k', '/kaggle/input/agiqa-3k']" in settings and "['toyiqa', '/kaggle/input/toy-iqa']" in settings

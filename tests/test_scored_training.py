"""The scored training (export's retrain and the notebook's) checks itself: the final-training strategies of
`search.train.retrain`, the best-snapshot watch of `search.train.snapshot`, and the demo's bounded export."""
from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from notebook_run import write_labelled_pngs

from results.export import choose_members
from results.submission import NOTEBOOK_KINDS, Submission
from run_search import DEMO, build_parser, demo_steps
from search.data import ImageSet, make_synthetic
from search.data.pairs import PairSet
from search.budget import BudgetModel
from search.checkpoint import load_checkpoint, save_checkpoint
from search.profiles import get_profile
from search.train.loop import evaluate, predict
from search.train.pairs import retrain_pairs
from search.train.recipe import Recipe, TrainConfig
from search.train.retrain import FILL, OPEN_EPOCHS, Deadline, budget_costs, check_split, retrain
from search.train.snapshot import MIN_CHECKS, BestSnapshot, check_every, validation_score
from space import ArchSpec, CapError, HeadSpec, InputSpec, StageSpec, StemSpec, count_params

pytestmark = pytest.mark.usefixtures("one_thread")


def _memorising_set(n: int = 160, prompts: int = 40, size: int = 16) -> ImageSet:
    """Flat grey images with noise of a random strength; MOS falls with the strength, plus label noise twice
    as large as the signal's spread: a model that learns the strength first, then memorises the noise."""
    g = torch.Generator().manual_seed(0)
    strength = torch.rand(n, generator=g)
    images = (128.0 + torch.randn(n, 3, size, size, generator=g) * strength[:, None, None, None] * 60).clamp(0, 255)
    mos = 5 - 4 * strength + 2.0 * torch.randn(n, generator=g)
    return ImageSet(images.to(torch.uint8), mos[:, None], np.array([f"p{i % prompts}" for i in range(n)], dtype=object),
                    [f"{i}.png" for i in range(n)], ["mos"])


def _recipe(epochs: int, lr: float = 0.003) -> Recipe:
    """An 81K-parameter model, big enough to memorise 144 images."""
    spec = ArchSpec(InputSpec(16, 16, False), StemSpec("conv", 16, 3),
                    [StageSpec("residual", 32, 1, 1, 3), StageSpec("residual", 64, 1, 2, 3)], HeadSpec("avgstd", 1, 64),
                    num_outputs=1)
    return Recipe(spec, TrainConfig(epochs=epochs, batch_size=16, lr=lr, weight_decay=0.0, hflip=False))


def test_an_overfitting_run_ends_on_its_best_validated_snapshot_not_its_last():
    data = _memorising_set()
    model, result = retrain(_recipe(60), data, seed=0, final="holdout")
    scores = [score for _, score in result.curve]
    assert result.best_epoch < result.epochs_run < 60, "it trained past its best, then stopped on the evidence"
    assert "no validation gain" in result.stop and scores[-1] < max(scores)
    assert np.mean(scores[-4:]) < max(scores) - 0.03, "the curve fell: the model memorised its training part"
    _, part = check_split(data, seed=0)
    assert 0.05 < len(part) / len(data) < 0.2 and not set(part.groups) & set(check_split(data, 0)[0].groups)
    assert validation_score(evaluate(model, part)) == pytest.approx(max(scores), abs=1e-9)  # the best, not the last


def test_all_data_keeps_the_last_weights_and_trains_every_image():
    data = _memorising_set(n=64, prompts=16)
    _, result = retrain(_recipe(3), data, seed=0, final="all")
    assert result.epochs_run == 3 and result.curve == [] and result.best_epoch is None
    assert result.stop == "its planned epochs ran"


def test_refit_trains_all_data_for_the_epochs_where_the_holdout_validated_best():
    data = _memorising_set()
    _, result = retrain(_recipe(12), data, seed=0, final="refit")
    assert result.best_epoch is not None and result.epochs_run == result.best_epoch
    assert len(result.curve) == 12, "the calibration run does not stop early: its best is over its whole schedule"
    assert f"refit on all data for the {result.best_epoch} epochs" in result.stop


def test_a_long_run_is_validated_every_few_epochs_and_waits_before_stopping():
    assert check_every(40) == 1 and check_every(1000) == 5 and check_every(4000) == 20
    watch = BestSnapshot()
    assert [e for e in range(1, 31) if watch.due(e, 1000, last=False)] == [5, 10, 15, 20, 25, 30]
    assert watch.due(7, 1000, last=True) and watch.due(1000, 1000, last=False)
    model = torch.nn.Linear(1, 1)
    metrics = lambda v: {"mos": {"corr_score": v}}  # noqa: E731
    assert not watch(model, 5, metrics(0.5))
    stops = [e for e in range(10, 200, 5) if watch(model, e, metrics(0.4))]
    assert stops[0] == 5 + MIN_CHECKS * 5, "a best at epoch 5 waits for 10 validations, not for 5 epochs"
    assert "after its best at epoch 5" in watch.stopped


def test_the_snapshot_is_chosen_by_the_correlation_score_or_pair_accuracy():
    """MOS metrics also hold pair accuracy on MOS-derived pairs: the correlation score decides for them."""
    mos = {"mos_quality": {"corr_score": 0.6, "pair_acc": 0.8}, "mos_align": {"corr_score": 0.4, "pair_acc": 0.7}}
    assert validation_score(mos) == pytest.approx(0.5)
    assert validation_score({"preference": {"pair_acc": 0.7}}) == pytest.approx(0.7)


def test_preference_pairs_train_on_all_their_pairs():
    images = make_synthetic(n_images=8, size=16, seed=0)
    pairs = PairSet(images, torch.tensor([[0, 1], [2, 3]]))
    with pytest.raises(ValueError, match="uses all of them"):
        retrain_pairs(_recipe(1), pairs, 0, final="holdout")


def test_the_demo_export_plans_a_bounded_retrain():
    """`make run` must end in about 5 minutes: its export names its epochs (never "fill", which plans a
    deadline-long retrain on a curve that still rises) and a time limit of a few minutes."""
    parser = build_parser()
    exports = [parser.parse_args(argv) for _, argv in demo_steps() if argv[0] == "export"]
    assert exports, "the demo exports"
    for args in exports:
        assert args.epochs != FILL and isinstance(args.epochs, int) and args.epochs <= 2 * DEMO["max_epochs"]
        assert args.time_limit is not None and args.time_limit <= 300
    assert all("fill" not in argv for _, argv in demo_steps())


def test_the_notebook_groups_its_validation_part_by_prompt_when_the_labels_name_them(tmp_path):
    """The official data.csv has a `prompt` column: the holdout then keeps whole prompts out of training;
    a CSV without one falls back to single images, and the run says which."""
    labels = write_labelled_pngs(tmp_path, n_images=24, size=16, seed=0)
    frame = pd.read_csv(labels)
    frame.assign(prompt=[f"p{i // 4}" for i in range(len(frame))]).to_csv(tmp_path / "with_prompts.csv", index=False)
    common = dict(team="T", date="20260101", out_dir=str(tmp_path), recipe=_recipe(1).to_dict(), epochs=1,
                  deadline_s=60, train_images=str(tmp_path / "imgs"), test_images=str(tmp_path / "imgs"))
    grouped, _ = NOTEBOOK_KINDS["mos"].read(Submission(**common, train_labels=str(tmp_path / "with_prompts.csv")), 16)
    assert sorted(set(grouped.groups)) == [f"p{i}" for i in range(6)]
    train, part = check_split(grouped, 0)
    assert not set(train.groups) & set(part.groups)
    alone, _ = NOTEBOOK_KINDS["mos"].read(Submission(**common, train_labels=str(labels)), 16)
    assert len(set(alone.groups)) == len(alone)


def _ensemble(recipe: Recipe, members: int = 2) -> Recipe:
    recipe.spec.members = members
    return recipe


def test_an_ensemble_trains_each_member_apart_and_scores_their_mean(tmp_path):
    data = _memorising_set(n=64, prompts=16)
    recipe = _ensemble(_recipe(2))
    model, result = retrain(recipe, data, seed=0, final="all")
    single, _ = retrain(_recipe(2), data, seed=0, final="all")
    assert (result.member_epochs == [2, 2] and result.epochs_run == 4
            and "member 2: its planned epochs ran" in result.stop)
    first, second = model.members
    assert torch.equal(first.stem_conv().weight, single.stem_conv().weight), "member 1 is the single run of the seed"
    assert not torch.equal(first.stem_conv().weight, second.stem_conv().weight), "each member has its own seed"
    both = [predict(m, data.images) for m in (first, second)]
    assert np.allclose(predict(model, data.images), (both[0] + both[1]) / 2, atol=1e-5)
    assert count_params(recipe.spec) == 2 * count_params(_recipe(2).spec) == sum(p.numel() for p in model.parameters())
    path = save_checkpoint(tmp_path / "e.pth", model, recipe.spec)
    loaded, _ = load_checkpoint(path)
    assert loaded.spec.members == 2 and np.allclose(predict(loaded, data.images), predict(model, data.images),
                                                    atol=1e-6)


def test_an_ensemble_shares_the_deadline_between_its_members():
    data = _memorising_set(n=64, prompts=16)
    deadline = Deadline(4.0)
    _, result = retrain(_ensemble(_recipe(OPEN_EPOCHS)), data, seed=0, deadline=deadline, reserve_s=0.5)
    assert len(result.member_epochs) == 2 and min(result.member_epochs) >= 1
    times = [r.seconds for r in result.history]
    longest = max([times[0]] + [b - a for a, b in zip(times, times[1:]) if b > a])
    assert deadline.elapsed() < 4.0 + 2 * longest + 1.0, "each member's share ends by the clock, one epoch over at most"
    assert result.member_epochs[1] >= result.member_epochs[0] / 3, "the second member had its share of the time"
    assert all("time budget" in part for part in result.stop.split("; "))


def test_an_ensemble_costs_its_members_together():
    recipe = _recipe(2)
    costs = budget_costs(BudgetModel(), recipe)
    doubled = budget_costs(BudgetModel(), _ensemble(_recipe(2)))
    assert doubled.step_s == pytest.approx(2 * costs.step_s) and doubled.predict_image_s == pytest.approx(
        2 * costs.predict_image_s)


def _plan_for(epochs_of: dict[int, int]):
    """A stand-in for export's plan: the epochs an ensemble of each size would be planned."""
    return lambda recipe: SimpleNamespace(epochs=epochs_of[recipe.spec.members])


def test_auto_members_takes_an_ensemble_only_where_it_costs_no_size_points():
    profile = get_profile("icme2026-aigc")
    small = _recipe(2)  # 81K: two of them are still far below the smallest reference team
    recipe, why = choose_members(small, "t", profile, "auto", _plan_for({1: 8, 2: 8}), fill=False)
    assert recipe.spec.members == 2 and small.spec.members == 1 and why.startswith("auto: 2 members")
    near = [count_params(small.spec) * 1.5 / 1e6] * 3  # every reference team between one network and two
    assert choose_members(small, "t", profile, "auto", _plan_for({1: 8, 2: 8}), False, near)[0].spec.members == 1
    assert choose_members(small, "t", profile, "auto", _plan_for({1: 8, 2: 5}), False)[0].spec.members == 1, \
        "two members that would train fewer epochs than one are not taken"
    assert choose_members(small, "t", profile, "auto", _plan_for({1: 8, 2: 5}), True)[0].spec.members == 2, \
        "with fill the members share the deadline"
    capped = replace(profile, caps=replace(profile.caps, params=count_params(small.spec) * 2 - 1))
    assert choose_members(small, "t", capped, "auto", _plan_for({1: 8, 2: 8}), False)[0].spec.members == 1
    with pytest.raises(CapError, match="ensemble of 2"):
        choose_members(small, "t", capped, 2, _plan_for({1: 8, 2: 8}), False)

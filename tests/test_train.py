"""Losses, device-side augmentation and the budgeted trainer, on tiny CNNs and a tiny learnable set.

The set is made here rather than with `make_synthetic`: MOS falls with the strength of added noise on
smooth scenes, which a ~3k-parameter CNN learns in a few CPU seconds; the synthetic set's degradations
need bigger models and more images than a unit test should spend.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from search.train.augment import crop_views, random_crop_flip, to_model_input
from search.data import ImageSet, grouped_holdout
from scipy.stats import spearmanr

from search.train.distort import DISTORTIONS, graded_pair
from search.train.losses import make_loss, mse_loss, norm_in_norm_loss, plcc_loss, rank_loss
from search.train.pretrain import pretrain
from search.train.recipe import TrainConfig
from search.train.step import TrainingDiverged, lr_factor
from search.train.loop import EpochRecord, evaluate, predict, train_model


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread (conftest)


class TinyIQA(nn.Module):
    """Two convs, mean+std pooling, a linear head, and the `target_mean` / `target_std` buffers of IQANet."""

    def __init__(self, width: int = 12, outputs: int = 1, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1), nn.BatchNorm2d(width), nn.ReLU(),
                                      nn.Conv2d(width, 2 * width, 3, 2, 1), nn.BatchNorm2d(2 * width), nn.ReLU())
        self.head = nn.Linear(4 * width, outputs)
        self.register_buffer("target_mean", torch.zeros(outputs))
        self.register_buffer("target_std", torch.ones(outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        raw = self.head(torch.cat([f.mean((2, 3)), f.std((2, 3))], 1))
        return raw * self.target_std + self.target_mean


class Plain(nn.Module):
    """A model without target buffers: trained on raw targets."""

    def __init__(self, outputs: int = 1):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                 nn.Flatten(), nn.Linear(8, outputs))

    def forward(self, x):
        return self.net(x)


def noisy_scenes(n_scenes: int = 60, per_scene: int = 5, size: int = 32, seed: int = 0) -> ImageSet:
    """Smooth random scenes, each a group seen `per_scene` times with noise of random strength s:
    mos = 1 + 4 (1 - s) + N(0, 0.1^2); a second target `bright` is the scene's mean brightness."""
    g = torch.Generator().manual_seed(seed)
    scenes = F.interpolate(torch.rand(n_scenes, 3, 4, 4, generator=g), size=size, mode="bilinear",
                           align_corners=False).repeat_interleave(per_scene, 0)
    severity = torch.rand(len(scenes), generator=g)
    images = (scenes + 0.1 * severity[:, None, None, None] * torch.randn(scenes.shape, generator=g)).clamp(0, 1)
    mos = 1 + 4 * (1 - severity) + 0.1 * torch.randn(len(scenes), generator=g)
    targets = torch.stack([mos, scenes.mean((1, 2, 3)) * 100], 1).float()
    groups = np.repeat([f"scene{i}" for i in range(n_scenes)], per_scene)
    return ImageSet((images * 255).round().to(torch.uint8), targets, groups,
                    [f"{i}.png" for i in range(len(scenes))], ["mos", "bright"])


@pytest.fixture(scope="module")
def sets():
    data = noisy_scenes()
    train, val = grouped_holdout(data.groups, 0.25, seed=0)
    return data.subset(train), data.subset(val)


def first_target(data: ImageSet) -> ImageSet:
    return ImageSet(data.images, data.targets[:, :1], data.groups, data.names, data.target_names[:1])


# ------------------------------------------------------------------------------------------ losses
def test_losses_vanish_at_perfect_order_and_survive_a_batch_of_one():
    t = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    assert mse_loss(t, t) == 0
    assert plcc_loss(t * 3 + 1, t) < 1e-4 and plcc_loss(-t, t) > 0.99
    assert rank_loss(t * 100, t) < 0.01 and rank_loss(-t * 100, t) > 10
    assert rank_loss(t, torch.ones_like(t)) == 0  # all ties: no order to learn
    assert norm_in_norm_loss(t * 3 + 1, t) < 1e-3 and norm_in_norm_loss(-t, t) > 0.6
    assert 0 < norm_in_norm_loss(t + torch.randn(16, 2), t) < norm_in_norm_loss(-t, t) <= 1
    one = torch.randn(1, 1, requires_grad=True)
    loss = make_loss({"mse": 1.0, "plcc": 1.0, "rank": 1.0, "nin": 1.0})(one, torch.zeros(1, 1))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(one.grad).all()
    with pytest.raises(ValueError, match="unknown loss.*huber"):
        make_loss({"huber": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        make_loss({"mse": 1.0, "rank": -1.0})


@pytest.mark.parametrize("loss", [plcc_loss, norm_in_norm_loss])
def test_normalised_loss_gradient_is_bounded_for_constant_predictions(loss):
    pred = torch.full((32, 1), 2.0, requires_grad=True)
    loss(pred, torch.randn(32, 1, generator=torch.Generator().manual_seed(0))).backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().max() < 100


# ------------------------------------------------------------------------------------ distortions
@pytest.mark.parametrize("name", list(DISTORTIONS))
def test_each_distortion_degrades_more_at_higher_strength(name):
    x = noisy_scenes(n_scenes=4, per_scene=1).images.float() / 255
    errors = [(DISTORTIONS[name](x, s, torch.Generator().manual_seed(0)) - x).abs().mean() for s in (0.1, 0.5, 1.0)]
    assert 0 < errors[0] < errors[1] < errors[2], errors
    out = DISTORTIONS[name](x, 1.0, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype


def test_graded_pair_is_seeded_and_mild_is_closer():
    x = noisy_scenes(n_scenes=4, per_scene=1).images.float() / 255
    pairs = [graded_pair(x, list(DISTORTIONS), torch.Generator().manual_seed(5), torch.Generator().manual_seed(6))
             for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*pairs))
    mild, strong = pairs[0]
    assert (mild - x).abs().mean() < (strong - x).abs().mean()


# ------------------------------------------------------------------------------------ augmentation
def test_random_crop_flip_is_per_image_and_seeded():
    batch = torch.arange(4 * 3 * 16 * 16, dtype=torch.int32).reshape(4, 3, 16, 16).to(torch.uint8)
    a = random_crop_flip(batch, 8, torch.Generator().manual_seed(0))
    b = random_crop_flip(batch, 8, torch.Generator().manual_seed(0))
    assert a.shape == (4, 3, 8, 8) and a.dtype == torch.uint8 and (a == b).all()
    same = batch[:1].repeat(8, 1, 1, 1)
    crops = random_crop_flip(same, 8, torch.Generator().manual_seed(1), hflip=False)
    assert len({tuple(c[0, 0, :2].tolist()) for c in crops}) > 1  # different windows within one batch
    full = random_crop_flip(batch, 16, torch.Generator().manual_seed(2))
    assert all((f == x).all() or (f == x.flip(-1)).all() for f, x in zip(full, batch))
    assert (random_crop_flip(batch, 16, torch.Generator(), hflip=False) == batch).all()
    with pytest.raises(ValueError, match="crop 17"):
        random_crop_flip(batch, 17, torch.Generator())


def test_crop_views_and_model_input():
    batch = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert [len(crop_views(batch, 8, k)) for k in (1, 5, 10)] == [1, 5, 10]
    views = crop_views(batch, 8, 10)
    assert (views[0] == batch[..., 4:12, 4:12]).all() and (views[1] == batch[..., :8, :8]).all()
    assert (views[4] == batch[..., 8:, 8:]).all() and (views[5] == views[0].flip(-1)).all()
    with pytest.raises(ValueError, match="n_views"):
        crop_views(batch, 8, 3)
    x = to_model_input(batch, channels_last=True)
    assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(x, batch.float() / 255)


# ----------------------------------------------------------------------------------------- trainer
def test_lr_schedule_warms_up_then_decays_to_zero():
    lrs = [lr_factor(s, 10, 100) for s in range(101)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0, abs=0.02)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])) and lrs[100] == pytest.approx(0.0, abs=1e-12)


def test_config_round_trip_and_validation():
    cfg = TrainConfig(epochs=3, loss_weights={"mse": 1.0, "rank": 0.5}, crop=24, time_budget_s=9.5)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown TrainConfig field.*epochz"):
        TrainConfig.from_dict({"epochz": 3})
    with pytest.raises(ValueError, match="eval_views"):
        TrainConfig(eval_views=3).validate()


def test_trainer_learns_and_sets_target_buffers(sets):
    train, val = (first_target(s) for s in sets)
    model = TinyIQA()
    assert 1000 < sum(p.numel() for p in model.parameters()) < 5000
    cfg = TrainConfig(epochs=6, lr=3e-3, crop=28, loss_weights={"mse": 1.0, "rank": 1.0}, eval_views=5)
    result = train_model(model, train, val, cfg)
    srcc = [r.metrics["srcc"] for r in result.history]
    assert srcc[-1] > 0.6 and srcc[-1] > srcc[0] + 0.2, srcc
    assert result.epochs_run == 6 and not result.stopped_early and result.metrics == result.history[-1].metrics
    assert set(result.metrics) >= {"plcc", "srcc", "krcc", "rmse", "plcc_fit", "rmse_fit", "corr_score"}
    assert all(r.images_per_s > 0 and r.skipped_steps == 0 for r in result.history)
    assert [r.seconds for r in result.history] == sorted(r.seconds for r in result.history)
    assert model.target_mean.item() == pytest.approx(train.targets.mean().item(), abs=1e-4)
    assert model.target_std.item() == pytest.approx(train.targets.std(unbiased=False).item(), abs=1e-4)
    pred = predict(model, val.images, crop=28, views=5)
    assert pred.shape == (len(val), 1) and abs(pred.mean() - val.targets.mean().item()) < 1  # MOS units
    assert evaluate(model, val, crop=28, views=5)["mos"]["srcc"] == pytest.approx(srcc[-1])


def test_same_seed_same_history_and_both_stops(sets):
    train, val = sets
    small = train.subset(np.arange(64))
    cfg = TrainConfig(epochs=3, batch_size=16, seed=7)

    def history():
        return [(r.train_loss, r.metrics) for r in train_model(TinyIQA(outputs=2), small, val, cfg).history]

    assert history() == history()
    seen: list[EpochRecord] = []
    stopped = train_model(TinyIQA(outputs=2), small, val, cfg, on_epoch=lambda r: seen.append(r) or r.epoch == 1)
    assert stopped.stopped_early and stopped.epochs_run == 1 and seen == stopped.history
    timed = train_model(TinyIQA(outputs=2), small, None, TrainConfig(epochs=200, batch_size=16, time_budget_s=0.05))
    assert timed.epochs_run < 200 and timed.metrics == {} and not timed.stopped_early


def test_several_targets_and_a_model_without_target_buffers(sets):
    train, val = sets
    two = TinyIQA(outputs=2)
    result = train_model(two, train.subset(np.arange(64)), val, TrainConfig(epochs=1, batch_size=16))
    assert set(result.target_metrics) == {"mos", "bright"} and result.metrics == result.target_metrics["mos"]
    assert two.target_mean[1].item() == pytest.approx(train.targets[:64, 1].mean().item(), rel=1e-5)
    plain = train_model(Plain(outputs=2), train.subset(np.arange(64)), val, TrainConfig(epochs=2, batch_size=16))
    assert plain.epochs_run == 2 and np.isfinite(plain.history[-1].train_loss)


class NaNOnce(TinyIQA):
    """Returns NaN on the given forward calls (counted from 0) and is a TinyIQA otherwise."""

    def __init__(self, bad_calls):
        super().__init__()
        self.calls, self.bad_calls = 0, bad_calls

    def forward(self, x):
        out = super().forward(x)
        self.calls += 1
        return out * float("nan") if self.calls - 1 in self.bad_calls else out


def test_non_finite_steps_are_skipped_and_divergence_raises(sets):
    train, val = (first_target(s) for s in sets)
    small = train.subset(np.arange(64))
    model = NaNOnce(bad_calls={1})
    result = train_model(model, small, val, TrainConfig(epochs=2, batch_size=16))
    assert [r.skipped_steps for r in result.history] == [1, 0]
    assert all(torch.isfinite(p).all() for p in model.parameters())
    with pytest.raises(TrainingDiverged, match="every step of epoch 1"):
        train_model(NaNOnce(bad_calls=set(range(100))), small, None, TrainConfig(epochs=2, batch_size=16))


def test_pretraining_without_labels_learns_the_quality_order(sets):
    """Ranking clean crops above noised copies of themselves, with no MOS seen, orders unseen images by
    their MOS (here MOS falls with noise): the self-supervised signal is real."""
    train, val = (first_target(s) for s in sets)
    cfg = TrainConfig(pretrain_epochs=4, pretrain_distortions=["noise"], crop=28, lr=3e-3)
    untrained, pretrained = TinyIQA(), TinyIQA()
    seconds = pretrain(pretrained, train.images, cfg)
    assert seconds > 0 and not pretrained.training
    mos = val.targets[:, 0].numpy()
    assert abs(spearmanr(predict(untrained, val.images)[:, 0], mos).statistic) < 0.3
    assert spearmanr(predict(pretrained, val.images)[:, 0], mos).statistic > 0.5


def test_pretraining_runs_before_the_mos_epochs_within_the_budget(sets):
    train, val = (first_target(s) for s in sets)
    small = train.subset(np.arange(64))
    cfg = TrainConfig(epochs=2, batch_size=16, pretrain_epochs=2, seed=4)

    def run():
        model = TinyIQA()
        return model, train_model(model, small, val, TrainConfig.from_dict(cfg.to_dict()))

    (a, first), (b, second) = run(), run()
    assert [r.metrics for r in first.history] == [r.metrics for r in second.history]
    assert torch.equal(a.head.weight, b.head.weight)
    plain = TinyIQA()
    train_model(plain, small, val, TrainConfig(epochs=2, batch_size=16, seed=4))
    assert not torch.equal(plain.head.weight, a.head.weight)  # pretraining changed the start of MOS training
    # pretraining seconds count towards the time budget: none is left for MOS epochs beyond the first step
    timed = train_model(TinyIQA(), small, None, TrainConfig(epochs=50, batch_size=16, pretrain_epochs=500,
                                                            time_budget_s=0.05))
    assert timed.epochs_run == 1 and timed.seconds >= 0.05
    with pytest.raises(ValueError, match="pretrain_distortions.*choose from blur"):
        TrainConfig(pretrain_distortions=["jpeg"]).validate()


class BrightnessTeacher(nn.Module):
    """A fixed 'teacher' that scores brightness on the MOS range, not the noise the labels follow."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1 + 4 * x.mean((1, 2, 3))[:, None]


def test_distillation_pulls_the_student_towards_its_teacher(sets):
    train, val = (first_target(s) for s in sets)
    brightness = val.images.float().mean((1, 2, 3)).numpy()
    cfg = TrainConfig(epochs=4, lr=3e-3, crop=28, seed=1)

    def follows_teacher(distill_weight: float) -> float:
        student = TinyIQA()
        teacher = BrightnessTeacher() if distill_weight else None
        train_model(student, train, None, TrainConfig.from_dict({**cfg.to_dict(), "distill_weight": distill_weight}),
                    teacher=teacher)
        return spearmanr(predict(student, val.images, crop=28)[:, 0], brightness).statistic

    alone, distilled = follows_teacher(0.0), follows_teacher(5.0)
    assert distilled > 0.6 and distilled > alone + 0.3, (alone, distilled)
    with pytest.raises(ValueError, match="distillation needs both or neither"):
        train_model(TinyIQA(), train, None, TrainConfig(epochs=1, distill_weight=1.0))


def test_weight_average_is_what_is_scored_and_kept(sets):
    train, val = sets
    small = train.subset(np.arange(64))
    plain, averaged = TinyIQA(outputs=2), TinyIQA(outputs=2)
    cfg = TrainConfig(epochs=3, batch_size=16, seed=3)
    train_model(plain, small, val, cfg)
    result = train_model(averaged, small, val, TrainConfig(epochs=3, batch_size=16, seed=3, ema_decay=0.9))
    # same seed and steps: only the averaging differs, and the kept weights are the average's
    assert not torch.equal(plain.head.weight, averaged.head.weight)
    assert evaluate(averaged, val)["mos"] == pytest.approx(result.metrics, abs=1e-6)
    with pytest.raises(ValueError, match="ema_decay"):
        TrainConfig(ema_decay=1.0).validate()

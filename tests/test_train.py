"""Losses, device-side augmentation and the budgeted trainer on tiny models and the synthetic set."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from search.augment import crop_views, random_crop_flip, to_model_input
from search.data import grouped_holdout, make_synthetic
from search.losses import make_loss, plcc_loss, rank_loss
from search.train import TrainConfig, predict, train_model
from space import ArchSpec, HeadSpec, InputSpec, StageSpec, StemSpec, build_model


@pytest.fixture(scope="module")
def synthetic():
    data = make_synthetic(n_images=1200, size=32, seed=0)
    train, val = grouped_holdout(data.groups, 0.2, seed=0)
    return data.subset(train), data.subset(val)


def small_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(ArchSpec(InputSpec(32, 32), StemSpec("conv", 16, 3),
                                [StageSpec("mbconv", 24, 1, 1, 3, 3.0, True), StageSpec("residual", 32, 1, 2, 3),
                                 StageSpec("convnext", 48, 1, 2, 3, 3.0)], HeadSpec("avgstd", 2)))


class Plain(nn.Module):
    """A model without target buffers: trained on raw targets."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                 nn.Flatten(), nn.Linear(8, 1))

    def forward(self, x):
        return self.net(x)


def test_losses_zero_at_perfect_order_and_finite_for_one_sample():
    t = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    assert plcc_loss(t * 3 + 1, t) < 1e-6 and plcc_loss(-t, t) > 0.99
    assert rank_loss(t * 100, t) < 0.01 and rank_loss(-t * 100, t) > 10
    one = torch.randn(1, 1, requires_grad=True)
    loss = make_loss({"mse": 1.0, "plcc": 1.0, "rank": 1.0})(one, torch.zeros(1, 1))
    assert torch.isfinite(loss)
    loss.backward()
    with pytest.raises(ValueError, match="unknown loss.*huber"):
        make_loss({"huber": 1.0})


def test_random_crop_flip_is_per_image_and_seeded():
    batch = torch.arange(4 * 3 * 16 * 16, dtype=torch.int32).reshape(4, 3, 16, 16).to(torch.uint8)
    a = random_crop_flip(batch, 8, torch.Generator().manual_seed(0))
    b = random_crop_flip(batch, 8, torch.Generator().manual_seed(0))
    assert a.shape == (4, 3, 8, 8) and a.dtype == torch.uint8 and (a == b).all()
    offsets = {tuple(random_crop_flip(batch[:1].repeat(8, 1, 1, 1), 8, torch.Generator().manual_seed(1))[i, 0, 0, :2].tolist())
               for i in range(8)}
    assert len(offsets) > 1  # different windows within one batch
    full = random_crop_flip(batch, 16, torch.Generator().manual_seed(2))
    assert all((f == x).all() or (f == x.flip(-1)).all() for f, x in zip(full, batch))
    views = crop_views(batch, 8, 10)
    assert len(views) == 10 and (views[0] == batch[..., 4:12, 4:12]).all() and (views[5] == views[0].flip(-1)).all()
    assert to_model_input(batch).max() <= 1.0


def test_trainer_learns_synthetic_quality(synthetic):
    train, val = synthetic
    model = small_model()
    result = train_model(model, train, val, TrainConfig(epochs=10, lr=3e-3, loss_weights={"mse": 1.0, "rank": 1.0}))
    srcc = [r.metrics["srcc"] for r in result.history]
    assert srcc[-1] > 0.6 and srcc[-1] > srcc[0] + 0.2, srcc
    assert model.target_mean.item() == pytest.approx(train.targets.mean().item(), abs=1e-5)
    pred = predict(model, val.images)
    assert pred.shape == (len(val), 1) and abs(pred.mean() - val.targets.mean().item()) < 0.5  # in MOS units


def test_same_seed_same_history_and_stops(synthetic):
    train, val = synthetic
    small = train.subset(np.arange(96))
    cfg = TrainConfig(epochs=3, batch_size=16, seed=7)
    h1 = [(r.train_loss, r.metrics["srcc"]) for r in train_model(small_model(), small, val, cfg).history]
    h2 = [(r.train_loss, r.metrics["srcc"]) for r in train_model(small_model(), small, val, cfg).history]
    assert h1 == h2
    stopped = train_model(small_model(), small, val, cfg, on_epoch=lambda r: r.epoch == 1)
    assert stopped.stopped_early and stopped.epochs_run == 1
    timed = train_model(small_model(), small, None, TrainConfig(epochs=50, batch_size=16, time_budget_s=0.05))
    assert timed.epochs_run < 50 and timed.metrics == {} and not timed.stopped_early


def test_model_without_target_buffers_trains_on_raw_targets(synthetic):
    train, val = synthetic
    result = train_model(Plain(), train.subset(np.arange(64)), val, TrainConfig(epochs=2, batch_size=16))
    assert result.epochs_run == 2 and np.isfinite(result.history[-1].train_loss)

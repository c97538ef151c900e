"""The T4 path on the CPU: precision by compute capability, fp16 autocast with real loss scaling, the
deadline-aware planner, memory checks, and a whole submission run that ends before its deadline."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import torch

import search.memory
import search.train.step
from notebook_run import write_labelled_pngs
from search.data import make_synthetic
from search.metrics import srcc
from search.train.recipe import Recipe
from search.train.retrain import StepCosts, plan_retrain
from search.train.recipe import TrainConfig
from search.train.step import Stepper, resolve_precision
from search.train.loop import predict, seed_everything, train_model
from space import ArchSpec, HeadSpec, InputSpec, StageSpec, StemSpec, build_model
from results.submission import Submission, run_submission

CPU = torch.device("cpu")


def small_spec(size: int = 32, crop: int = 32) -> ArchSpec:
    return ArchSpec(InputSpec(size, crop, False), StemSpec("conv", 8, 3),
                    [StageSpec("mbconv", 16, 1, 2, 3), StageSpec("residual", 24, 1, 2, 3)], HeadSpec("avgstd", 2),
                    num_outputs=1)


@pytest.fixture(scope="module")
def split():
    data = make_synthetic(n_images=240, size=32, seed=1)
    return data.subset(np.arange(180)), data.subset(np.arange(180, 240))


@pytest.mark.parametrize("capability, dtype", [((7, 5), torch.float16), ((8, 0), torch.bfloat16),
                                               ((9, 0), torch.bfloat16)])
def test_precision_follows_compute_capability(capability, dtype):
    assert resolve_precision("auto", torch.device("cuda"), capability) == dtype


def test_precision_on_the_cpu_and_by_name():
    assert resolve_precision("auto", CPU) is None  # fp32 on a CPU unless asked
    assert (resolve_precision("fp16", CPU) == torch.float16
            and resolve_precision("fp32", torch.device("cuda"), (9, 0)) is None)
    with pytest.raises(ValueError, match="precision 'fp8'"):
        resolve_precision("fp8", CPU)
    assert TrainConfig.from_dict({"amp": False}).precision == "fp32"  # recipes stored before `precision`
    assert TrainConfig.from_dict({"amp": True}).precision == "auto"


def _train(split, precision: str, epochs: int = 6):
    train, val = split
    seed_everything(0)
    model = build_model(small_spec())
    result = train_model(model, train, val, TrainConfig(epochs=epochs, batch_size=16, seed=3, precision=precision),
                         device=CPU)
    return model, result


def test_fp16_run_trains_and_agrees_with_fp32(split):
    model16, result16 = _train(split, "fp16")
    model32, result32 = _train(split, "fp32")
    losses = [r.train_loss for r in result16.history]
    assert losses[-1] < 0.8 * losses[0]
    assert result16.metrics["srcc"] > 0.2  # the synthetic set's MOS is learnable in a few epochs
    val = split[1].images
    a, b = predict(model16, val, precision="fp16")[:, 0], predict(model32, val, precision="fp32")[:, 0]
    # Same seed, same batches: fp16 rounding only. Stated tolerance: predictions within 0.15 MOS units
    # (the set's MOS sd is ~1) and ranked alike.
    assert np.abs(a - b).max() < 0.15 and srcc(a, b) > 0.9


def test_overflowing_fp16_step_is_skipped_and_the_scale_backs_off():
    seed_everything(0)
    model = build_model(small_spec())
    stepper = Stepper(model, TrainConfig(precision="fp16", grad_clip=None), 10, 0, CPU)
    before = [p.detach().clone() for p in model.parameters()]
    scale = stepper.scaler.get_scale()
    x = torch.rand(4, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.float16):
        loss = model(x).float().mean() * 1e36  # finite in fp32, infinite once scaled by 65536
    assert bool(stepper(loss))  # the loss is finite: not a divergence, an overflow of the scaled gradients
    assert int(stepper.overflows) == 1 and stepper.scaler.get_scale() == scale / 2
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters()))
    for _ in range(20):  # an ordinary loss: the scale keeps backing off until a step goes through
        with torch.autocast("cpu", dtype=torch.float16):
            loss = (model(x).float() - 3).pow(2).mean()
        scale, overflows = stepper.scaler.get_scale(), int(stepper.overflows)
        stepper(loss)
        if int(stepper.overflows) == overflows:
            break
        assert stepper.scaler.get_scale() == scale / 2
    assert not all(torch.equal(p, q) for p, q in zip(before, model.parameters()))


def test_set_kept_on_the_host_when_the_device_cannot_hold_it(split, monkeypatch):
    model_a, resident = _train(split, "fp32", epochs=2)
    monkeypatch.setattr(search.train.step, "fits_on_device", lambda nbytes, device: False)
    model_b, on_host = _train(split, "fp32", epochs=2)
    assert resident.resident and not on_host.resident
    val = split[1].images
    assert np.array_equal(predict(model_a, val), predict(model_b, val))


def test_host_memory_check_names_the_numbers_and_a_size_that_fits(monkeypatch):
    monkeypatch.setattr(search.memory, "host_available_bytes", lambda: 16 * 2**30)
    search.memory.check_host_memory(14_000, 384)  # 5.8 GiB: fits
    with pytest.raises(MemoryError, match=r"20,000 images at 512 px need 14.6 GiB.*16.0 GiB.*at most 478 px"):
        search.memory.check_host_memory(20_000, 512)


def _costs(step: float, pre: float = 0.0) -> StepCosts:
    return StepCosts(step, pre, 0.0, 0.0, 0.001, "measured on a test")


def test_planner_fits_the_most_epochs_within_the_budget():
    recipe = Recipe(small_spec(), TrainConfig(batch_size=10, pretrain_epochs=2))
    plan = plan_retrain(recipe, 100, 50, _costs(0.1, 0.3), budget_s=60.0, wanted_epochs=500)
    # 10 steps per epoch: 1 s per MOS epoch, 3 s per pretraining epoch, 0.05 s scoring
    assert plan.epochs == 53 and plan.pretrain_epochs == 2 and plan.seconds <= 60.0
    assert plan_retrain(recipe, 100, 50, _costs(0.1, 0.3), 60.0, wanted_epochs=20).epochs == 20
    short = plan_retrain(recipe, 100, 50, _costs(0.1, 0.3), budget_s=5.0, wanted_epochs=500)
    assert short.pretrain_epochs == 0 and short.epochs == 4  # pretraining dropped when it leaves no room
    with pytest.raises(ValueError, match="over the budget"):
        plan_retrain(recipe, 100, 50, _costs(0.1, 0.3), budget_s=0.5, wanted_epochs=500)
    assert "53 epochs fit" in plan.describe()


def _folder(tmp_path, n: int = 40, size: int = 40) -> None:
    """The labelled PNG set with its labels as train.csv, and half of them as test.csv."""
    labels = pd.read_csv(write_labelled_pngs(tmp_path, n_images=n, size=size, seed=4))
    labels.to_csv(tmp_path / "train.csv", index=False)
    labels.iloc[: n // 2].to_csv(tmp_path / "test.csv", index=False)  # half the test images have labels


def test_submission_ends_within_its_deadline_and_writes_its_files(tmp_path):
    _folder(tmp_path)
    recipe = Recipe(small_spec(40, 32), TrainConfig(batch_size=8, precision="fp16"))
    lines: list[str] = []
    deadline = 25.0
    start = time.time()
    out = run_submission(Submission(
        team="T", date="20261123", train_images=str(tmp_path / "imgs"), train_labels=str(tmp_path / "train.csv"),
        test_images=str(tmp_path / "imgs"), test_labels=str(tmp_path / "test.csv"), out_dir=str(tmp_path),
        recipe=recipe.to_dict(), epochs="fill", deadline_s=deadline, start=start, precision="fp16"), log=lines.append)
    assert time.time() - start < deadline + 3  # a small margin for the interpreter's own work
    assert out["weights"].is_file() and (out["weights"].stat().st_mode & 0o777) == 0o644
    preds = pd.read_csv(out["predictions"])
    assert len(preds) == 40 and preds["score"].notna().all()  # every test image, labelled or not
    assert any("epochs fit" in line and "expected end" in line for line in lines)
    assert any("20 test image(s) have no row" in line for line in lines)


def test_plan_only_measures_and_stops_before_training(tmp_path):
    _folder(tmp_path, n=16)
    recipe = Recipe(small_spec(40, 32), TrainConfig(batch_size=8))
    lines: list[str] = []
    out = run_submission(Submission(
        team="T", date="20261123", train_images=str(tmp_path / "imgs"), train_labels=str(tmp_path / "train.csv"),
        test_images=str(tmp_path / "imgs"), out_dir=str(tmp_path), recipe=recipe.to_dict(), epochs=50,
        deadline_s=600, plan_only=True), log=lines.append)
    assert out["plan"].epochs == 50 and "measured on this CPU" in out["plan"].costs.source
    assert any("50 epochs fit" in line for line in lines)
    assert not list(tmp_path.glob("*.pth")) and not (tmp_path / "predictions.csv").exists()

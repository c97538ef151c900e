"""Shared fixtures: one tiny finished study on the synthetic set, made once per test session, one thread
for modules of tiny models, and counts measured on built models (what the analytic counts and the caps
are checked against)."""
from __future__ import annotations

from typing import Callable

import pytest
import torch
from torch import nn

from search.study import StudyConfig, run_search
from space import ArchSpec, build_model
from space.layers.attention import TokenAttention
from space.layers.conv import MSCN


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and the test machine's cores are shared: restored after
    (a module takes it with `pytestmark = pytest.mark.usefixtures("one_thread")`)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory):
    """(study, config, run_dir) of a 3-trial study of tiny models on 64 px synthetic images."""
    root = tmp_path_factory.mktemp("tiny-study")
    cfg = StudyConfig(space="tiny", n_synthetic=240, max_epochs=3, trial_budget_s=1000.0, early_stop=False,
                      device="cpu", cache_dir=str(root / "cache"))
    run_dir = root / "runs" / "tiny"
    study = run_search(cfg, "tiny", 3, run_dir, progress=False)
    return study, cfg, run_dir


def _part(module_name: str) -> str:
    """The `space.part_costs` part a module of an `IQANet` belongs to, by its qualified name."""
    if module_name.startswith("stem"):
        return "stem"
    if module_name.startswith("stages."):
        return f"stage {int(module_name.split('.')[1]) + 1}"
    return "head"


def _measured_part_flops(model: nn.Module, size: int, train: bool = False) -> dict[str, int]:
    """Multiply-adds of one forward pass on one `size` px image, per part of the model, counted by hooks
    on the layers that run (in training mode: a patch model's training patches; BatchNorm kept in eval
    mode, which costs the same)."""
    totals: dict[str, int] = {}

    def hook(part: str, count: Callable[[nn.Module, torch.Tensor, torch.Tensor], int]):
        def add(m, inp, out):
            totals[part] = totals.get(part, 0) + count(m, inp[0], out)
        return add

    counts = {
        nn.Conv2d: lambda m, x, y: y.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1],
        nn.Linear: lambda m, x, y: x.numel() // m.in_features * m.in_features * m.out_features,
        TokenAttention: lambda m, x, y: x.shape[0] * 2 * (x.shape[2] * x.shape[3]) ** 2 * (x.shape[1] // 3),
        # separable blurs of Y and Y^2: two passes of the window's taps per pixel each
        MSCN: lambda m, x, y: x.shape[0] * 2 * 2 * m.window.numel() * x.shape[-2] * x.shape[-1],
    }
    for name, m in model.named_modules():
        if type(m) in counts:
            m.register_forward_hook(hook(_part(name), counts[type(m)]))
    model.train(train)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    with torch.no_grad():
        model(torch.rand(1, 3, size, size))
    return totals


@pytest.fixture(scope="session")
def measured_flops() -> Callable[..., dict[str, int]]:
    """`measured_flops(model, size, train=False)`: a built model's FLOPs on one image, per part."""
    return _measured_part_flops


@pytest.fixture(scope="session")
def built_params() -> Callable[[ArchSpec], int]:
    """`built_params(spec)`: the parameter tensors' size of `build_model(spec)` (on the meta device)."""
    def count(spec: ArchSpec) -> int:
        with torch.device("meta"):
            return sum(p.numel() for p in build_model(spec).parameters())
    return count

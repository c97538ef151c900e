"""Device choice and the default number of concurrent trials."""
import pytest
import torch

from search import device as dev


def test_cpu_runs_one_worker_on_its_own_device():
    assert dev.default_workers("cpu") == 1
    assert dev.worker_device("cpu", 5) == "cpu"


@pytest.fixture
def three_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.setattr(dev.os, "cpu_count", lambda: 64)


def test_gpus_get_trials_per_gpu_each_and_workers_go_round_robin(three_gpus):
    assert dev.default_workers("auto") == 3 * dev.TRIALS_PER_GPU
    assert dev.default_workers("cuda:1") == dev.TRIALS_PER_GPU
    assert [dev.worker_device("auto", i) for i in range(4)] == ["cuda:0", "cuda:1", "cuda:2", "cuda:0"]
    assert dev.worker_device("cuda:2", 4) == "cuda:2"


def test_workers_never_outnumber_cpu_cores(three_gpus, monkeypatch):
    monkeypatch.setattr(dev.os, "cpu_count", lambda: 2)
    assert dev.default_workers("cuda") == 2

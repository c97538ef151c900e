"""Choosing the compute device, and how many trials share it."""
from __future__ import annotations

import os

import torch

TRIALS_PER_GPU = 4
"""Concurrent trials per GPU when `--workers` is not given. Small models are bound by per-step launch
overhead, not by the GPU, so several trials in separate processes fill it: on an H100 the aggregate
training throughput of the 1M reference model rose up to 4 concurrent trials and no further
(bench/throughput.py, bench/NOTES.md)."""


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA when present, else CPU; anything else is passed to `torch.device`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available on this machine")
    return device


def default_workers(name: str = "auto") -> int:
    """Worker processes for a study on this machine: `TRIALS_PER_GPU` per visible GPU (at most one per
    CPU core) when the device is CUDA, else 1 (on a CPU, parallel trials only split the cores)."""
    device = resolve_device(name)
    if device.type != "cuda":
        return 1
    gpus = 1 if device.index is not None else torch.cuda.device_count()
    return max(1, min(TRIALS_PER_GPU * gpus, os.cpu_count() or 1))


def worker_device(name: str, index: int) -> str:
    """The device of worker `index`: with several GPUs and no index given, workers go round-robin
    over them; otherwise every worker uses `name`."""
    device = resolve_device(name)
    if device.type == "cuda" and device.index is None and torch.cuda.device_count() > 1:
        return f"cuda:{index % torch.cuda.device_count()}"
    return name

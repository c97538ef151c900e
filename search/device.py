"""Choosing the compute device, and how many trials share it."""
from __future__ import annotations

import os

import torch

TRIALS_PER_GPU = 4
"""Concurrent trials per GPU when `--workers` is not given. Small models are bound by per-step launch
overhead, not by the GPU, so several trials in separate processes fill it: on an H100 the aggregate
training throughput of the 1M reference model rose up to 4 concurrent trials and no further
(bench/throughput.py, bench/NOTES.md)."""


DEVICES = "auto, cpu, cuda or cuda:N"
"""The device names `resolve_device` takes, as the command line's help and errors say them."""


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA when present, else CPU; `cpu`, `cuda` and `cuda:N` are checked against this
    machine. ValueError naming `name` for anything else (torch's own error is a long RuntimeError)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"device {name!r} is not a device: give {DEVICES}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} requested but this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def most_workers(name: str = "auto") -> int:
    """The most worker processes that help on this machine: one per CPU core, and on CUDA at most
    `TRIALS_PER_GPU` per GPU used (more only queue for the same cores or GPUs)."""
    device, cores = resolve_device(name), os.cpu_count() or 1
    if device.type != "cuda":
        return cores
    gpus = 1 if device.index is not None else torch.cuda.device_count()
    return max(1, min(TRIALS_PER_GPU * gpus, cores))


def default_workers(name: str = "auto") -> int:
    """Worker processes for a study on this machine: `most_workers` on CUDA (`TRIALS_PER_GPU` per visible
    GPU, at most one per CPU core), else 1 (on a CPU, parallel trials only split the cores)."""
    return most_workers(name) if resolve_device(name).type == "cuda" else 1


def worker_count(requested: int | None, name: str = "auto") -> tuple[int, str | None]:
    """The workers to run for `--workers requested` (None: `default_workers`), capped at `most_workers`,
    and the message that says so when it was capped."""
    if requested is None:
        return default_workers(name), None
    most = most_workers(name)
    if requested <= most:
        return requested, None
    where = "CPU core" if resolve_device(name).type != "cuda" else f"CPU core and {TRIALS_PER_GPU} per GPU"
    return most, f"--workers {requested} capped at {most} (at most one per {where} on this machine)"


def worker_device(name: str, index: int) -> str:
    """The device of worker `index`: with several GPUs and no index given, workers go round-robin
    over them; otherwise every worker uses `name`."""
    device = resolve_device(name)
    if device.type == "cuda" and device.index is None and torch.cuda.device_count() > 1:
        return f"cuda:{index % torch.cuda.device_count()}"
    return name

"""Will the image set fit? Host RAM and device memory, checked before anything is decoded or moved.

The trainer keeps a uint8 image set resident on the GPU when it fits in a share of the free device
memory, and otherwise keeps it on the host and copies one batch at a time; decoding refuses a set that
host RAM cannot hold, naming the numbers and the largest resolution that would fit.
"""
from __future__ import annotations

import math
import os

import torch

RESIDENT_SHARE = 0.5
"""Largest share of the free device memory an image set may take; the rest is for the model's
activations and, with several trials per GPU, for the other processes."""
HOST_SHARE = 0.8
"""Largest share of the available host RAM a decoded set may take."""


def host_available_bytes() -> int:
    """RAM available to new allocations (Linux `MemAvailable`; elsewhere free physical pages)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def device_free_bytes(device: torch.device) -> int:
    """Free memory on `device`: the GPU's (`torch.cuda.mem_get_info`), or the host's for a CPU."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return host_available_bytes()


def fits_on_device(nbytes: int, device: torch.device) -> bool:
    """True when a set of `nbytes` may live on `device` (always on a CPU: it is in host memory already)."""
    return device.type != "cuda" or nbytes <= RESIDENT_SHARE * device_free_bytes(device)


def image_set_bytes(n_images: int, size: int) -> int:
    """Bytes of `n_images` uint8 RGB images of `size` x `size`."""
    return n_images * 3 * size * size


def check_host_memory(n_images: int, size: int, what: str = "images") -> None:
    """Raise MemoryError, naming the numbers and the largest resolution that fits, when `n_images`
    decoded at `size` px would take more than `HOST_SHARE` of the available RAM."""
    need, available = image_set_bytes(n_images, size), host_available_bytes()
    if need > HOST_SHARE * available:
        fit = math.isqrt(int(HOST_SHARE * available / max(1, 3 * n_images)))
        raise MemoryError(f"{n_images:,} {what} at {size} px need {need / 2**30:.1f} GiB, over {HOST_SHARE:.0%} of the "
                          f"{available / 2**30:.1f} GiB of RAM available: use at most {fit} px, or fewer images")

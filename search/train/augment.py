"""Device-side augmentation on uint8 batches: images are never re-decoded, crops and flips happen
where the batch already is (the GPU when there is one)."""
from __future__ import annotations

import torch
from torch import nn

from space.layers.conv import unit_float


def random_crop_flip(batch: torch.Tensor, crop: int, generator: torch.Generator | None = None,
                     hflip: bool = True) -> torch.Tensor:
    """A random `crop` x `crop` window per image (and, with `hflip`, a random horizontal flip), as one
    gather on the batch's device: offsets differ per image and come from `generator` (on any device)."""
    n, c, h, w = batch.shape
    if not 1 <= crop <= min(h, w):
        raise ValueError(f"crop {crop} must lie in [1, {min(h, w)}] for {h}x{w} images")
    dev = batch.device
    gen_dev = generator.device if generator is not None else torch.device("cpu")
    top = torch.randint(0, h - crop + 1, (n,), generator=generator, device=gen_dev).to(dev)
    left = torch.randint(0, w - crop + 1, (n,), generator=generator, device=gen_dev).to(dev)
    flip = torch.rand(n, generator=generator, device=gen_dev).to(dev) < 0.5 if hflip else None
    if crop == h == w:  # the whole image (e.g. a patch model's input): flips without a gather
        return batch if flip is None else torch.where(flip[:, None, None, None], batch.flip(-1), batch)
    ar = torch.arange(crop, device=dev)
    rows = (top[:, None] + ar[None, :])  # [n, crop]
    cols = (left[:, None] + ar[None, :])
    if flip is not None:
        cols = torch.where(flip[:, None], cols.flip(1), cols)
    idx_n = torch.arange(n, device=dev)[:, None, None, None]
    idx_c = torch.arange(c, device=dev)[None, :, None, None]
    return batch[idx_n, idx_c, rows[:, None, :, None], cols[:, None, None, :]]


def crop_views(batch: torch.Tensor, crop: int, n_views: int = 1) -> list[torch.Tensor]:
    """Deterministic evaluation views: 1 = centre, 5 = centre + 4 corners, 10 = those and their flips."""
    if n_views not in (1, 5, 10):
        raise ValueError(f"n_views must be 1, 5 or 10, got {n_views}")
    h, w = batch.shape[-2:]
    if not 1 <= crop <= min(h, w):
        raise ValueError(f"crop {crop} must lie in [1, {min(h, w)}] for {h}x{w} images")
    top, left = (h - crop) // 2, (w - crop) // 2
    offsets = [(top, left)] + ([(0, 0), (0, w - crop), (h - crop, 0), (h - crop, w - crop)] if n_views >= 5 else [])
    views = [batch[..., y:y + crop, x:x + crop] for y, x in offsets]
    if n_views == 10:
        views += [v.flip(-1) for v in views]
    return views


def to_model_input(batch: torch.Tensor, channels_last: bool = False, model: nn.Module | None = None) -> torch.Tensor:
    """uint8 [N,3,H,W] -> float32 in [0, 1] (the models' input convention); kept uint8 for a `model` that
    `takes_uint8` (it cuts patches or fragments first and converts those)."""
    x = batch if getattr(model, "takes_uint8", False) else unit_float(batch)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x

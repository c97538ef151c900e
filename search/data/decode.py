"""Image files: listing a folder's images and decoding one to the models' input layout (what the
cache, the loaders and the notebook share)."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
BAR_DELAY_S = 2.0
"""The decoding bar shows once decoding has taken this long: a long decode is seen, a quick one (or a refusal
right after it) stays out of the output."""


def list_images(folder: str | Path) -> list[str]:
    """The names of the image files in `folder`, sorted; an error naming the folder when it is missing
    or holds none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    names = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not names:
        raise ValueError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return names


def _rgb(img: Image.Image) -> Image.Image:
    """The image as 8-bit RGB. 16-bit greyscale (PNG mode I;16, or I in older Pillow) is scaled to 8 bits:
    Pillow's own conversion clips it at 255, which turns nearly every pixel white."""
    if img.mode == "I" or img.mode.startswith("I;16"):
        grey = np.asarray(img, dtype=np.float64) / 257.0
        img = Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8), "L")
    return img.convert("RGB")


def decode_image(path: Path, size: int) -> np.ndarray:
    """One image as uint8 [3,size,size]: RGB, short side resized to `size` (antialiased bicubic),
    centre-cropped square. AGIQA images are square already, so nothing is cut from them."""
    try:
        with Image.open(path) as img:
            img = _rgb(img)
            w, h = img.size
            scale = size / min(w, h)
            nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
            img = img.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=3.0)
            left, top = (nw - size) // 2, (nh - size) // 2
            img = img.crop((left, top, left + size, top + size))
            return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"unreadable image {path}: {err}") from None


def decode_all(files: Sequence[Path], size: int, desc: str = "decoding", progress: bool = True,
               threads: int | None = None) -> tuple[np.ndarray, dict[int, str]]:
    """Every image of `files` that decodes, as uint8 [N,3,size,size] (zeros where one does not), and why
    each of the others does not (index -> `decode_image`'s message): a study refuses any unreadable image,
    prediction scores the rest and names them."""
    array = np.zeros((len(files), 3, size, size), dtype=np.uint8)
    unreadable: dict[int, str] = {}

    def decode(path: Path) -> np.ndarray | str:
        try:
            return decode_image(path, size)
        except ValueError as err:
            return str(err)

    with ThreadPoolExecutor(threads or min(8, os.cpu_count() or 1)) as pool:
        decoded = pool.map(decode, files)
        bar = tqdm(decoded, total=len(files), desc=desc, unit="img", disable=not progress, delay=BAR_DELAY_S)
        for i, img in enumerate(bar):
            if isinstance(img, str):
                unreadable[i] = img
            else:
                array[i] = img
    return array, unreadable

"""Training images per second: our trainer against a straightforward reference pipeline, and the
aggregate throughput of several trials sharing one device.

    python bench/throughput.py                    # GPU machine: 320 px, JPEGs written from the synthetic set
    python bench/throughput.py --root DIR         # real images (a folder of JPEGs, e.g. AGIQA-3K images/)
    python bench/throughput.py --quick            # CPU: 64 px, few images, concurrency 1 and 2

Reference: a `Dataset` that decodes each JPEG with PIL, resizes and crops on the CPU, a `DataLoader`
with workers; same model, resolution, batch and device. Ours: images decoded once to uint8, moved to
the device once, cropped and flipped there (search.train.loop).
"""
from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.models import reference_specs  # noqa: E402
from search.train.augment import to_model_input  # noqa: E402
from search.data import decode_images, load_folder, make_synthetic  # noqa: E402
from search.data.decode import decode_image  # noqa: E402
from search.device import resolve_device  # noqa: E402
from search.train.losses import mse_loss  # noqa: E402
from search.train.recipe import TrainConfig  # noqa: E402
from search.train.loop import seed_everything, train_model  # noqa: E402
from space import build_model  # noqa: E402


class JpegDataset(torch.utils.data.Dataset):
    """The reference: decode and resize every image on every access, random crop and flip on the CPU."""

    def __init__(self, files: list[Path], size: int, crop: int):
        self.files, self.size, self.crop = files, size, crop

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        img = torch.from_numpy(decode_image(self.files[i], self.size))
        top, left = np.random.randint(0, self.size - self.crop + 1, 2)
        img = img[:, top:top + self.crop, left:left + self.crop]
        if np.random.rand() < 0.5:
            img = img.flip(-1)
        return img, torch.zeros(1)


def reference_images_per_s(spec, files, batch: int, workers: int, epochs: int, device) -> float:
    model = build_model(spec).to(device)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    loader = torch.utils.data.DataLoader(JpegDataset(files, spec.input.resize, spec.input.crop), batch_size=batch,
                                         shuffle=True, num_workers=workers, drop_last=True,
                                         pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    amp = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
           else torch.autocast("cpu", enabled=False))
    seen, start = 0, None
    for epoch in range(epochs + 1):  # the first epoch warms up (workers, cudnn) and is not timed
        if epoch == 1:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start, seen = time.perf_counter(), 0
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with amp:
                loss = mse_loss(model(to_model_input(x)).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


def ours_images_per_s(spec, data, batch: int, epochs: int, device) -> float:
    seed_everything(0)
    result = train_model(build_model(spec), data, None, TrainConfig(epochs=epochs + 1, batch_size=batch), device)
    first, last = result.history[0], result.history[-1]  # the first epoch warms up and is not timed
    images = sum(r.images_per_s * (r.seconds - p.seconds) for r, p in zip(result.history[1:], result.history))
    return images / (last.seconds - first.seconds)


def _concurrent_worker(spec, data, batch, epochs, device_name, queue) -> None:
    torch.set_num_threads(1)
    device = resolve_device(device_name)
    seed_everything(0)
    model = build_model(spec)
    start = time.time()
    result = train_model(model, data, None, TrainConfig(epochs=epochs, batch_size=batch), device)
    queue.put((len(data) * result.epochs_run, start, time.time()))


def concurrent_images_per_s(spec, data, batch, epochs, device_name, k: int) -> float:
    """Aggregate img/s of `k` training processes, timed from the first start to the last finish of
    training (process start-up and imports excluded)."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_concurrent_worker, args=(spec, data, batch, epochs, device_name, queue))
             for _ in range(k)]
    for p in procs:
        p.start()
    reports = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(r[0] for r in reports) / (max(r[2] for r in reports) - min(r[1] for r in reports))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--root", default=None, help="folder of images (default: JPEGs written from the synthetic set)")
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers of the reference pipeline")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    if args.quick:
        args.size, args.images, args.epochs, args.workers, args.concurrency = 64, 256, 1, 2, [1, 2]
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        if args.root:
            folder = Path(args.root)
        else:
            folder = Path(tmp)
            synth = make_synthetic(n_images=args.images, size=512 if not args.quick else 128, seed=0)
            for name, img in zip(synth.names, synth.images):
                Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{name}.jpg", quality=75)
        table = load_folder(folder)
        files = [folder / n for n in table.frame["image"]][: args.images]
        data = decode_images(table, args.size, Path(tmp) / "cache", progress=False).subset(np.arange(len(files)))
        data = type(data)(data.images, torch.rand(len(data), 1), data.groups, data.names, ["mos"])
        print(f"device {device}, {len(files)} images at {args.size}px, batch {args.batch_size}, "
              f"{args.workers} loader workers, {args.epochs} timed epochs")
        print(f"{'model':>6} {'reference img/s':>16} {'ours img/s':>11} {'ratio':>6}")
        for name, spec in reference_specs(args.size).items():
            ref = reference_images_per_s(spec, files, args.batch_size, args.workers, args.epochs, device)
            ours = ours_images_per_s(spec, data, args.batch_size, args.epochs, device)
            print(f"{name:>6} {ref:>16.1f} {ours:>11.1f} {ours / ref:>6.2f}")
        spec = reference_specs(args.size)["1M"]
        print("\nconcurrent trials of the 1M model on one device (aggregate training img/s):")
        for k in args.concurrency:
            print(f"  {k} trial(s): "
                  f"{concurrent_images_per_s(spec, data, args.batch_size, args.epochs, str(device), k):.1f}")


if __name__ == "__main__":
    main()

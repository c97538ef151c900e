"""Measured training time here against the budget model's T4 estimate, for the reference models.

    python bench/t4_budget.py                 # GPU machine: 320 px, 2,396 images (AGIQA-3K-sized)
    python bench/t4_budget.py --root DIR      # real images (a folder of JPEGs) instead of the synthetic set
    python bench/t4_budget.py --quick         # CPU: 64 px, 128 images

Prints, per model: parameters, FLOPs, measured seconds per epoch here, the T4 estimate per epoch, and
the estimated T4 time of a final retrain (`--epochs`) plus inference, against the export budget. The
ratio measured/estimated is what calibrating `--t4-efficiency` on a T4 would correct.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.models import reference_specs  # noqa: E402
from search.budget import BudgetModel  # noqa: E402
from search.data import decode_images, load_folder, make_synthetic  # noqa: E402
from search.device import resolve_device  # noqa: E402
from search.profiles import get_profile  # noqa: E402
from search.train.recipe import TrainConfig  # noqa: E402
from search.train.loop import seed_everything, train_model  # noqa: E402
from space import build_model, count_flops, count_params  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small CPU run: 64 px, 128 images")
    parser.add_argument("--root", default=None, help="folder of images (default: the synthetic set)")
    parser.add_argument("--cache-dir", default=".cache/images")
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--images", type=int, default=2396)
    parser.add_argument("--epochs", type=int, default=60, help="epochs of the final retrain to estimate")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--t4-efficiency", type=float, default=BudgetModel.efficiency)
    args = parser.parse_args()
    size, n = (64, 128) if args.quick else (args.size, args.images)
    device = resolve_device(args.device)
    budget = BudgetModel(efficiency=args.t4_efficiency)
    limit = get_profile("icme2026-aigc").export_budget_s
    if args.root:
        data = decode_images(load_folder(args.root), size, args.cache_dir, progress=False)
        n = min(n, len(data))
        data = data.subset(range(n))  # timing only: random targets stand in for labels
        data = type(data)(data.images, torch.rand(n, 1), data.groups, data.names, ["mos"])
    else:
        data = make_synthetic(n_images=n, size=size, seed=0)
    print(f"device {device}, {n} images at {size}px, batch {args.batch_size}, T4 efficiency {budget.efficiency}")
    print(f"{'model':>6} {'params':>10} {'GFLOPs':>8} {'here s/ep':>10} {'T4 s/ep':>9} {'ratio':>6} "
          f"{'retrain T4 h':>13} {'fits':>5}")
    for name, spec in reference_specs(size).items():
        seed_everything(0)
        flops = count_flops(spec)
        result = train_model(build_model(spec), data, None, TrainConfig(epochs=2, batch_size=args.batch_size), device)
        here = result.history[-1].seconds - result.history[0].seconds  # the second epoch: warm
        t4 = budget.epoch_seconds(flops, n, args.batch_size)
        total = budget.train_seconds(flops, n, args.epochs, args.batch_size) + budget.infer_seconds(flops, n)
        print(f"{name:>6} {count_params(spec):>10,} {flops / 1e9:>8.3f} {here:>10.2f} {t4:>9.2f} {here / t4:>6.2f} "
              f"{total / 3600:>13.2f} {'yes' if total <= limit else 'NO':>5}")


if __name__ == "__main__":
    main()

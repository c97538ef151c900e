"""Score images with a trained checkpoint, and measure against labels when there are any."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from search.checkpoint import load_checkpoint
from search.data import decode_images, load_labels
from search.device import resolve_device
from search.metrics import iqa_metrics
from search.train import predict


def predict_frame(model_path, data: str = "folder", root=None, cache_dir: Path | str = ".cache/images",
                  device: str = "auto") -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """Predictions per image (columns `image`, `pred_<target>`, and the labels when present) and metrics."""
    model, payload = load_checkpoint(model_path)
    spec = model.spec
    target_names = list(payload.get("target_names") or [f"score{i}" for i in range(spec.num_outputs)])
    table = load_labels(data, root, targets=None if data == "folder" else target_names)
    images = decode_images(table, spec.input.resize, cache_dir)
    views = (payload.get("train_config") or {}).get("eval_views", 1)
    pred = predict(model, images.images, device=resolve_device(device), crop=spec.input.crop, views=views)
    frame = pd.DataFrame({"image": images.names})
    for i, name in enumerate(target_names):
        frame[f"pred_{name}"] = pred[:, i]
    metrics = {}
    for i, name in enumerate(images.target_names):
        frame[name] = images.targets[:, i].numpy()
        metrics[name] = iqa_metrics(pred[:, i], images.targets[:, i].numpy())
    return frame, metrics


def predict_to_csv(model_path, data: str = "folder", root=None, out=None, cache_dir: Path | str = ".cache/images",
                   device: str = "auto") -> Path:
    """Write predictions to `out` (default: predictions.csv beside the model); print metrics when labelled."""
    frame, metrics = predict_frame(model_path, data, root, cache_dir, device)
    out = Path(out) if out else Path(model_path).with_name("predictions.csv")
    frame.to_csv(out, index=False)
    for name, m in metrics.items():
        print(f"{name}: " + "  ".join(f"{k.upper()} {v:.4f}" for k, v in m.items()))
    return out

"""Score images with a trained checkpoint, and measure against labels when there are any; or choose the
better image of each pair of a pairs CSV, with pair accuracy when it names the winners."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from search.checkpoint import load_checkpoint
from search.data import load_labels
from search.data.cache import decode_pair_images, decode_readable
from search.data.labels import MissingColumnsError
from search.data.pairs import PAIR_COLUMNS, read_pairs
from search.device import resolve_device
from search.metrics import iqa_metrics
from search.train.pairs import choices_frame
from search.train.loop import predict


def prediction_frame(names: list[str], scores: np.ndarray, target_names: list[str]) -> pd.DataFrame:
    """The one prediction format (this command's and the notebook's): `image`, then `score` for one
    target (the challenge's one score per image) or `score_<target>` for each of several (the labels,
    when shown beside them, keep their own names). A NaN score is written as an empty cell."""
    columns = ["score"] if len(target_names) == 1 else [f"score_{t}" for t in target_names]
    return pd.DataFrame({"image": names, **{c: scores[:, i] for i, c in enumerate(columns)}})


def predict_frame(model_path, data: str = "folder", root=None, cache_dir: Path | str = ".cache/images",
                  device: str = "auto") -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """Predictions per image (`prediction_frame`, and the labels when present) and metrics. An unreadable
    image is named on stderr (one line for all) and keeps its row with an empty score; the metrics cover
    the readable ones."""
    model, payload = load_checkpoint(model_path)
    spec = model.spec
    target_names = list(payload.get("target_names") or [f"score{i}" for i in range(spec.num_outputs)])
    try:
        table = load_labels(data, root, targets=None if data == "folder" else target_names)
    except MissingColumnsError as err:
        if not set(err.missing) & set(target_names):
            raise
        raise ValueError(f"{err}; the score column(s) {', '.join(map(repr, target_names))} are the targets the "
                         f"checkpoint {model_path} was trained on (another dataset?)") from None
    images, unreadable = decode_readable(table, spec.input.resize, cache_dir)
    if unreadable:
        if not len(images):
            raise ValueError(f"{table.source}: no image could be read ({next(iter(unreadable.values()))})")
        print(f"warning: {len(unreadable)} unreadable image(s) left out, their scores left empty: "
              f"{', '.join(unreadable)}", file=sys.stderr)
    views = (payload.get("train_config") or {}).get("eval_views", 1)
    pred = predict(model, images.images, device=resolve_device(device), crop=spec.input.crop, views=views)
    labels = table.frame[["image", *images.target_names]].reset_index(drop=True)
    readable = labels["image"].isin(images.names).to_numpy()
    scores = np.full((len(labels), len(target_names)), np.nan)
    scores[readable] = pred
    frame = prediction_frame(list(labels["image"]), scores, target_names)
    for name in images.target_names:
        frame[name] = labels[name]
    metrics = {name: iqa_metrics(pred[:, i], images.targets[:, i].numpy())
               for i, name in enumerate(images.target_names)}
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


def predict_pairs_to_csv(model_path, pairs_csv, columns: tuple[str, str, str] = PAIR_COLUMNS, out=None,
                         cache_dir: Path | str = ".cache/images", device: str = "auto") -> Path:
    """Write `image_a, image_b, chosen` (the higher-scored image of each pair of `pairs_csv`, in file
    order; `winner` too when the CSV has its winner column) to `out` (default: choices.csv beside the
    model); print the pair accuracy when the winners are known."""
    model, payload = load_checkpoint(model_path)
    spec = model.spec
    rows = read_pairs(pairs_csv, columns, need_winner=False)
    images = decode_pair_images(rows.source, rows.image_dir, rows.names(), spec.input.resize, cache_dir)
    views = (payload.get("train_config") or {}).get("eval_views", 1)
    scores = predict(model, images.images, device=resolve_device(device), crop=spec.input.crop, views=views)[:, 0]
    frame, accuracy = choices_frame(rows, dict(zip(images.names, scores.tolist())))
    out = Path(out) if out else Path(model_path).with_name("choices.csv")
    frame.to_csv(out, index=False)
    if accuracy is not None:
        print(f"pair accuracy {accuracy:.4f} on {len(frame)} pairs")
    return out

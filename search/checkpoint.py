"""Checkpoints: a trained model as its spec plus weights, so any stage can rebuild it from code."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from space import ArchSpec, IQANet, build_model

FORMAT = "liqa-nas/1"


def save_checkpoint(path: str | Path, model: IQANet, spec: ArchSpec, **extra: Any) -> Path:
    """Write `{format, spec, state_dict, **extra}` atomically (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "spec": spec.to_dict(), "state_dict": model.state_dict(), **extra}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[IQANet, dict]:
    """Rebuild the model from a checkpoint's spec and load its weights; returns (model, payload)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    payload = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} checkpoint (format={payload.get('format') if isinstance(payload, dict) else type(payload).__name__})")
    model = build_model(ArchSpec.from_dict(payload["spec"]))
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise ValueError(f"{path}: weights do not fit the checkpoint's spec: {err}") from None
    return model.eval(), payload

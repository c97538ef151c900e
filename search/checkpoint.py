"""Checkpoints: a trained model as its spec plus weights, so any stage can rebuild it from code.

Weights are stored as fp32, fp16, or int8: weight-only, symmetric per output channel (each conv or
linear weight with its fp32 scales; biases and norms stay fp32). Loading always gives an fp32 model,
so every stage reads every variant through `load_checkpoint`.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from space import ArchSpec, IQANet, build_model

FORMAT = "liqa-nas/1"
WEIGHT_FORMATS = ("fp32", "fp16", "int8")


def encode_weights(state: dict[str, torch.Tensor], weights: str) -> dict[str, Any]:
    """The state dict in a storage format: fp32 as is, fp16 halves floats, int8 quantises matrices."""
    if weights not in WEIGHT_FORMATS:
        raise ValueError(f"unknown weight format {weights!r}; choose from {', '.join(WEIGHT_FORMATS)}")
    out: dict[str, Any] = {}
    for name, t in state.items():
        if not t.is_floating_point() or weights == "fp32":
            out[name] = t
        elif weights == "fp16":
            out[name] = t.half()
        elif t.ndim >= 2:  # conv / linear weight: symmetric int8 per output channel
            scale = t.abs().flatten(1).amax(1).clamp_min(1e-12) / 127.0
            shape = (-1,) + (1,) * (t.ndim - 1)
            out[name] = {"q": torch.round(t / scale.view(shape)).to(torch.int8), "scale": scale.float()}
        else:
            out[name] = t
    return out


def decode_weights(stored: dict[str, Any]) -> dict[str, torch.Tensor]:
    """An fp32 state dict back from any storage format."""
    out = {}
    for name, v in stored.items():
        if isinstance(v, dict):
            out[name] = v["q"].float() * v["scale"].view((-1,) + (1,) * (v["q"].ndim - 1))
        else:
            out[name] = v.float() if v.is_floating_point() else v
    return out


def save_checkpoint(path: str | Path, model: IQANet, spec: ArchSpec, weights: str = "fp32", **extra: Any) -> Path:
    """Write `{format, spec, weights, state_dict, **extra}` atomically (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "spec": spec.to_dict(), "weights": weights,
               "state_dict": encode_weights(state, weights), **extra}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; weights are shared and submitted like any file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _read(path: Path, map_location: str | torch.device) -> dict:
    """The checkpoint's payload; a file torch cannot read (truncated, text, another pickle) is a ValueError."""
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)  # tensors and plain data, no code
    except Exception as err:  # torch.load fails in many ways (zip, pickle, EOF, OS errors) on a foreign file
        raise ValueError(f"{path}: not a readable checkpoint, truncated or not written by torch.save "
                         f"({type(err).__name__}: {' '.join(str(err).split()).split('. ')[0]})") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{path}: not a {FORMAT} checkpoint (format={found})")
    return payload


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[IQANet, dict]:
    """Rebuild the model from a checkpoint's spec and load its weights; returns (model, payload)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    payload = _read(path, map_location)
    try:
        model = build_model(ArchSpec.from_dict(payload["spec"]))
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: the checkpoint's spec cannot be rebuilt ({type(err).__name__}: {err})") from err
    try:
        model.load_state_dict(decode_weights(payload["state_dict"]))
    except (KeyError, RuntimeError) as err:
        raise ValueError(f"{path}: weights do not fit the checkpoint's spec: {err}") from None
    return model.eval(), payload

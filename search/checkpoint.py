"""Checkpoints: a trained model as its spec plus weights, so any stage can rebuild it from code.

Weights are stored as fp32, fp16, or int8: weight-only, symmetric per output channel (each conv or
linear weight with its fp32 scales; biases and norms stay fp32). Loading always gives an fp32 model,
so every stage reads every variant through `load_checkpoint`.
"""
from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from search.files import atomic_write
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


def plain(value: Any) -> Any:
    """`value` with numpy scalars and arrays as Python numbers and lists, tuples as lists and paths as
    strings: what `torch.load(weights_only=True)` reads back (it refuses any other class)."""
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    raise TypeError(f"a checkpoint holds plain values and tensors only, not {type(value).__name__}: {value!r}")


def save_checkpoint(path: str | Path, model: IQANet, spec: ArchSpec, weights: str = "fp32", **extra: Any) -> Path:
    """Write `{format, spec, weights, state_dict, **extra}` atomically (never a half-written file), of plain
    values and tensors only, so that loading it never needs to run code (`_read`)."""
    path = Path(path)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = plain({"format": FORMAT, "spec": spec.to_dict(), "weights": weights,
                     "state_dict": encode_weights(state, weights), **extra})
    with atomic_write(path) as tmp:
        torch.save(payload, tmp)
    return path


def _read(path: Path, map_location: str | torch.device) -> dict:
    """The checkpoint's payload, unpickled with `weights_only=True`: a file that holds anything but tensors
    and plain values (a pickle that would run code, or an older checkpoint that stored numpy values) is
    refused unread. A file torch cannot read (truncated, text, another pickle) is a ValueError; torch's own
    warnings about the file (a raw pickle's protocol) are silenced, so a refusal stays one line."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"torch(\.|$)")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:  # what weights_only refuses: a class or function to call
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        if found is None:
            raise ValueError(f"{path}: not a readable checkpoint: not written by torch.save") from None
        raise ValueError(f"{path}: not loaded: it holds a reference to {found.group(1)}, and unpickling it could "
                         "run code; a checkpoint saved by an older liqa-nas with numpy values must be saved again "
                         "(rerun its trial or export)") from None
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

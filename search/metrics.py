"""IQA metrics shared by training, search and reporting: PLCC, SRCC, KRCC, RMSE, the 5-parameter
logistic mapping of IQA papers, and the challenge correlation score.

Conventions: a correlation that is undefined because one side is constant is reported as 0.0 (a
constant predictor has no correlation with quality); NaN or infinite inputs are an error, never a
silent NaN score.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import optimize, stats


def _vector(values, name: str) -> np.ndarray:
    """1-D float64 from a 1-D or [N, 1] array; anything wider is an error, never silently flattened."""
    a = np.asarray(values, dtype=np.float64)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D or [N, 1], got shape {a.shape}")
    return a


def _pair(pred, mos) -> tuple[np.ndarray, np.ndarray]:
    p, m = _vector(pred, "predictions"), _vector(mos, "MOS")
    if p.shape != m.shape:
        raise ValueError(f"predictions ({p.size}) and MOS ({m.size}) differ in length")
    if p.size < 2:
        raise ValueError(f"metrics need at least 2 samples, got {p.size}")
    for name, arr in (("predictions", p), ("MOS", m)):
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise ValueError(f"{bad.size} non-finite value(s) in {name}, first at index {bad[0]}")
    return p, m


def _constant(*arrays: np.ndarray) -> bool:
    return any(np.ptp(a) == 0 for a in arrays)


def plcc(pred, mos) -> float:
    """Pearson linear correlation."""
    p, m = _pair(pred, mos)
    return 0.0 if _constant(p, m) else float(stats.pearsonr(p, m)[0])


def srcc(pred, mos) -> float:
    """Spearman rank correlation."""
    p, m = _pair(pred, mos)
    return 0.0 if _constant(p, m) else float(stats.spearmanr(p, m)[0])


def krcc(pred, mos) -> float:
    """Kendall rank correlation (tau-b)."""
    p, m = _pair(pred, mos)
    return 0.0 if _constant(p, m) else float(stats.kendalltau(p, m)[0])


def rmse(pred, mos) -> float:
    """Root mean squared error, in MOS units."""
    p, m = _pair(pred, mos)
    return float(np.sqrt(np.mean((p - m) ** 2)))


def corr_score(plcc_value: float, srcc_value: float, krcc_value: float) -> float:
    """The challenge correlation score: (max(PLCC,0) + max(SRCC,0) + max(KRCC,0)) / 3."""
    return (max(plcc_value, 0.0) + max(srcc_value, 0.0) + max(krcc_value, 0.0)) / 3.0


def logistic5(x, b1: float, b2: float, b3: float, b4: float, b5: float):
    """The 5-parameter logistic mapping (VQEG): b1*(1/2 - 1/(1+exp(b2*(x-b3)))) + b4*x + b5."""
    x = np.asarray(x, dtype=np.float64)
    z = np.clip(b2 * (x - b3), -50, 50)  # exp overflow guard: the logistic is flat there anyway
    return b1 * (0.5 - 1.0 / (1.0 + np.exp(z))) + b4 * x + b5


def fit_logistic5(pred, mos) -> tuple[float, ...]:
    """Fit the logistic mapping from predictions to MOS.

    With fewer than 5 points, constant predictions, or a fit that does not converge, falls back to the
    least-squares line (b1 = 0), so the mapped PLCC is the raw PLCC rather than an error.
    """
    p, m = _pair(pred, mos)
    slope, intercept = (np.polyfit(p, m, 1) if not _constant(p) else (0.0, float(m.mean())))
    linear = (0.0, 1.0, float(np.mean(p)), float(slope), float(intercept))
    if p.size < 5 or _constant(p, m):
        return linear
    guess = (float(np.ptp(m)), 4.0 / (np.std(p) + 1e-12) * np.sign(slope or 1.0), float(np.mean(p)), 0.0,
             float(np.mean(m)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params, _ = optimize.curve_fit(logistic5, p, m, p0=guess, maxfev=20000)
    except (RuntimeError, optimize.OptimizeWarning, ValueError):
        return linear
    if not np.all(np.isfinite(params)):
        return linear
    fitted = logistic5(p, *params)
    # keep the logistic only when it fits at least as well as the line
    if np.mean((fitted - m) ** 2) > np.mean((np.polyval([slope, intercept], p) - m) ** 2):
        return linear
    return tuple(float(v) for v in params)


def pair_accuracy(pred, mos, min_gap: float = 0.0) -> float:
    """Fraction of image pairs whose MOS differ by more than `min_gap` that the predictions order the
    same way (comparative quality selection: "which of two images is better"). Ties in the prediction
    count half."""
    p, m = _pair(pred, mos)
    i, j = np.triu_indices(p.size, k=1)
    keep = np.abs(m[i] - m[j]) > min_gap
    if not keep.any():
        return 0.5
    dm, dp = np.sign(m[i][keep] - m[j][keep]), np.sign(p[i][keep] - p[j][keep])
    return float(np.mean(np.where(dp == 0, 0.5, dp == dm)))


def iqa_metrics(pred, mos) -> dict[str, float]:
    """All metrics: raw PLCC/SRCC/KRCC/RMSE, PLCC/RMSE after the logistic fit, pair accuracy on
    MOS-derived pairs, and the corr score."""
    p, m = _pair(pred, mos)
    out = {"plcc": plcc(p, m), "srcc": srcc(p, m), "krcc": krcc(p, m), "rmse": rmse(p, m),
           "pair_acc": pair_accuracy(p, m)}
    mapped = logistic5(p, *fit_logistic5(p, m))
    out["plcc_fit"] = plcc(mapped, m)
    out["rmse_fit"] = rmse(mapped, m)
    out["corr_score"] = corr_score(out["plcc"], out["srcc"], out["krcc"])
    return out

"""Shared pieces of the metrics: the error type, summary statistics, stamp checks."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DEFAULT_MAX_DT_S", "MetricsError", "ErrorStats", "clean_stamps", "yaw_batch"]

#: time matching tolerance between an estimate and the ground truth (s)
DEFAULT_MAX_DT_S = 0.01


class MetricsError(ValueError):
    """Inputs a metric cannot be computed on (empty, mismatched, no time overlap); says why."""


@dataclass
class ErrorStats:
    """Summary of a 1-D error array (NaNs ignored); all fields NaN when no finite sample."""
    rmse: float
    mean: float
    median: float
    max: float
    min: float
    std: float
    n: int

    @classmethod
    def of(cls, e) -> "ErrorStats":
        e = np.asarray(e, float).reshape(-1)
        e = e[np.isfinite(e)]
        if e.size == 0:
            nan = float("nan")
            return cls(nan, nan, nan, nan, nan, nan, 0)
        return cls(float(np.sqrt(np.mean(e ** 2))), float(np.mean(e)), float(np.median(e)), float(np.max(e)),
                   float(np.min(e)), float(np.std(e)), int(e.size))

    def as_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in ("rmse", "mean", "median", "max", "min", "std", "n")}


def clean_stamps(t, name: str) -> np.ndarray:
    """(N,) float stamps; non-finite ones are a MetricsError naming the series."""
    t = np.asarray(t, float).reshape(-1)
    if not np.all(np.isfinite(t)):
        raise MetricsError(f"{name}: {int((~np.isfinite(t)).sum())} non-finite timestamps")
    return t


def yaw_batch(T: np.ndarray) -> np.ndarray:
    """(N,) yaw (rad) of (N, 4, 4) poses."""
    return np.arctan2(T[:, 1, 0], T[:, 0, 0])

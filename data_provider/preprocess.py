"""Preprocessing shared by both tasks: NaN/Inf cleaning and train-fitted standardisation.

The rules (README, Anomaly detection > Datasets and Long-term forecasting >
Datasets): non-finite values are counted, warned about and replaced by the
channel's previous finite value; the scaler is fitted on training rows only.
"""
from __future__ import annotations

import warnings

import numpy as np


class StandardScaler:
    """Per-channel standardisation fitted on one array; constant channels get scale 1 (finite output)."""

    def fit(self, x: np.ndarray) -> "StandardScaler":
        self.mean = x.mean(axis=0)
        std = x.std(axis=0)
        self.std = np.where(std > 1e-8, std, 1.0)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.std).astype(np.float32)


def clean_nonfinite(x: np.ndarray, split: str, name: str) -> tuple[np.ndarray, int]:
    """Replace NaN/Inf by the previous finite value of the channel (0 before the first); return the count."""
    x = np.asarray(x, dtype=np.float64)
    bad = ~np.isfinite(x)
    count = int(bad.sum())
    if count:
        warnings.warn(f"{name} {split}: {count} NaN/Inf value(s) replaced by the previous finite value "
                      f"of their channel (0 where none precedes)", stacklevel=3)
        idx = np.where(bad, 0, np.arange(len(x))[:, None])
        np.maximum.accumulate(idx, axis=0, out=idx)           # index of the last finite value so far
        filled = np.take_along_axis(x, idx, axis=0)
        x = np.where(bad & ~np.isfinite(filled), 0.0, filled)
    return x, count

"""Preprocessing shared by both tasks: NaN/Inf cleaning and train-fitted standardisation.

The rules (README, Anomaly detection > Datasets and Long-term forecasting >
Datasets): non-finite values are counted, warned about and replaced by the
channel's previous finite value (leading ones by the channel's first finite
value, so an offset channel is not pulled towards 0); the scaler is fitted on
training rows only, and values too large to standardise are an error naming
the channel, never a channel silently turned into zeros or infinities.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

# Standardised values above this magnitude are refused: the models compute squared errors and sums of
# them in float32 (max 3.4e38), so |z| must stay far below sqrt(3.4e38) ~ 1.8e19 to keep scores finite.
Z_LIMIT = 1e15


def _channel_list(idx: np.ndarray, columns: Sequence[str] | None, limit: int = 5) -> str:
    names = [f"{columns[i]!r}" if columns is not None else str(int(i)) for i in idx[:limit]]
    more = f" and {len(idx) - limit} more" if len(idx) > limit else ""
    return ("channel " if len(idx) == 1 else "channels ") + ", ".join(names) + more


class StandardScaler:
    """Per-channel standardisation fitted on one array; constant channels get scale 1 (finite output).

    `name` and `columns` (the channel names, else 0-based indices) only serve the error messages.
    """

    def fit(self, x: np.ndarray, name: str = "data", columns: Sequence[str] | None = None) -> "StandardScaler":
        x = np.asarray(x, dtype=np.float64)
        self.name, self.columns = name, list(columns) if columns is not None else None
        with np.errstate(over="ignore", invalid="ignore"):
            self.mean = x.mean(axis=0)
            std = x.std(axis=0)
        overflow = np.flatnonzero(~np.isfinite(self.mean) | ~np.isfinite(std))
        if len(overflow):
            # the sum of n squares overflows float64 once one term reaches max/n
            level = float(np.sqrt(np.finfo(np.float64).max / max(len(x), 1)))
            count = int((np.abs(x[:, overflow]) >= level).sum())
            raise ValueError(
                f"{name} train: {_channel_list(overflow, self.columns)} cannot be standardised: "
                f"{count} value(s) of magnitude >= {level:.2g} make the channel's variance overflow "
                f"(largest {np.abs(x[:, overflow]).max():.3g}); such values are usually sentinels for missing "
                f"data: replace them by empty cells (NaN, filled from neighbouring values) or remove the channel")
        self.std = np.where(std > 1e-8, std, 1.0)
        return self

    def transform(self, x: np.ndarray, split: str = "data") -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            z = (np.asarray(x, dtype=np.float64) - self.mean) / self.std
        if len(z) and ((z.max(axis=0) > Z_LIMIT).any() or (z.min(axis=0) < -Z_LIMIT).any()):
            huge = np.abs(z) > Z_LIMIT                        # only now: no [N, C] temporaries on clean data
            channels = np.flatnonzero(huge.any(axis=0))
            first = int(np.flatnonzero(huge.any(axis=1))[0])
            raise ValueError(
                f"{self.name} {split}: {int(huge.sum())} value(s) in {_channel_list(channels, self.columns)} lie more "
                f"than {Z_LIMIT:.0e} training standard deviations from the training mean (first at 0-based row {first}, "
                f"value {float(np.asarray(x)[first, channels[0]]):.3g}); the detector could not score them (float32 "
                f"overflow). Such values are usually sentinels for missing data: replace them by empty cells (NaN, "
                f"filled from neighbouring values) or remove the channel")
        return z.astype(np.float32)


def clean_nonfinite(x: np.ndarray, split: str, name: str,
                    columns: Sequence[str] | None = None) -> tuple[np.ndarray, int]:
    """Replace NaN/Inf by the previous finite value of the channel; return the count.

    NaN/Inf before a channel's first finite value take that first finite value (back-fill), so an
    offset channel (e.g. around 1000) keeps its level; a channel with no finite value becomes 0.
    """
    x = np.asarray(x, dtype=np.float64)
    bad = ~np.isfinite(x)
    count = int(bad.sum())
    if not count:
        return x, count
    rows = np.arange(len(x))[:, None]
    idx = np.where(bad, -1, rows)
    np.maximum.accumulate(idx, axis=0, out=idx)           # row of the last finite value so far, -1 if none
    has_finite = (~bad).any(axis=0)
    first = np.where(has_finite, np.argmax(~bad, axis=0), 0)  # row of each channel's first finite value
    leading = idx < 0
    idx = np.where(leading, first[None, :], idx)
    filled = np.take_along_axis(x, idx, axis=0)
    empty = np.flatnonzero(~has_finite)
    x = np.where(bad & ~has_finite[None, :], 0.0, filled)
    n_lead = int((leading & has_finite[None, :]).sum())
    how = f"{count} NaN/Inf value(s) replaced by the previous finite value of their channel"
    if n_lead:
        how += f"; the {n_lead} before a channel's first finite value by that first finite value (back-fill)"
    if len(empty):
        how += f"; {_channel_list(empty, columns)} had no finite value and were set to 0"
    warnings.warn(f"{name} {split}: {how}", stacklevel=3)
    return x, count

"""Anomaly-detection data: read, check, clean, scale, split and window (README, Anomaly detection > Datasets).

Rules: validation is the last 20 % of the training split (chronological);
the scaler is fitted on the training part only; windows are index -> slice
views, never materialised; test scoring covers every point exactly once in
time order (the tail included) unless `--test_step` < window, in which case
overlapping windows are averaged.
"""
from __future__ import annotations

from argparse import Namespace
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from data_provider.preprocess import StandardScaler, clean_nonfinite
from data_provider.specs import get_anomaly_spec

VAL_FRACTION = 0.2


@dataclass
class AnomalyData:
    """Scaled splits of one dataset. `train` excludes the validation tail."""

    train: np.ndarray        # [N_train, C] float32
    val: np.ndarray          # [N_val, C]
    test: np.ndarray         # [N_test, C]
    test_labels: np.ndarray  # [N_test] int64 in {0, 1}
    info: dict = field(default_factory=dict)

    @property
    def channels(self) -> int:
        return self.train.shape[1]


def _as_labels(labels: np.ndarray, n_test: int, name: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ValueError(f"{name}: labels must be one value per test point, got shape {labels.shape}")
    if len(labels) != n_test:
        raise ValueError(f"{name}: {len(labels)} labels for {n_test} test points; "
                         f"the label file must have exactly one row per test row")
    values = np.unique(labels)
    if not np.isin(values, (0, 1)).all():
        raise ValueError(f"{name}: labels must be 0/1 (ints or floats), found values {values[:10].tolist()}")
    return labels.astype(np.int64)


def load_anomaly_data(args: Namespace) -> AnomalyData:
    """Read `--data` from `--root_path`, check it, clean NaN/Inf, split off validation and scale.

    Errors name the problem and the fix: missing files, label count vs test
    length, channel counts, empty files, a window longer than a split.
    """
    spec = get_anomaly_spec(args.data)
    train_raw, test_raw, labels_raw = spec.reader(spec, args.root_path, args)
    name = spec.name + (f"/{args.entity}" if args.entity else "")
    if train_raw.shape[1] != test_raw.shape[1]:
        raise ValueError(f"{name}: train has {train_raw.shape[1]} channels but test has {test_raw.shape[1]} "
                         f"(shapes {train_raw.shape} and {test_raw.shape}); both splits need the same columns")
    labels = _as_labels(labels_raw, len(test_raw), name)
    # readers of named columns (custom CSV) return DataFrames, so messages can name the channel
    columns = [str(c) for c in train_raw.columns] if isinstance(train_raw, pd.DataFrame) else None
    train_all, nan_train = clean_nonfinite(train_raw, "train", name, columns)
    test, nan_test = clean_nonfinite(test_raw, "test", name, columns)

    n_val = int(len(train_all) * VAL_FRACTION)
    train, val = train_all[:len(train_all) - n_val], train_all[len(train_all) - n_val:]
    L = args.seq_len
    for split, arr in (("train (first 80 % of the training file)", train),
                       ("validation (last 20 % of the training file)", val), ("test", test)):
        if len(arr) < L:
            raise ValueError(f"{name}: window --seq_len {L} is longer than the {split} split ({len(arr)} points); "
                             f"use a smaller --seq_len")
    scaler = StandardScaler().fit(train, name, columns)
    constant = int((train.std(axis=0) <= 1e-8).sum())
    info = {"dataset": spec.name, "entity": args.entity, "channels": int(train.shape[1]),
            "n_train": len(train), "n_val": len(val), "n_test": len(test),
            "test_anomaly_fraction": float(labels.mean()), "nonfinite_replaced": {"train": nan_train, "test": nan_test},
            "constant_channels": constant}
    return AnomalyData(scaler.transform(train, "train"), scaler.transform(val, "validation"),
                       scaler.transform(test, "test"), labels, info)


def window_starts(n: int, win: int, step: int) -> tuple[np.ndarray, int]:
    """Start indices of windows of length `win` every `step` points of an `n`-point series.

    Returns `(starts, tail_covered)`. When the stride leaves the end of the
    series uncovered, a last window ending exactly at `n` is appended and
    `tail_covered` is how many of its leading points earlier windows already
    cover (0 when no window was appended), so every point lies in some window.
    """
    starts = np.arange(0, n - win + 1, step, dtype=np.int64)
    covered_to = int(starts[-1]) + win
    if covered_to < n:
        starts = np.append(starts, n - win)
        return starts, covered_to - (n - win)
    return starts, 0


class WindowDataset(Dataset):
    """Lazy windows over a `[N, C]` array: item i is `series[starts[i] : starts[i] + win]` (a view)."""

    def __init__(self, series: np.ndarray, win: int, starts: np.ndarray):
        self.series = torch.from_numpy(np.ascontiguousarray(series, dtype=np.float32))
        self.win = win
        self.starts = starts

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> torch.Tensor:
        s = int(self.starts[i])
        return self.series[s:s + self.win]


class PointScoreAccumulator:
    """Turns per-window, per-point scores into one score per point (README, Anomaly detection).

    Each window contributes to the points it *owns*: all its points, except
    that a tail window added to cover the end owns only the points no earlier
    window covered; so with the default stride (= window) each point is scored
    exactly once, and with a smaller stride overlapping windows are averaged.
    """

    def __init__(self, n: int, win: int, starts: np.ndarray, tail_covered: int):
        self.sum = np.zeros(n, dtype=np.float64)
        self.count = np.zeros(n, dtype=np.int64)
        self.win = win
        self.starts = starts
        self.tail_covered = tail_covered

    def add(self, first: int, window_scores: np.ndarray) -> None:
        """`window_scores` [b, win] for windows `first .. first + b - 1` (in `starts` order)."""
        b = len(window_scores)
        idx = self.starts[first:first + b, None] + np.arange(self.win)[None, :]     # [b, win]
        weight = np.ones_like(window_scores, dtype=np.int64)
        if first + b == len(self.starts) and self.tail_covered:
            weight[-1, :self.tail_covered] = 0
        np.add.at(self.sum, idx.ravel(), (window_scores * weight).ravel())
        np.add.at(self.count, idx.ravel(), weight.ravel())

    def result(self) -> np.ndarray:
        if (self.count == 0).any():
            raise RuntimeError(f"{int((self.count == 0).sum())} points were not scored; this is a bug")
        return self.sum / self.count

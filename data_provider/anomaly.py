"""Anomaly-detection data: read, check, clean, scale, split and window (README, Anomaly detection > Datasets).

Rules: validation is the last 20 % of the training split (chronological);
the scaler is fitted on the training part only; windows are index -> slice
views, never materialised; test scoring covers every point exactly once in
time order (the tail included) unless `--test_step` < window, in which case
overlapping windows are averaged.

Series of any length: `.npy` splits arrive memory-mapped (readers.py). Those above
`MAPPED_MIN_BYTES` stay on the map as `MappedSeries` (the scaler fitted in chunks, windows
read and standardised when sliced), so memory does not grow with the series; smaller ones,
and every CSV/text layout, are loaded in RAM.
"""
from __future__ import annotations

import mmap
from argparse import Namespace
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from data_provider.preprocess import StandardScaler, clean_nonfinite
from data_provider.specs import get_anomaly_spec

VAL_FRACTION = 0.2
MAPPED_MIN_BYTES = 256 * 2 ** 20   # a memory-mapped split at least this large is never copied into RAM
_CHUNK_ROWS = 1 << 16              # rows per pass of the chunked statistics
_RELEASE_BYTES = 64 * 2 ** 20      # a MappedSeries drops its mapped pages after reading this much,
_RELEASE_CALLS = 32                # or after this many slices (a page fault may map a whole large folio, ~1 MiB)


def _release(arr: np.ndarray) -> None:
    """Unmap the pages of memory-mapped `arr` this process has touched (they stay in the page cache, so
    reading them again is cheap); without it resident memory grows to the file's size as a scan proceeds."""
    m = getattr(arr, "_mmap", None)
    if isinstance(m, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        m.madvise(mmap.MADV_DONTNEED)


class MappedSeries:
    """A standardised `[N, C]` float32 series read from a memory-mapped array only where it is sliced.

    Slicing rows (`series[a:b]`, an int or an index array) returns a float32 ndarray; `np.asarray`
    loads the whole split (for models whose `fit` hook needs it). Pickles as its file name and rows,
    so DataLoader workers reopen the map instead of copying the data.
    """

    def __init__(self, raw: np.ndarray, mean: np.ndarray, std: np.ndarray, path: str | None = None,
                 rows: tuple[int, int] | None = None):
        self.raw, self.mean, self.std = raw, mean, std
        self.path, self.rows = path, rows if rows is not None else (0, len(raw))
        self._read = self._calls = 0

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.raw), self.raw.shape[1])

    dtype = np.dtype(np.float32)
    ndim = 2

    def __len__(self) -> int:
        return len(self.raw)

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, tuple):  # rows and columns: scale the rows, then pick the columns
            return self[key[0]][(slice(None), *key[1:])]
        rows = np.asarray(self.raw[key], dtype=np.float64)
        self._read += rows.nbytes
        self._calls += 1
        if self._read >= _RELEASE_BYTES or self._calls >= _RELEASE_CALLS:
            _release(self.raw)
            self._read = self._calls = 0
        return ((rows - self.mean) / self.std).astype(np.float32)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.empty(self.shape, np.float32)
        for a in range(0, len(self), _CHUNK_ROWS):
            out[a:a + _CHUNK_ROWS] = self[a:a + _CHUNK_ROWS]
        return out if dtype is None else out.astype(dtype)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.path is not None:
            state["raw"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.raw is None:
            a, b = self.rows
            self.raw = _as_2d(np.load(self.path, mmap_mode="r", allow_pickle=False))[a:b]
            self._read = self._calls = 0


def _as_2d(arr: np.ndarray) -> np.ndarray:
    return arr.reshape(len(arr), -1) if arr.ndim != 2 else arr


def _is_large_map(arr: np.ndarray) -> bool:
    return isinstance(arr, np.memmap) and arr.nbytes >= MAPPED_MIN_BYTES


def _chunked_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-channel mean and (population) std of `x` [N, C] and its non-finite count, one chunk in RAM at a time
    (chunk results merged with Chan, Golub & LeVeque's pairwise update, 1979)."""
    n, mean, m2, bad = 0, np.zeros(x.shape[1]), np.zeros(x.shape[1]), 0
    for a in range(0, len(x), _CHUNK_ROWS):
        chunk = np.asarray(x[a:a + _CHUNK_ROWS], dtype=np.float64)
        bad += int((~np.isfinite(chunk)).sum())
        k, cm = len(chunk), chunk.mean(axis=0)
        delta = cm - mean
        m2 += ((chunk - cm) ** 2).sum(axis=0) + delta ** 2 * n * k / (n + k)
        mean += delta * k / (n + k)
        n += k
        _release(x)
    return mean, np.sqrt(m2 / max(n, 1)), bad


@dataclass
class AnomalyData:
    """Scaled splits of one dataset. `train` excludes the validation tail. A large memory-mapped
    `.npy` split is a `MappedSeries` (sliced like an array; `np.asarray` loads it)."""

    train: np.ndarray        # [N_train, C] float32 (or MappedSeries)
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
    if _is_large_map(train_raw) or _is_large_map(test_raw):
        mapped = _load_mapped(train_raw, test_raw, labels, name, spec.name, args)
        if mapped is not None:
            return mapped
    # readers of named columns (custom CSV) return DataFrames, so messages can name the channel
    columns = [str(c) for c in train_raw.columns] if isinstance(train_raw, pd.DataFrame) else None
    train_all, nan_train = clean_nonfinite(train_raw, "train", name, columns)
    test, nan_test = clean_nonfinite(test_raw, "test", name, columns)

    n_val = int(len(train_all) * VAL_FRACTION)
    train, val = train_all[:len(train_all) - n_val], train_all[len(train_all) - n_val:]
    _check_window(name, args.seq_len, len(train), len(val), len(test))
    scaler = StandardScaler().fit(train, name, columns)
    constant = int((train.std(axis=0) <= 1e-8).sum())
    info = {"dataset": spec.name, "entity": args.entity, "channels": int(train.shape[1]),
            "n_train": len(train), "n_val": len(val), "n_test": len(test),
            "test_anomaly_fraction": float(labels.mean()), "nonfinite_replaced": {"train": nan_train, "test": nan_test},
            "constant_channels": constant}
    return AnomalyData(scaler.transform(train, "train"), scaler.transform(val, "validation"),
                       scaler.transform(test, "test"), labels, info)


def _check_window(name: str, L: int, n_train: int, n_val: int, n_test: int) -> None:
    """Every split holds at least one window of `L` points, or a ValueError names the split."""
    splits = (("train (first 80 % of the training file)", n_train),
              ("validation (last 20 % of the training file)", n_val), ("test", n_test))
    for split, n in splits:
        if n < L:
            raise ValueError(f"{name}: window --seq_len {L} is longer than the {split} split ({n} points); "
                             f"use a smaller --seq_len")


def _load_mapped(train_all: np.ndarray, test: np.ndarray, labels: np.ndarray, name: str, dataset: str,
                 args: Namespace) -> AnomalyData | None:
    """`load_anomaly_data` for memory-mapped splits: the same split and scaler, nothing copied.
    None (load in RAM instead) when a split holds NaN/Inf, whose forward fill needs a copy."""
    n_val = int(len(train_all) * VAL_FRACTION)
    train, val = train_all[:len(train_all) - n_val], train_all[len(train_all) - n_val:]
    _check_window(name, args.seq_len, len(train), len(val), len(test))
    mean, std, bad = _chunked_stats(train)
    bad += _chunked_stats(val)[2] + _chunked_stats(test)[2]
    if bad:
        print(f"{name}: {bad} NaN/Inf value(s) in the memory-mapped splits; loading them in RAM to fill them")
        return None
    scale = np.where(std > 1e-8, std, 1.0)
    path = getattr(train_all, "filename", None)
    tpath = getattr(test, "filename", None)
    info = {"dataset": dataset, "entity": args.entity, "channels": int(train.shape[1]),
            "n_train": len(train), "n_val": len(val), "n_test": len(test),
            "test_anomaly_fraction": float(labels.mean()), "nonfinite_replaced": {"train": 0, "test": 0},
            "constant_channels": int((std <= 1e-8).sum()), "memory_mapped": True}
    n_train = len(train)
    return AnomalyData(MappedSeries(train, mean, scale, path, (0, n_train)),
                       MappedSeries(val, mean, scale, path, (n_train, len(train_all))),
                       MappedSeries(test, mean, scale, tpath, (0, len(test))), labels, info)


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
    """Lazy windows over a `[N, C]` array: item i is `series[starts[i] : starts[i] + win]` (a view; read from
    the map and standardised then for a `MappedSeries`)."""

    def __init__(self, series: np.ndarray | MappedSeries, win: int, starts: np.ndarray):
        self.mapped = isinstance(series, MappedSeries)
        self.series = series if self.mapped else torch.from_numpy(np.ascontiguousarray(series, dtype=np.float32))
        self.win = win
        self.starts = starts

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> torch.Tensor:
        s = int(self.starts[i])
        if self.mapped:
            return torch.from_numpy(self.series[s:s + self.win])
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

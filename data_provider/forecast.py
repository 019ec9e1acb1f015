"""Long-term forecasting data (README, Long-term forecasting > Datasets): split, scale, lazy windows.

The dataset table is `FORECAST_SPECS` in `data_provider/specs.py`.

The splits are those of the Time-Series-Library (Wu et al., "TimesNet",
ICLR 2023; earlier Autoformer and Informer), so results compare with the
literature:

- ETTh1/ETTh2 (hourly): 12 months train, 4 months validation, 4 months test,
  a month counted as 30 days (borders 8640 / 11520 / 14400 rows); ETTm1/ETTm2
  (15-minute) the same months, four times as many rows. Rows past month 20
  are unused, as in TSLib.
- Weather, ECL, Traffic, Exchange, ILI and `custom`: the first 70 % train,
  the last 20 % test, the 10 % between them validation.

The validation and test parts start `seq_len` rows before their border so
their first window forecasts the border's first row; the scaler is fitted on
the training rows only. Columns: `date` first (dropped), then the variables;
the target (`--target`, default OT) is moved last so `--features MS` predicts
the last column. `--features S` keeps the target only.

A window starting at row s gives `x = data[s : s+seq_len]` (model input) and
`y = target_columns[s+seq_len-label_len : s+seq_len+pred_len]`; the loss and
metrics use the last `pred_len` rows of `y`.
"""
from __future__ import annotations

import os
from argparse import Namespace
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from data_provider.preprocess import StandardScaler, clean_nonfinite
from data_provider.readers import read_csv_frame
from data_provider.specs import ForecastSpec, get_forecast_spec

TRAIN_RATIO, TEST_RATIO = 0.7, 0.2
_MONTH_ROWS = {"ett_hour": 30 * 24, "ett_minute": 30 * 24 * 4}  # rows per 30-day month


@dataclass
class ForecastData:
    """Scaled rows of one dataset and where each split's windows may start.

    `series` [N, C_in] holds only the rows the splits use; `target_cols` are
    the columns forecast (all for M, the last for S/MS). `bounds[split]` =
    (first row, end row) of the split's part of `series`, the lookback
    included, so its windows start in [first, end - seq_len - pred_len].
    """

    series: np.ndarray                          # [N, C_in] float32, standardised with train statistics
    target_cols: slice
    bounds: dict[str, tuple[int, int]]
    columns: list[str]
    info: dict = field(default_factory=dict)

    @property
    def channels(self) -> int:
        return self.series.shape[1]

    @property
    def target_channels(self) -> int:
        return len(range(*self.target_cols.indices(self.channels)))


def _read_csv(spec: ForecastSpec, args: Namespace) -> pd.DataFrame:
    path = os.path.join(args.root_path, args.data_path)
    if not os.path.exists(path):
        hint = (f"download {spec.folder}/{spec.file} from {spec.source} and put it there, or point "
                f"--root_path/--data_path at your copy" if spec.file else "check --root_path and --data_path")
        raise FileNotFoundError(f"{spec.name}: file not found: {path}; {hint}")
    df = read_csv_frame(path, f"{spec.name} --data_path", header=True)
    if "date" not in df.columns:
        raise ValueError(f"{path}: no 'date' column (columns: {list(df.columns)[:10]}); the forecasting "
                         f"layout is a 'date' column followed by one column per variable, under a header line "
                         f"such as 'date,<variable 1>,<variable 2>,...' (add one if the first line is data)")
    values = df.drop(columns=["date"])
    non_numeric = [c for c in values.columns if not pd.api.types.is_numeric_dtype(values[c])]
    if non_numeric:
        raise ValueError(f"{path}: non-numeric column(s) {non_numeric[:5]}; every column except 'date' "
                         f"must be a number")
    if values.shape[1] == 0:
        raise ValueError(f"{path}: no variable columns besides 'date'")
    return values


def _borders(spec: ForecastSpec, n: int, seq_len: int, path: str) -> dict[str, tuple[int, int]]:
    """(start, end) rows of train/val/test, val and test starting seq_len rows early (TSLib borders)."""
    if spec.split in _MONTH_ROWS:
        m = _MONTH_ROWS[spec.split]
        edges = (12 * m, 16 * m, 20 * m)
        if n < edges[-1]:
            raise ValueError(f"{path}: {n} rows, but the {spec.name} split (12/4/4 months of 30 days) needs "
                             f"{edges[-1]}; is this the full {spec.file}?")
    else:
        # int() of the float product as in TSLib (700 rows give 489 training rows), so splits match its
        n_train, n_test = int(n * TRAIN_RATIO), int(n * TEST_RATIO)
        edges = (n_train, n - n_test, n)
    return {"train": (0, edges[0]), "val": (edges[0] - seq_len, edges[1]), "test": (edges[1] - seq_len, edges[2])}


def load_forecast_data(args: Namespace) -> ForecastData:
    """Read `--data` from `--root_path/--data_path`, select `--features`, split, scale on train.

    Errors: missing file (which one, where to get it), no `date` column,
    non-numeric columns, missing `--target` for S/MS, too few rows for
    the split or for one window of `seq_len + pred_len` in a split.
    """
    spec = get_forecast_spec(args.data)
    path = os.path.join(args.root_path, args.data_path)
    values = _read_csv(spec, args)
    columns = list(values.columns)
    if args.target in columns:                              # target last: MS forecasts the last column
        columns = [c for c in columns if c != args.target] + [args.target]
    elif args.features in ("S", "MS"):
        raise ValueError(f"{path}: target column {args.target!r} not found (columns: {columns[:10]}"
                         f"{' ...' if len(columns) > 10 else ''}); pass --target <column> or use --features M")
    if args.features == "S":
        columns = [args.target]
    raw, n_bad = clean_nonfinite(values[columns].to_numpy(), "file", spec.name, columns)

    bounds = _borders(spec, len(raw), args.seq_len, path)
    need = args.seq_len + args.pred_len
    for split, (lo, hi) in bounds.items():
        if lo < 0 or hi - lo < need:
            raise ValueError(f"{path}: the {split} part has {hi - max(lo, 0)} rows (lookback included) but one "
                             f"window needs --seq_len + --pred_len = {need}; the file has {len(raw)} rows; use a "
                             f"shorter --seq_len/--pred_len or a longer series")
    lo, hi = bounds["train"]
    scaler = StandardScaler().fit(raw[lo:hi], f"{spec.name} ({path})", columns)
    series = scaler.transform(raw[:bounds["test"][1]], "file")
    target_cols = slice(None) if args.features == "M" else slice(-1, None)
    info = {"dataset": spec.name, "file": path, "features": args.features, "columns": columns,
            "target": args.target, "channels": len(columns), "rows": len(raw),
            "rows_used": bounds["test"][1], "nonfinite_replaced": n_bad,
            "splits": {k: {"first_row": v[0], "end_row": v[1]} for k, v in bounds.items()}}
    return ForecastData(series, target_cols, bounds, columns, info)


class ForecastDataset(Dataset):
    """Lazy windows of one split: item i is (x [seq_len, C_in], y [label_len + pred_len, C_out]).

    Windows start every `step` rows in [first, end - seq_len - pred_len]
    (TSLib uses step 1; the validation and test splits always do). Items are
    slices of one shared tensor, never materialised.
    """

    def __init__(self, data: ForecastData, split: str, seq_len: int, label_len: int, pred_len: int,
                 step: int = 1):
        if split not in data.bounds:
            raise ValueError(f"unknown split {split!r}; choose one of {list(data.bounds)}")
        first, end = data.bounds[split]
        self.series = torch.from_numpy(np.ascontiguousarray(data.series))
        self.target_cols = data.target_cols
        self.seq_len, self.label_len, self.pred_len = seq_len, label_len, pred_len
        self.starts = np.arange(first, end - seq_len - pred_len + 1, step, dtype=np.int64)
        if len(self.starts) == 0:
            raise ValueError(f"{split}: rows [{first}, {end}) hold no window of seq_len {seq_len} + pred_len "
                             f"{pred_len}")

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = int(self.starts[i])
        e = s + self.seq_len
        x = self.series[s:e]                                                       # [seq_len, C_in]
        y = self.series[e - self.label_len:e + self.pred_len, self.target_cols]    # [label_len+pred_len, C_out]
        return x, y

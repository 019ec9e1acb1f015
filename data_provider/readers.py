"""One reader per anomaly-detection file layout (README, Anomaly detection > Datasets).

Each reader returns raw `(train, test, labels)`; the rows of
`data_provider/specs.py` name the reader of their dataset.

Readers only read and check shapes; cleaning (NaN/Inf), scaling and
windowing happen in `data_provider/anomaly.py`. Every failure names the file,
the expected layout and where the data come from.
"""
from __future__ import annotations

import glob
import os
import re
from argparse import Namespace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from data_provider.synthetic import generate_synthetic

if TYPE_CHECKING:  # annotations only: specs.py imports the readers
    from data_provider.specs import AnomalySpec

Raw = tuple[np.ndarray, np.ndarray, np.ndarray]


def _missing(spec: AnomalySpec, root: str, paths: list[str]) -> FileNotFoundError:
    lines = "\n".join(f"  {p}" for p in paths)
    expected = ", ".join(spec.files)
    return FileNotFoundError(
        f"{spec.name}: missing file(s) under --root_path {root!r}:\n{lines}\n"
        f"Expected layout: {expected}. Source: {spec.source}. "
        f"See README 'Datasets' for how to obtain and place them.")


def _check_exist(spec: AnomalySpec, root: str, paths: list[str]) -> None:
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"{spec.name}: data folder {root!r} does not exist. Put {', '.join(spec.files)} there "
            f"or pass --root_path. Source: {spec.source}.")
    absent = [p for p in paths if not os.path.isfile(p)]
    if absent:
        raise _missing(spec, root, absent)


def _load_array(path: str, **csv_kw) -> np.ndarray:
    """Load an .npy or delimited text file as a 2-D float array; empty files get a clear error."""
    if os.path.getsize(path) == 0:
        raise ValueError(f"file {path!r} is empty; re-download or re-export it")
    if path.endswith(".npy"):
        # memory-mapped: nothing is read until sliced, so a split larger than RAM opens at once
        # (data_provider/anomaly.py keeps small splits in RAM and large ones on the map)
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    else:
        arr = pd.read_csv(path, **csv_kw).to_numpy()
    if arr.size == 0:
        raise ValueError(f"file {path!r} holds no values; re-download or re-export it")
    return arr.reshape(len(arr), -1) if arr.ndim != 2 else arr


def _numeric_frame(path: str) -> pd.DataFrame:
    if os.path.getsize(path) == 0:
        raise ValueError(f"file {path!r} is empty; re-download or re-export it")
    frame = pd.read_csv(path)
    if frame.empty:
        raise ValueError(f"file {path!r} has a header but no rows; re-download or re-export it")
    return frame


def read_npy(spec: AnomalySpec, root: str, args: Namespace) -> Raw:
    paths = [os.path.join(root, f) for f in spec.files]
    _check_exist(spec, root, paths)
    train, test, labels = (_load_array(p) for p in paths)
    return train, test, labels


def read_smd(spec: AnomalySpec, root: str, args: Namespace) -> Raw:
    if args.entity is None:
        return read_npy(spec, root, args)
    paths = [os.path.join(root, part, f"{args.entity}.txt") for part in ("train", "test", "test_label")]
    if os.path.isdir(root) and not all(os.path.isfile(p) for p in paths):
        machines = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(root, "train", "*.txt")))
        hint = f" Machines found: {', '.join(machines)}." if machines else ""
        raise FileNotFoundError(
            f"SMD --entity {args.entity}: expected train/{args.entity}.txt, test/{args.entity}.txt and "
            f"test_label/{args.entity}.txt under {root!r}.{hint} Source: {spec.source}.")
    _check_exist(spec, root, paths)
    train, test, labels = (_load_array(p, header=None) for p in paths)
    return train, test, labels


def read_psm(spec: AnomalySpec, root: str, args: Namespace) -> Raw:
    paths = [os.path.join(root, f) for f in spec.files]
    _check_exist(spec, root, paths)
    train, test, label = (_numeric_frame(p) for p in paths)
    # first column is the timestamp in all three files
    return train.iloc[:, 1:].to_numpy(), test.iloc[:, 1:].to_numpy(), label.iloc[:, 1:].to_numpy()


def read_swat(spec: AnomalySpec, root: str, args: Namespace) -> Raw:
    paths = [os.path.join(root, f) for f in spec.files]
    _check_exist(spec, root, paths)
    train, test = (_numeric_frame(p) for p in paths)
    return train.iloc[:, :-1].to_numpy(), test.iloc[:, :-1].to_numpy(), test.iloc[:, -1].to_numpy()


_UCR_NAME = re.compile(r"^(\d+)_UCR_Anomaly_(.+)_(\d+)_(\d+)_(\d+)\.txt$")


def read_ucr(spec: AnomalySpec, root: str, args: Namespace) -> Raw:
    """UCR archive file `<id>_UCR_Anomaly_<name>_<trainEnd>_<begin>_<end>.txt`.

    Convention (documented in the README): positions in the name are 1-based
    and inclusive, as in the archive's description; train = the first
    `trainEnd` points, test = the rest, label 1 on points begin..end.
    Values may be one per line or whitespace-separated on one line.
    """
    if args.entity is None:
        raise ValueError("UCR needs --entity <id> (the number before _UCR_Anomaly_ in the file name)")
    _check_exist(spec, root, [])
    matches = [p for p in glob.glob(os.path.join(root, f"{args.entity}_UCR_Anomaly_*.txt"))
               if _UCR_NAME.match(os.path.basename(p))]
    if not matches:
        raise _missing(spec, root, [os.path.join(root, f"{args.entity}_UCR_Anomaly_<name>_<trainEnd>_<begin>_<end>.txt")])
    path = sorted(matches)[0]
    _, _, train_end, begin, end = _UCR_NAME.match(os.path.basename(path)).groups()
    train_end, begin, end = int(train_end), int(begin), int(end)
    if os.path.getsize(path) == 0:
        raise ValueError(f"file {path!r} is empty; re-download it from the UCR archive")
    values = np.loadtxt(path, dtype=np.float64).ravel()
    if not (0 < train_end < begin <= end <= len(values)):
        raise ValueError(f"{os.path.basename(path)}: name says trainEnd={train_end}, anomaly {begin}..{end}, "
                         f"but the file has {len(values)} values")
    labels = np.zeros(len(values) - train_end, dtype=np.int64)
    labels[begin - 1 - train_end:end - train_end] = 1
    return values[:train_end, None], values[train_end:, None], labels


def _read_table(path: str, what: str) -> pd.DataFrame:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"custom: {what} {path!r} does not exist")
    if path.endswith(".npy"):
        arr = _load_array(path)
        return pd.DataFrame(arr)
    return _numeric_frame(path)


def read_custom(spec: AnomalySpec, root: str, args: Namespace) -> Raw:
    """User data: `--train_file`, `--test_file` (CSV with header, or NPY), labels from
    `--label_column` (a column of the test file, dropped from the train file too) or `--label_file`.
    Non-numeric columns (timestamps, ids) are dropped with a note."""
    if not args.train_file or not args.test_file:
        raise ValueError("--data custom needs --train_file and --test_file (CSV with a header, or NPY)")
    if bool(args.label_column) == bool(args.label_file):
        raise ValueError("--data custom needs exactly one of --label_column (a column of the test file) "
                         "or --label_file (one label per test row)")

    def resolve(path: str) -> str:
        return path if os.path.isabs(path) or os.path.exists(path) or root is None else os.path.join(root, path)

    train = _read_table(resolve(args.train_file), "--train_file")
    test = _read_table(resolve(args.test_file), "--test_file")
    if args.label_column:
        if args.label_column not in test.columns:
            raise ValueError(f"--label_column {args.label_column!r} is not a column of the test file; "
                             f"columns are: {', '.join(map(str, test.columns))}")
        labels = test.pop(args.label_column).to_numpy()
        train = train.drop(columns=[args.label_column], errors="ignore")
    else:
        labels = _read_table(resolve(args.label_file), "--label_file").to_numpy()
    dropped = [str(c) for c in train.columns if not pd.api.types.is_numeric_dtype(train[c])]
    if dropped:
        print(f"custom: dropping non-numeric column(s) {', '.join(dropped)}")
    train = train.drop(columns=dropped)
    test = test.drop(columns=[c for c in test.columns if not pd.api.types.is_numeric_dtype(test[c])])
    return train.to_numpy(), test.to_numpy(), labels


def read_synthetic(spec: AnomalySpec, root: str, args: Namespace) -> Raw:
    train, test, labels, _ = generate_synthetic(args.synthetic_length, args.synthetic_channels,
                                                args.synthetic_anomaly_rate, args.synthetic_seed)
    return train, test, labels


_TSBAD_NAME = re.compile(r"^(\d+)_(.+)_id_(\d+)_(.+)_tr_(\d+)_1st_(\d+)\.csv$")
_TSBAD_FOLDERS = ("", "TSB-AD-U", "TSB-AD-M")


def _tsbad_candidates(root: str) -> list[str]:
    """Every TSB-AD file (name matching the benchmark's pattern) in `root`, `root/TSB-AD-U`, `root/TSB-AD-M`."""
    found = []
    for sub in _TSBAD_FOLDERS:
        folder = os.path.join(root, sub) if sub else root
        if os.path.isdir(folder):
            found += sorted(os.path.join(folder, f) for f in os.listdir(folder) if _TSBAD_NAME.match(f))
    return found


def resolve_tsbad_file(root: str, entity: str) -> str:
    """The one TSB-AD CSV that `--entity` names under `root` (searched with its TSB-AD-U and TSB-AD-M subfolders).

    `entity` may be the file name, the name without `.csv` or the numeric id prefix (`001` or `1`).
    Raises ValueError naming the folders searched and a few available files when there is no match or
    more than one (e.g. id 001 in both TSB-AD-U and TSB-AD-M: give the file name or a narrower --root_path).
    """
    entity = str(entity).strip()
    candidates = _tsbad_candidates(root)
    name = os.path.basename(entity)
    if entity.isdigit():
        matches = [p for p in candidates if int(_TSBAD_NAME.match(os.path.basename(p)).group(1)) == int(entity)]
    else:
        stem = name[:-4] if name.endswith(".csv") else name
        matches = [p for p in candidates if os.path.basename(p)[:-4] == stem]
    if len(matches) == 1:
        return matches[0]
    searched = ", ".join(repr(os.path.join(root, s) if s else root) for s in _TSBAD_FOLDERS)
    shown = [os.path.relpath(p, root) for p in (matches or candidates)[:5]]
    more = f" (first {len(shown)} of {len(matches or candidates)})" if len(matches or candidates) > 5 else ""
    if matches:
        raise ValueError(f"TSB-AD --entity {entity!r} is ambiguous: {len(matches)} files match under {searched}: "
                         f"{', '.join(shown)}{more}; give the file name or point --root_path at one folder")
    listing = f"available: {', '.join(shown)}{more}" if shown else "no TSB-AD file found there"
    raise ValueError(f"TSB-AD --entity {entity!r}: no file <id>_<name>_id_<k>_<domain>_tr_<train end>_1st_<first "
                     f"anomaly>.csv matches in {searched}; {listing}")


def read_tsbad(spec: AnomalySpec, root: str, args: Namespace) -> Raw:
    """TSB-AD-U/-M CSV `<id>_<name>_id_<k>_<domain>_tr_<train end>_1st_<first anomaly>.csv` (Liu & Paparrizos,
    NeurIPS 2024): one column per channel and a `Label` column (0/1), one row per time step.

    Train = the first `tr` rows (0-based rows 0 .. tr-1; anomaly-free by the benchmark's curation, a
    labelled point there is reported and left in), test = the rest with their labels. The file's `1st`
    is checked against the labels (a note when they disagree). Non-numeric columns are an error.
    """
    if args.entity is None:
        raise ValueError("TSB-AD needs --entity: the file name or its numeric id prefix (e.g. 001)")
    _check_exist(spec, root, [])
    path = resolve_tsbad_file(root, args.entity)
    train_end, first = (int(g) for g in _TSBAD_NAME.match(os.path.basename(path)).groups()[4:])
    frame = _numeric_frame(path)
    if "Label" not in frame.columns:
        raise ValueError(f"{path!r} has no 'Label' column (columns: {', '.join(map(str, frame.columns))})")
    labels = frame.pop("Label").to_numpy()
    text = [str(c) for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if text or frame.shape[1] == 0:
        raise ValueError(f"{path!r}: channel columns must be numeric (non-numeric: {', '.join(text) or 'no channel'})")
    values = frame.to_numpy(dtype=np.float64)
    if not 0 < train_end < len(values):
        raise ValueError(f"{os.path.basename(path)}: the name says tr={train_end} but the file has {len(values)} rows")
    hits = np.flatnonzero(labels == 1)
    if len(hits) and int(hits[0]) != first:
        print(f"TSB-AD note: {os.path.basename(path)} names its first anomaly at row {first}, the labels at {hits[0]}")
    if labels[:train_end].any():
        print(f"TSB-AD note: {int(labels[:train_end].sum())} labelled point(s) in the training part of "
              f"{os.path.basename(path)} (kept in training; only test labels are scored)")
    return values[:train_end], values[train_end:], labels[train_end:]

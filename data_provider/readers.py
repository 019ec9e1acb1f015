"""One reader per anomaly-detection file layout (README, Anomaly detection > Datasets).

Each reader returns raw `(train, test, labels)`; the rows of
`data_provider/specs.py` name the reader of their dataset.

Readers only read and check shapes; cleaning (NaN/Inf), scaling and
windowing happen in `data_provider/anomaly.py`. Every failure names the file,
the expected layout and where the data come from.
"""
from __future__ import annotations

import csv
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

# (train, test, labels); train/test may be DataFrames whose column names name the channels (custom CSV)
Raw = tuple[np.ndarray | pd.DataFrame, np.ndarray | pd.DataFrame, np.ndarray]


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


def _first_line_cells(path: str) -> list[str]:
    """The cells of the file's first line, split at commas as pandas does (quotes respected)."""
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        return next(csv.reader(f), [])


def _is_number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def _looks_headerless(cells: list[str]) -> bool:
    """True when every cell of the first line is a number, i.e. the first line is data.

    A header of consecutive integers (0..C-1 or 1..C, as pandas writes for unnamed columns) counts as a header.
    """
    if not cells or not all(_is_number(c) for c in cells):
        return False
    stripped = [c.strip() for c in cells]
    return stripped not in ([str(i) for i in range(len(cells))], [str(i + 1) for i in range(len(cells))])


def _check_file(path: str, what: str) -> None:
    if os.path.isdir(path):
        raise ValueError(f"{what} {path!r} is a directory, not a file; pass the path of the CSV/NPY file inside it")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} {path!r} does not exist")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{what} {path!r} is empty; re-download or re-export it")


def _parse_numbers(frame: pd.DataFrame, path: str, first_line: int) -> pd.DataFrame:
    """Convert text columns that hold numbers to float64; report the cells of such a column that are not numbers.

    pandas leaves a column as text when one cell is not a number, and as Python ints when a value exceeds
    int64; both are converted here (the latter to float64). Columns where none of ~64 evenly spaced cells
    is a number (timestamps, ids) stay text for the caller. `first_line` is the file line of data row 0 (2 below a header).
    """
    bad: list[str] = []
    n_bad = 0
    for col in frame.columns:
        if pd.api.types.is_numeric_dtype(frame[col]):
            continue
        present = frame[col].dropna()
        sample = present.iloc[::max(1, len(present) // 64)]  # a cheap look first: dates are long columns of text
        if not pd.to_numeric(sample, errors="coerce").notna().any():
            continue                                          # a text column: the caller decides
        values = pd.to_numeric(frame[col], errors="coerce")
        failed = values.isna() & frame[col].notna()
        if failed.any():
            rows = np.flatnonzero(failed.to_numpy())
            n_bad += len(rows)
            bad += [f"line {first_line + r}, column {col!r}: {frame[col].iloc[r]!r}" for r in rows[:5 - len(bad)]]
        else:
            frame[col] = values.astype(np.float64)
    if n_bad:
        raise ValueError(f"{path!r}: {n_bad} cell(s) of numeric column(s) are not numbers ({'; '.join(bad)}"
                         f"{' ...' if n_bad > len(bad) else ''}); fix them, or leave them empty to have them "
                         f"treated as missing (NaN, filled from the previous value)")
    return frame


def read_csv_frame(path: str, what: str = "file", header: bool | None = None) -> pd.DataFrame:
    """Read a comma-separated file; every failure is a ValueError/FileNotFoundError naming `path` and the fix.

    header: True (first line is a header), False (none: columns named "0".."C-1") or None (detect: a first
    line made only of numbers is data, with a note). A single column whose header holds ';' or a tab gets a
    delimiter hint. Numeric columns come back as numbers (ints beyond int64 as float64); a few unparsable
    cells in a numeric column are an error giving line and column; columns without any number stay text.
    """
    _check_file(path, what)
    cells = _first_line_cells(path)
    if len(cells) == 1 and (";" in cells[0] or "\t" in cells[0]):
        sep = "semicolon" if ";" in cells[0] else "tab"
        raise ValueError(f"{what} {path!r} looks {sep}-separated (first line {cells[0][:80]!r}); CSV files are read "
                         f"comma-separated: re-save it with commas, e.g. pandas.read_csv(path, sep="
                         f"{';' if sep == 'semicolon' else chr(92) + 't'!r}).to_csv(new_path, index=False)")
    if header is None:
        header = not _looks_headerless(cells)
        if not header:
            print(f"note: {what} {path!r} has no header row (its first line is all numbers): its columns are "
                  f"numbered 0..{len(cells) - 1} by position; add a header line to name them")
    try:
        frame = pd.read_csv(path, header=0 if header else None)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{what} {path!r} cannot be read as CSV: {err}; check the file (an unclosed quote, a "
                         f"row with more cells than the header, a non-UTF-8 encoding) and re-export it") from None
    if not header:
        frame.columns = [str(c) for c in frame.columns]
    if frame.empty:
        raise ValueError(f"{what} {path!r} has a header but no rows; re-download or re-export it")
    return _parse_numbers(frame, path, 2 if header else 1)


def _load_array(path: str, what: str = "file", **csv_kw) -> np.ndarray:
    """Load an .npy or comma-separated text file as a 2-D float array; empty files get a clear error."""
    _check_file(path, what)
    if path.endswith(".npy"):
        # memory-mapped: nothing is read until sliced, so a split larger than RAM opens at once
        # (data_provider/anomaly.py keeps small splits in RAM and large ones on the map)
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    else:
        frame = read_csv_frame(path, what, **csv_kw)
        text = [str(c) for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
        if text:
            raise ValueError(f"{what} {path!r}: column(s) {', '.join(text[:5])} hold no numbers; "
                             f"every column must be numeric")
        arr = frame.to_numpy(dtype=np.float64)
    if arr.size == 0:
        raise ValueError(f"file {path!r} holds no values; re-download or re-export it")
    return arr.reshape(len(arr), -1) if arr.ndim != 2 else arr


def _numeric_frame(path: str) -> pd.DataFrame:
    return read_csv_frame(path, "file")


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
    train, test, labels = (_load_array(p, header=False) for p in paths)
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


def _read_table(path: str, what: str) -> tuple[pd.DataFrame, bool]:
    """A custom file as a frame and whether its columns carry names (a CSV header) or only positions."""
    if path.endswith(".npy"):
        arr = _load_array(path, what)
        return pd.DataFrame(arr, columns=[str(i) for i in range(arr.shape[1])]), False
    frame = read_csv_frame(path, what)
    return frame, not _looks_headerless(_first_line_cells(path))


def _text_columns(frame: pd.DataFrame) -> list[str]:
    return [str(c) for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]


def _match_columns(train: pd.DataFrame, test: pd.DataFrame, by_name: bool,
                   train_path: str, test_path: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The numeric columns of both files, the test's in the train's order (matched by name when both have a header).

    Columns without numbers (timestamps, ids) are dropped with a note; a column numeric in one file and
    text in the other, or a column present in one file only, is an error listing both headers.
    """
    text_train, text_test = _text_columns(train), _text_columns(test)
    dropped = sorted(set(text_train) | set(text_test), key=str)
    if by_name:
        names_train = [c for c in train.columns if c not in text_train]
        names_test = [c for c in test.columns if c not in text_test]
        if sorted(map(str, names_train)) != sorted(map(str, names_test)):
            mixed = [c for c in dropped if (c in text_train) != (c in text_test) and c in train and c in test]
            missing = [c for c in names_train if c not in names_test and c not in mixed]
            extra = [c for c in names_test if c not in names_train and c not in mixed]
            parts = [f"in the train file only: {', '.join(map(repr, missing))}" if missing else "",
                     f"in the test file only: {', '.join(map(repr, extra))}" if extra else "",
                     f"numeric in one file, text in the other: {', '.join(map(repr, mixed))}" if mixed else ""]
            raise ValueError(
                f"custom: the columns of --test_file do not match those of --train_file "
                f"({'; '.join(p for p in parts if p)}). Columns are matched by name, in any order; rename them to "
                f"agree. --train_file {train_path!r} header: {', '.join(map(str, train.columns))}. "
                f"--test_file {test_path!r} header: {', '.join(map(str, test.columns))}")
        if list(names_test) != list(names_train):
            print("custom: test columns matched to the train columns by name (their order differs)")
        test = test[names_train]
        train = train[names_train]
    else:
        train = train.drop(columns=text_train)
        test = test.drop(columns=text_test)
    if dropped:
        print(f"custom: dropping non-numeric column(s) {', '.join(dropped)}")
    return train, test


def read_custom(spec: AnomalySpec, root: str, args: Namespace) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """User data: `--train_file`, `--test_file` (CSV with header, or NPY), labels from
    `--label_column` (a column of the test file, dropped from the train file too) or `--label_file`.

    Test columns are matched to train columns by name (any order); files without names (NPY, a CSV
    without header row, whose columns are numbered 0..C-1) are matched by position. Non-numeric columns
    (timestamps, ids) are dropped with a note. Returns frames so that messages can name the channels."""
    if not args.train_file or not args.test_file:
        raise ValueError("--data custom needs --train_file and --test_file (CSV with a header, or NPY)")
    if bool(args.label_column) == bool(args.label_file):
        raise ValueError("--data custom needs exactly one of --label_column (a column of the test file) "
                         "or --label_file (one label per test row)")

    def resolve(path: str) -> str:
        return path if os.path.isabs(path) or os.path.exists(path) or root is None else os.path.join(root, path)

    train_path, test_path = resolve(args.train_file), resolve(args.test_file)
    train, train_named = _read_table(train_path, "--train_file")
    test, test_named = _read_table(test_path, "--test_file")
    if args.label_column:
        label = str(args.label_column)
        if label not in test.columns:
            unnamed = "" if test_named else (" (the test file has no column names, being NPY or a CSV without "
                                             "header row, so its columns are numbered from 0: pass the label "
                                             "column's position, e.g. --label_column "
                                             f"{len(test.columns) - 1})")
            raise ValueError(f"--label_column {label!r} is not a column of the test file; "
                             f"columns are: {', '.join(map(str, test.columns))}{unnamed}")
        labels = test.pop(label).to_numpy()
        train = train.drop(columns=[label], errors="ignore")
    else:
        labels = _read_table(resolve(args.label_file), "--label_file")[0].to_numpy()
    if train_named != test_named:
        print(f"custom: {'--test_file' if train_named else '--train_file'} has no column names, so the columns are "
              f"matched by position (give both files a header line to match them by name)")
    train, test = _match_columns(train, test, train_named and test_named, train_path, test_path)
    return train, test, labels


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

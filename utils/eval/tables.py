"""Paper-style tables from `results/summary.csv` (one row per test run).

    python -m utils.eval.tables --summary results/summary.csv [--task anomaly_detection]
        [--metrics paper_pa_f1 trainval_f1 vus_pr ...] [--out_dir results/tables] [--where seq_len=96]

Anomaly detection (`--layout per_metric`, the default): one table per metric, datasets (data[/entity]) as rows and methods (`--method_col`,
default `model`) as columns. Runs of the same (dataset, method) and the same configuration (the rows'
`config` digest: every flag that defines the data and the model, seed and names aside), e.g. several
seeds, are averaged: a cell shows the mean, "± std" when there is more than one run, "(+0.123)" its
margin over the `Random` baseline on the same dataset when that baseline was run (`python run.py
--model Random ...` or `python -m utils.eval --random uniform`; a note says where it is missing), and
"n=" the number of runs. A method run in several configurations on one dataset gets one column per
configuration, labelled by the hyperparameters that differ (`CrossAlign (seq_len=50)`). A run tested
again (the same setting, e.g. repeated `--is_training 0`) counts once, with its latest row. An `Avg`
row averages each method over the datasets it has. Random's own column is the chance level.

`--layout wide`: one overview table, a row per (dataset, method) and a column per metric.

Long-term forecasting: datasets x horizons (`pred_len`) as rows plus an `Avg` row per dataset (the mean
over its horizons, as in the paper's table), MSE and MAE for each method as columns.

Writes `<out_dir>/<task>_<metric>.md/.csv` (anomaly; `<task>_overview` for the wide layout) or `<out_dir>/long_term_forecast.md/.csv`,
atomically, and prints the Markdown. Summary rows need the columns
`task_name, model, model_id, data, entity, seed` plus the metric columns.
"""
from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np
import pandas as pd

from utils.eval.columns import DEFAULT_TABLE_METRICS
from utils.io import atomic_write, save_text

DEFAULT_ANOMALY_METRICS = DEFAULT_TABLE_METRICS
PAPER_NOTE = ("`paper_*` columns: the paper's published protocol (threshold from the TEST scores; range-AUCs "
              "computed on the point-adjusted binary predictions). Read them beside the leak-free columns.")
BASELINE = "Random"


# labels, not numbers: a UCR entity 0001 or a seed must not become 1.0
TEXT_COLUMNS = ("setting", "task_name", "model", "model_id", "data", "entity", "seed", "config", "des", "backbone",
                "data_file", "git_commit", "features")
# the hyperparameters that name a method's configurations when one dataset has several
CONFIG_COLUMNS = ("seq_len", "step", "batch_size", "learning_rate", "train_epochs", "max_train_steps", "backbone",
                  "llm_layers", "e_layers", "d_model", "data_file", "anomaly_ratio", "des")


def _matches(column: pd.Series, value: str) -> pd.Series:
    """`column == value` as text, or as numbers when both are (`--where learning_rate=1e-4` matches 0.0001)."""
    text = column.fillna("").astype(str) == value
    try:
        number = float(value)
    except ValueError:
        return text
    return text | (pd.to_numeric(column, errors="coerce") == number)


def _config(df: pd.DataFrame) -> pd.Series:
    """Each row's configuration: its `config` digest, or for rows of older versions without one, the
    setting without its seed and iteration (`..._sd2024_exp_0` -> `..._exp`)."""
    setting = df["setting"].fillna("").astype(str) if "setting" in df.columns else pd.Series("", index=df.index)
    derived = setting.str.replace(r"_sd\d+(?=_|$)", "", regex=True).str.replace(r"_\d+$", "", regex=True)
    if "config" not in df.columns:
        return derived
    return df["config"].where(df["config"].notna() & (df["config"] != ""), derived)


def load_summary(path: str, task: str, where: list[str] | None = None) -> pd.DataFrame:
    """Rows of `task` from the summary CSV with `dataset` and `config` columns, one row per run (a
    setting tested again keeps its latest row); `where` filters `col=value`."""
    if not os.path.exists(path):
        raise ValueError(f"summary file {path} not found; run experiments first (they append to results/summary.csv)")
    df = pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS})
    needed = {"task_name", "model", "data"}
    if missing := needed - set(df.columns):
        raise ValueError(f"{path} lacks columns {sorted(missing)}; is it a results/summary.csv?")
    df = df[df["task_name"] == task].copy()
    for cond in where or []:
        if "=" not in cond:
            raise ValueError(f"--where expects col=value, got {cond!r}")
        col, value = cond.split("=", 1)
        if col not in df.columns:
            raise ValueError(f"--where: no column {col!r} in {path}; columns: {', '.join(df.columns)}")
        df = df[_matches(df[col], value)]
    if df.empty:
        raise ValueError(f"no {task} rows in {path}" + (f" matching {where}" if where else ""))
    if "setting" in df.columns:  # one run = one setting (and seed, for rows without one in the setting)
        key = df["setting"].fillna("").astype(str) + "|" + (df["seed"].fillna("") if "seed" in df.columns else "")
        df = df[~key.duplicated(keep="last")]
    entity = df["entity"].fillna("").astype(str) if "entity" in df.columns else ""
    df["dataset"] = df["data"].astype(str) + np.where(entity != "", "/" + entity, "")
    df["config"] = _config(df)
    return df


def _value(v) -> str:
    if isinstance(v, float):
        return "—" if math.isnan(v) else f"{v:g}"
    return str(v)


def split_configurations(df: pd.DataFrame, method_col: str, keys: list[str]) -> pd.DataFrame:
    """`df` with `method_col` relabelled so that each (`keys`, method) cell holds one configuration: a
    method with several configurations in some cell is labelled by the `CONFIG_COLUMNS` that differ
    there (`CrossAlign (seq_len=50)`), or by its config digest when none of them does."""
    df = df.copy()
    df[method_col] = df[method_col].astype(str)
    for method, g in df.groupby(method_col, sort=False):
        if not (g.groupby(keys, sort=False)["config"].nunique() > 1).any():
            continue
        varying = [c for c in CONFIG_COLUMNS if c in g.columns
                   and (g.groupby(keys, sort=False)[c].nunique(dropna=False) > 1).any()]
        labels = g.apply(lambda r: f"{method} (" + ", ".join(f"{c}={_value(r[c])}" for c in varying) + ")",
                         axis=1) if varying else pd.Series(method, index=g.index)
        ambiguous = pd.concat([g[keys], labels.rename("_label"), g["config"]], axis=1) \
            .groupby(keys + ["_label"], sort=False)["config"].transform("nunique") > 1
        labels[ambiguous] = labels[ambiguous].str.replace(r"\)$", "", regex=True) + np.where(
            labels[ambiguous].str.endswith(")"), ", ", " (") + "config " + g.loc[ambiguous, "config"].str[:6] + ")"
        df.loc[g.index, method_col] = labels
    return df


def _cell(mean: float, std: float, n: int, margin: float | None, digits: int, show_n: bool = True) -> str:
    if n == 0 or mean is None or not math.isfinite(mean):
        return "—"
    text = f"{mean:.{digits}f}"
    if n > 1 and math.isfinite(std):
        text += f" ± {std:.{digits}f}"
    if margin is not None and math.isfinite(margin):
        text += f" ({margin:+.{digits}f})"
    return text + (f" n={n}" if show_n else "")


def _stats(df: pd.DataFrame, keys: list[str], metric: str) -> pd.DataFrame:
    """mean, std (sample, NaN for one run) and run count of `metric` per group of `keys`."""
    g = df.groupby(keys, sort=False)[metric]
    return pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "n": g.count()})


def anomaly_table(df: pd.DataFrame, metric: str, method_col: str = "model",
                  digits: int = 4) -> tuple[str, pd.DataFrame]:
    """(Markdown, numeric DataFrame) of `metric`: datasets by methods, with margins over Random."""
    if metric not in df.columns:
        avail = [c for c in df.columns if df[c].dtype.kind == "f"]
        raise ValueError(f"metric {metric!r} is not a column of the summary; available: {', '.join(avail)}")
    stats = _stats(df, ["dataset", method_col], metric)
    datasets = list(dict.fromkeys(df["dataset"]))
    methods = [m for m in dict.fromkeys(df[method_col].astype(str)) if m != BASELINE]
    has_base = BASELINE in set(df[method_col].astype(str))
    cols = methods + ([BASELINE] if has_base else [])

    def get(ds, m):
        try:
            row = stats.loc[(ds, m)]
            return float(row["mean"]), float(row["std"]), int(row["n"])
        except KeyError:
            return float("nan"), float("nan"), 0

    lines = [f"| dataset | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    numeric = []
    no_base = []
    for ds in datasets:
        base = get(ds, BASELINE)[0] if has_base else float("nan")
        if not math.isfinite(base):
            no_base.append(ds)
        cells, rec = [], {"dataset": ds}
        for m in cols:
            mean, std, n = get(ds, m)
            margin = None if m == BASELINE or not math.isfinite(base) else mean - base
            cells.append(_cell(mean, std, n, margin, digits))
            rec.update({m: mean, f"{m}_std": std, f"{m}_n": n})
            if m != BASELINE:
                rec[f"{m}_over_random"] = float("nan") if margin is None else margin
        numeric.append(rec)
        lines.append(f"| {ds} | " + " | ".join(cells) + " |")
    table = pd.DataFrame(numeric)
    if len(datasets) > 1:
        avg = {m: float(np.nanmean(table[m])) if table[m].notna().any() else float("nan") for m in cols}
        counts = {m: int(table[m].notna().sum()) for m in cols}
        lines.append("| **Avg** | " + " | ".join(
            _cell(avg[m], float("nan"), counts[m], None, digits, show_n=False) + ("" if counts[m] == len(datasets) else
                                                                    f" [{counts[m]}/{len(datasets)}]")
            for m in cols) + " |")
        table = pd.concat([table, pd.DataFrame([{"dataset": "Avg", **avg}])], ignore_index=True)
    heading = f"### {metric}" + (" (paper protocol: test-leaking, prediction-based)"
                                 if metric.startswith("paper_") else "")
    md = [heading, "", *lines, ""]
    notes = ["Cells: mean over runs (± sample std when more than one run)"
             + (", (+x) = margin over the Random baseline on the same dataset" if has_base else "")
             + ", n = runs (a retest of the same run counts once)."]
    if no_base:
        notes.append(f"No Random baseline for {', '.join(no_base)}: run `python run.py --model Random --data ...` "
                     f"or `python -m utils.eval --random uniform ...` to show the chance level.")
    return "\n".join(md + notes) + "\n", table


def wide_table(df: pd.DataFrame, metrics: list[str], method_col: str = "model",
               digits: int = 4) -> tuple[str, pd.DataFrame]:
    """(Markdown, numeric DataFrame): one row per (dataset, method), one column per metric: the paper's
    number beside the honest ones at a glance."""
    if missing := [m for m in metrics if m not in df.columns]:
        raise ValueError(f"metrics {missing} are not columns of the summary")
    lines = ["| dataset | method | runs | " + " | ".join(metrics) + " |", "|---|---|---:|" + "---:|" * len(metrics)]
    rows = []
    for (ds, method), g in df.groupby(["dataset", method_col], sort=False):
        rec = {"dataset": ds, "method": method, "runs": len(g)}
        cells = []
        for m in metrics:
            v = g[m].dropna()
            mean, std = (float(v.mean()), float(v.std(ddof=1))) if len(v) else (float("nan"), float("nan"))
            cells.append(_cell(mean, std, len(v), None, digits))
            rec.update({m: mean, f"{m}_std": std})
        rows.append(rec)
        lines.append(f"| {ds} | {method} | {len(g)} | " + " | ".join(cells) + " |")
    md = ["### overview", "", *lines, "", "Cells: mean over runs (± sample std when more than one run), n = runs "
          "with the metric (a retest of the same run counts once)."]
    if any(m.startswith("paper_") for m in metrics):
        md.append(PAPER_NOTE)
    return "\n".join(md) + "\n", pd.DataFrame(rows)


def forecast_table(df: pd.DataFrame, method_col: str = "model", digits: int = 3) -> tuple[str, pd.DataFrame]:
    """(Markdown, numeric DataFrame): dataset x horizon rows plus a per-dataset Avg; MSE/MAE per method."""
    for col in ("mse", "mae", "pred_len"):
        if col not in df.columns:
            raise ValueError(f"forecasting summary lacks column {col!r}")
    df = df.copy()
    if "seq_len" in df.columns:
        multi = df.groupby("dataset")["seq_len"].nunique()
        lab = df["dataset"] + np.where(df["dataset"].map(multi) > 1, " (L=" + df["seq_len"].astype(str) + ")", "")
        df["dataset"] = lab
    df["pred_len"] = df["pred_len"].astype(int)
    methods = list(dict.fromkeys(df[method_col].astype(str)))
    mse = _stats(df, ["dataset", "pred_len", method_col], "mse")
    mae = _stats(df, ["dataset", "pred_len", method_col], "mae")
    head = "| dataset | horizon | " + " | ".join(f"{m} MSE | {m} MAE" for m in methods) + " |"
    lines = [head, "|---|---:|" + "---:|---:|" * len(methods)]
    rows = []
    for ds in dict.fromkeys(df["dataset"]):
        horizons = sorted(df.loc[df["dataset"] == ds, "pred_len"].unique())
        per = {m: {"mse": [], "mae": []} for m in methods}
        for h in horizons:
            cells, rec = [], {"dataset": ds, "horizon": str(h)}
            for m in methods:
                for name, st in (("mse", mse), ("mae", mae)):
                    try:
                        r = st.loc[(ds, h, m)]
                        mean, std, n = float(r["mean"]), float(r["std"]), int(r["n"])
                    except KeyError:
                        mean, std, n = float("nan"), float("nan"), 0
                    per[m][name].append(mean)
                    cells.append(_cell(mean, std, n, None, digits))
                    rec[f"{m}_{name}"] = mean
            rows.append(rec)
            lines.append(f"| {ds} | {h} | " + " | ".join(cells) + " |")
        cells, rec = [], {"dataset": ds, "horizon": "Avg"}
        for m in methods:
            for name in ("mse", "mae"):
                v = per[m][name]
                ok = all(math.isfinite(x) for x in v)  # the average is over all horizons or not at all
                mean = float(np.mean(v)) if ok else float("nan")
                cells.append(f"**{mean:.{digits}f}**" if ok else "—")
                rec[f"{m}_{name}"] = mean
        rows.append(rec)
        lines.append(f"| {ds} | **Avg** | " + " | ".join(cells) + " |")
    md = ["### long-term forecasting (MSE / MAE, lower is better)", "", *lines, "",
          "Avg = mean over the horizons listed (shown only when every horizon was run); "
          "cells are means over runs (± sample std when more than one), n = runs."]
    return "\n".join(md) + "\n", pd.DataFrame(rows)


def _save_csv(path: str, table: pd.DataFrame) -> None:
    atomic_write(path, lambda tmp: table.to_csv(tmp, index=False))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m utils.eval.tables", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--summary", default="results/summary.csv")
    p.add_argument("--task", default="anomaly_detection", choices=("anomaly_detection", "long_term_forecast"))
    p.add_argument("--metrics", nargs="+", default=None, help="anomaly metric columns (default: a paper-vs-honest set)")
    p.add_argument("--method_col", default="model", help="column naming the method (model or model_id)")
    p.add_argument("--where", nargs="*", default=[], help="keep rows with col=value (all must hold)")
    p.add_argument("--layout", default="per_metric", choices=("per_metric", "wide"),
                   help="anomaly: one datasets-by-methods table per metric, or one (dataset, method) x metrics table")
    p.add_argument("--out_dir", default="results/tables")
    p.add_argument("--digits", type=int, default=None)
    args = p.parse_args(argv)
    try:
        df = load_summary(args.summary, args.task, args.where)
        if args.method_col not in df.columns:
            raise ValueError(f"--method_col {args.method_col!r} is not a column of {args.summary}")
        # forecasting rows of other lookbacks get their own dataset rows (L=...), horizons their own rows
        keys = ["dataset"] if args.task == "anomaly_detection" else ["dataset", "pred_len", "seq_len"]
        df = split_configurations(df, args.method_col, [k for k in keys if k in df.columns])
        outputs = []
        if args.task == "anomaly_detection" and args.layout == "wide":
            md, table = wide_table(df, list(args.metrics or DEFAULT_ANOMALY_METRICS), args.method_col,
                                   args.digits or 4)
            outputs.append((f"{args.task}_overview", md, table))
        elif args.task == "anomaly_detection":
            for metric in args.metrics or DEFAULT_ANOMALY_METRICS:
                md, table = anomaly_table(df, metric, args.method_col, args.digits or 4)
                outputs.append((f"{args.task}_{metric}", md, table))
        else:
            md, table = forecast_table(df, args.method_col, args.digits or 3)
            outputs.append((args.task, md, table))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for name, md, table in outputs:
        save_text(os.path.join(args.out_dir, f"{name}.md"), md)
        _save_csv(os.path.join(args.out_dir, f"{name}.csv"), table)
        print(md)
    print(f"tables written to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Compare detectors or forecasters on the same data, split, preprocessing and metrics: `python -m scripts.compare`.

    python -m scripts.compare --models CrossAlign,AnomalyTransformer,GPT4TS,PyOD:IForest,LinearAE \
        --data Synthetic,MSL,SMAP,SMD:machine-1-2 --seeds 0,1,2 [--budget quick|paper] [--jobs N] \
        [--root ../shared/data] [--out results/compare] [--extra "--threads 1"]
    python -m scripts.compare --task long_term_forecast --models DLinear,PatchTST,iTransformer,GPT4TS,CrossAlign \
        --data ETTh1,ETTh2,Exchange,ILI --pred_len 96,192,336,720 --seeds 0 --root ../shared/data

Forecasting (`--task long_term_forecast`): every (model, dataset, horizon, seed) is one run, `RepeatLast`
is always added as the naive baseline, and ILI takes the Time-Series-Library's horizons in place of the
long ones (96, 192, 336, 720 -> 24, 36, 48, 60, at its lookback 36; other horizons as given). A dataset
folder is `<root>/<folder>` holding the dataset's file, the folder being the TSLib name (ETT-small), the
dataset's name or any folder of `<root>` that holds the file (../shared/data/ETT). The table is the paper's
layout (`scripts/forecast_table.py`): `<out>/tables/forecast.md` and `forecast.csv`, with the paper's
reported CrossAlign averages as a separate reference table.

Every (model, dataset, seed) is one `run.py` process (train on the training split, early stopping on the
validation split, test) with the same settings; `Random` is always added as the chance level. A run
whose results already exist is skipped, so an interrupted comparison continues where it stopped. Each
run writes into its own folder `<out>/runs/<model>_<data>_<seed>/` (its own summary.csv: concurrent
runs never share a file), and the merged rows go to `<out>/summary.csv`.

Specs: a model is a registered name (`python run.py --help`, models/__init__.py) or `PyOD:<Detector>`;
a dataset is a `--data` name or `<data>:<entity>` (SMD machine, UCR id, TSB-AD file id). Data folders
are `<root>/<data>` (the layout of ../shared/data and of ./dataset).

Budgets (`--budget`): `quick` is a stated CPU budget for smoke comparisons, the same for every model
(`BUDGETS` below: 1 epoch of at most 200 steps, training windows every 10 points, one thread, offline
backbones for the LLM models); `paper` runs every model at its defaults (the datasets' epochs, windows
every point, GPT-2).

Outputs in `<out>/tables/`: `paper_columns.md` (the paper's protocol: PA-F1 and the range-AUCs of the
point-adjusted predictions at the test-leaking threshold) and `honest_columns.md` (VUS-PR, AUC-PR,
affiliation F1 and point-wise F1 at the train+val and POT thresholds), datasets by models, mean ± std
over seeds, the best model of each dataset in bold; `comparison.csv` (long form); `comparison.png`
(per-dataset bars with the seed spread). Exit status 0 when every run succeeded, 1 when some failed
(their messages are in `<out>/failures.txt` and printed), 2 for bad arguments.
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from utils.io import atomic_write, save_text

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASELINE = "Random"
FORECAST_BASELINE = "RepeatLast"
FORECAST = "long_term_forecast"
# ILI's horizons in the Time-Series-Library and the paper's convention, by position of the long ones
HORIZON_MAP: dict[str, dict[int, int]] = {"ILI": {96: 24, 192: 36, 336: 48, 720: 60}}

PAPER_COLUMNS = (("paper_pa_f1", "PA-F1"), ("paper_range_auc_roc", "R-AUC-ROC (of PA predictions)"),
                 ("paper_range_auc_pr", "R-AUC-PR (of PA predictions)"))
HONEST_COLUMNS = (("vus_pr", "VUS-PR"), ("auc_pr", "AUC-PR"), ("trainval_aff_f1", "Aff-F1 (train+val)"),
                  ("trainval_f1", "point F1 (train+val)"), ("pot_f1", "point F1 (POT)"))
PLOT_COLUMNS = (("vus_pr", "VUS-PR (honest)"), ("paper_range_auc_pr", "paper R-AUC-PR (test-leaking)"))

# run.py flags per budget: "all" for every model, then per model name
BUDGETS: dict[str, dict[str, list[str]]] = {
    "quick": {"all": ["--train_epochs", "1", "--max_train_steps", "200", "--step", "10", "--threads", "1",
                      "--batch_size", "32"],
              "CrossAlign": ["--llm", "minilm", "--llm_layers", "2", "--learning_rate", "1e-3"],
              "GPT4TS": ["--llm", "minilm", "--llm_layers", "2", "--learning_rate", "1e-3"],
              "AnomalyTransformer": ["--learning_rate", "1e-3"], "DCdetector": ["--learning_rate", "1e-3"],
              "USAD": ["--learning_rate", "1e-3"],
              # TimesNet's 2D Inception blocks cost ~24 s a step on one CPU thread at width 128 (SMD, L=100);
              # 32 is between the Time-Series-Library's anomaly widths (8 for MSL, 64 for SMD)
              "TimesNet": ["--learning_rate", "1e-3", "--d_model", "32", "--d_ff", "32"],
              "LinearAE": ["--learning_rate", "1e-3"]},
    "paper": {"all": []},
}
# forecasting: the same flags for every learned model (one epoch of at most 100 steps, lr 1e-3: ten times
# TSLib's 1e-4 because one short epoch replaces its ten), offline backbones with 2 blocks for the LLM models
# (as the anomaly budget), and PatchTST at its own paper's width for the small ETT sets (d 16, d_ff 128,
# 4 heads) instead of TSLib's 512/2048: at 512 one step costs about 3 s on one loaded CPU thread
FORECAST_BUDGETS: dict[str, dict[str, list[str]]] = {
    "quick": {"all": ["--train_epochs", "1", "--max_train_steps", "100", "--threads", "1",
                      "--learning_rate", "1e-3"],
              "CrossAlign": ["--llm", "minilm", "--llm_layers", "2"],
              "GPT4TS": ["--llm", "minilm", "--llm_layers", "2"],
              "PatchTST": ["--d_model", "16", "--d_ff", "128", "--n_heads", "4"]},
    "paper": {"all": []},
}


@dataclass(frozen=True)
class Run:
    """One (model, dataset, seed) of the comparison and its run.py command line."""
    model: str  # label: registered name or PyOD-<Detector>
    data: str
    entity: str
    seed: int
    flags: tuple[str, ...]
    pred_len: int | None = None  # forecasting horizon; None for anomaly detection

    @property
    def key(self) -> str:
        horizon = f"pl{self.pred_len}" if self.pred_len is not None else ""
        return "_".join(p for p in (self.model, self.data, self.entity, horizon, f"seed{self.seed}") if p)


def parse_models(spec: str, baseline: str = BASELINE) -> list[tuple[str, list[str]]]:
    """`CrossAlign,PyOD:IForest` -> [(label, run.py flags)], the baseline (Random) appended when missing."""
    out = []
    for item in [s.strip() for s in spec.split(",") if s.strip()]:
        name, _, detector = item.partition(":")
        if detector and name != "PyOD":
            raise ValueError(f"model spec {item!r}: only PyOD takes ':<Detector>' (e.g. PyOD:IForest)")
        if name == "PyOD":
            detector = detector or "IForest"
            out.append((f"PyOD-{detector}", ["--model", "PyOD", "--detector", detector]))
        else:
            out.append((name, ["--model", name]))
    if not out:
        raise ValueError("--models is empty; e.g. --models CrossAlign,PyOD:IForest")
    if baseline not in [label for label, _ in out]:
        out.append((baseline, ["--model", baseline]))
    return out


def parse_data(spec: str, root: str | None) -> list[tuple[str, str, list[str]]]:
    """`MSL,SMD:machine-1-2` -> [(data, entity, run.py flags)]."""
    out = []
    for item in [s.strip() for s in spec.split(",") if s.strip()]:
        data, _, entity = item.partition(":")
        flags = ["--data", data] + (["--entity", entity] if entity else [])
        if data != "Synthetic":
            folder = os.path.join(root, data) if root else None
            if folder is not None and not os.path.isdir(folder):
                raise ValueError(f"dataset {item!r}: folder {folder} not found (check --root; it should hold "
                                 f"one folder per dataset, as ../shared/data does)")
            flags += ["--root_path", folder] if folder else []
        out.append((data, entity, flags))
    if not out:
        raise ValueError("--data is empty; e.g. --data Synthetic,MSL")
    return out


def forecast_folder(root: str, data: str) -> str:
    """The folder of `root` holding forecasting dataset `data`'s file (see the module docstring)."""
    from data_provider.specs import get_forecast_spec
    spec = get_forecast_spec(data)
    if spec.file is None:
        raise ValueError(f"dataset {data!r}: compare needs a named dataset (custom has no file to find)")
    names = [n for n in (spec.folder, spec.name, *spec.aliases) if n]
    others = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))) if os.path.isdir(root) else []
    for name in names + others:
        if os.path.isfile(os.path.join(root, name, spec.file)):
            return os.path.join(root, name)
    raise ValueError(f"dataset {data!r}: {spec.file} not found in {root}/<folder> (check --root; e.g. "
                     f"{os.path.join(root, names[0], spec.file)})")


def parse_forecast_data(spec: str, root: str | None) -> list[tuple[str, str, list[str]]]:
    """`ETTh1,ILI` -> [(data, "", run.py flags)] for forecasting."""
    out = []
    for data in [s.strip() for s in spec.split(",") if s.strip()]:
        folder = forecast_folder(root, data) if root else None
        out.append((data, "", ["--data", data] + (["--root_path", folder] if folder else [])))
    if not out:
        raise ValueError("--data is empty; e.g. --data ETTh1,ETTh2")
    return out


def horizons_of(data: str, pred_lens: list[int]) -> list[int]:
    """The horizons run for `data`: `pred_lens`, mapped through `HORIZON_MAP` (ILI's convention)."""
    from data_provider.specs import get_forecast_spec
    mapping = HORIZON_MAP.get(get_forecast_spec(data).name, {})
    return [mapping.get(p, p) for p in pred_lens]


def plan_forecast(models: list, datasets: list, seeds: list[int], budget: str, extra: list[str],
                  pred_lens: list[int]) -> list[Run]:
    runs = []
    for data, _, data_flags in datasets:
        for pred_len in horizons_of(data, pred_lens):
            for label, model_flags in models:
                name = model_flags[1]
                budget_flags = FORECAST_BUDGETS[budget]["all"] + FORECAST_BUDGETS[budget].get(name, [])
                for seed in seeds:
                    flags = ["--task_name", FORECAST, "--is_training", "1", *model_flags, *data_flags,
                             "--pred_len", str(pred_len), "--seed", str(seed), "--model_id", label,
                             "--des", f"compare-{budget}", "--no_progress", *budget_flags, *extra]
                    runs.append(Run(label, data, "", seed, tuple(flags), pred_len))
    return runs


def plan(models: list, datasets: list, seeds: list[int], budget: str, extra: list[str]) -> list[Run]:
    runs = []
    for data, entity, data_flags in datasets:
        for label, model_flags in models:
            name = model_flags[1]
            budget_flags = BUDGETS[budget]["all"] + BUDGETS[budget].get(name, [])
            for seed in seeds:
                flags = ["--task_name", "anomaly_detection", "--is_training", "1", *model_flags, *data_flags,
                         "--seed", str(seed), "--model_id", label, "--des", f"compare-{budget}",
                         "--no_progress", "--no_plot", *budget_flags, *extra]
                runs.append(Run(label, data, entity, seed, tuple(flags)))
    return runs


def _done(folder: str) -> bool:
    path = os.path.join(folder, "summary.csv")
    return os.path.exists(path) and os.path.getsize(path) > 0


def execute(run: Run, out: str, device: str | None) -> tuple[Run, int, str, float]:
    """Run one `run.py` process in its own folder; (run, exit status, output tail, seconds)."""
    folder = os.path.join(out, "runs", run.key)
    if _done(folder):
        return run, 0, "skipped (results exist)", 0.0
    env = dict(os.environ)
    if device is not None:
        env["CUDA_VISIBLE_DEVICES"] = device
    cmd = [sys.executable, os.path.join(REPO, "run.py"), *run.flags, "--results", folder,
           "--checkpoints", os.path.join(out, "checkpoints", run.key)]
    t0 = time.time()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-8:])
    return run, done.returncode, tail, time.time() - t0


def _gpus() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d for d in visible.split(",") if d.strip()]
    try:
        import torch
        return [str(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        return []


def merge(out: str, runs: list[Run]) -> pd.DataFrame:
    """The summary rows of every finished run, with the comparison's model label; written to <out>/summary.csv."""
    frames = []
    for run in runs:
        path = os.path.join(out, "runs", run.key, "summary.csv")
        if _done(os.path.dirname(path)):
            df = pd.read_csv(path, dtype={"entity": str})
            frames.append(df.tail(1).assign(method=run.model))
    if not frames:
        return pd.DataFrame()
    df = pd.concat(frames, ignore_index=True)
    atomic_write(os.path.join(out, "summary.csv"), lambda tmp: df.to_csv(tmp, index=False))
    return df


def _label(df: pd.DataFrame) -> pd.Series:
    entity = df["entity"].fillna("").astype(str) if "entity" in df.columns else ""
    return df["data"].astype(str) + np.where(entity != "", "/" + entity, "")


def stats(df: pd.DataFrame, metrics) -> pd.DataFrame:
    """Long form: dataset, method, metric, mean, std (sample; NaN for one seed), n."""
    df = df.assign(dataset=_label(df))
    rows = []
    for (ds, method), g in df.groupby(["dataset", "method"], sort=False):
        for metric, _ in metrics:
            v = g[metric].dropna() if metric in g.columns else pd.Series(dtype=float)
            rows.append({"dataset": ds, "method": method, "metric": metric, "mean": v.mean() if len(v) else math.nan,
                         "std": v.std(ddof=1) if len(v) > 1 else math.nan, "n": len(v)})
    return pd.DataFrame(rows)


def markdown(st: pd.DataFrame, metrics, title: str, caption: str) -> str:
    """One table per metric: datasets by methods, mean ± std, the best mean of each dataset in bold."""
    methods = list(dict.fromkeys(st["method"]))
    methods = [m for m in methods if m != BASELINE] + [BASELINE]
    out = [f"## {title}", "", caption, ""]
    for metric, name in metrics:
        sub = st[st["metric"] == metric]
        out += [f"### {name} (`{metric}`)", "", "| dataset | " + " | ".join(methods) + " |",
                "|---|" + "---:|" * len(methods)]
        for ds in dict.fromkeys(sub["dataset"]):
            cells = sub[sub["dataset"] == ds].set_index("method")
            best = cells["mean"].max()
            row = []
            for m in methods:
                if m not in cells.index or not np.isfinite(cells.loc[m, "mean"]):
                    row.append("—")
                    continue
                mean, std, n = cells.loc[m, "mean"], cells.loc[m, "std"], int(cells.loc[m, "n"])
                text = f"{mean:.3f}" + (f" ± {std:.3f}" if n > 1 and np.isfinite(std) else "")
                row.append(f"**{text}**" if mean == best else text)
            out.append(f"| {ds} | " + " | ".join(row) + " |")
        out.append("")
    return "\n".join(out) + "\n"


def plot(st: pd.DataFrame, path: str) -> None:
    """Per-dataset grouped bars (mean, error bar = seed std) for the honest VUS-PR and the paper's R-AUC-PR."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(st["dataset"]))
    methods = list(dict.fromkeys(st["method"]))
    fig, axes = plt.subplots(1, len(PLOT_COLUMNS), figsize=(max(7.0, 1.6 * len(datasets) * len(PLOT_COLUMNS)), 4.2),
                             squeeze=False)
    width = 0.8 / max(len(methods), 1)
    # tab10 without its grey (the chance level is the hatched grey bar), then tab20's light shades
    palette = [c for i, c in enumerate(plt.get_cmap("tab10").colors) if i != 7] + \
        list(plt.get_cmap("tab20").colors[1::2])
    learned = [m for m in methods if m != BASELINE]
    colour = {m: palette[i % len(palette)] for i, m in enumerate(learned)}
    for ax, (metric, name) in zip(axes[0], PLOT_COLUMNS):
        sub = st[st["metric"] == metric]
        for i, m in enumerate(methods):
            vals = [sub[(sub["dataset"] == d) & (sub["method"] == m)] for d in datasets]
            mean = [float(v["mean"].iloc[0]) if len(v) else np.nan for v in vals]
            std = [float(v["std"].iloc[0]) if len(v) and np.isfinite(v["std"].iloc[0]) else 0.0 for v in vals]
            base = m == BASELINE
            ax.bar(np.arange(len(datasets)) + (i - (len(methods) - 1) / 2) * width, mean, width, yerr=std,
                   capsize=2, label=m, color="0.85" if base else colour[m], hatch="//" if base else None,
                   edgecolor="0.3" if base else None)
        ax.set_xticks(np.arange(len(datasets)), datasets, rotation=20)
        ax.set_ylim(0, 1)
        ax.set_title(name)
    axes[0][0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)


def forecast_tables(df: pd.DataFrame, runs: list[Run], args, seeds: list[int], tables: str) -> None:
    """Write and print the paper's forecasting layout (`scripts/forecast_table.py`) for the finished runs."""
    from scripts import forecast_table

    methods = list(dict.fromkeys(r.model for r in runs if r.model != FORECAST_BASELINE)) + [FORECAST_BASELINE]
    budget = FORECAST_BUDGETS[args.budget]
    caption = (f"Measured: {len(seeds)} seed(s) {','.join(map(str, seeds))}, mean over seeds; budget `{args.budget}`: "
               f"{' '.join(budget['all']) or 'each model at its defaults'}"
               + "".join(f"; {m} `{' '.join(f)}`" for m, f in budget.items() if m != "all")
               + (f"; extra flags `{args.extra}`" if args.extra else "")
               + ". Other hyperparameters: each model's defaults (`models.MODEL_DEFAULTS`, the Time-Series-Library's "
               "at lookback 96; ILI lookback 36). Lowest MSE and MAE of each row in bold; RepeatLast is the naive "
               "baseline; Avg = mean over the horizons of the dataset, shown when every horizon ran.")
    seconds = forecast_table.epoch_seconds(args.out, {r.key: (r.model, r.data, r.pred_len) for r in runs})
    md, long = forecast_table.markdown(df, methods, caption, seconds)
    save_text(os.path.join(tables, "forecast.md"), md)
    atomic_write(os.path.join(tables, "forecast.csv"), lambda tmp: long.to_csv(tmp, index=False))
    print(md)
    print(f"tables written to {tables}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="anomaly_detection", choices=("anomaly_detection", FORECAST))
    p.add_argument("--models", required=True, help="comma-separated: CrossAlign,AnomalyTransformer,PyOD:IForest,...")
    p.add_argument("--data", required=True, help="comma-separated: Synthetic,MSL,SMD:machine-1-2,...")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    p.add_argument("--pred_len", default=None,
                   help="forecasting horizons, comma-separated (default 96,192,336,720; ILI: 24,36,48,60)")
    p.add_argument("--budget", default="quick", choices=tuple(BUDGETS))
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (one per visible GPU when several)")
    p.add_argument("--root", default=os.path.join(REPO, "dataset"), help="folder with one folder per dataset")
    p.add_argument("--out", default=os.path.join("results", "compare"))
    p.add_argument("--extra", default="", help="more run.py flags for every run, e.g. \"--threads 1\"")
    p.add_argument("--dry_run", action="store_true", help="print the runs and exit")
    p.add_argument("--tables_only", action="store_true",
                   help="run nothing: tabulate the runs of this comparison that have finished")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        if not seeds:
            raise ValueError("--seeds is empty")
        if args.jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
        if args.task == FORECAST:
            pred_lens = [int(p) for p in (args.pred_len or "96,192,336,720").split(",") if p.strip()]
            if not pred_lens or min(pred_lens) < 1:
                raise ValueError(f"--pred_len must list horizons >= 1, got {args.pred_len!r}")
            runs = plan_forecast(parse_models(args.models, FORECAST_BASELINE),
                                 parse_forecast_data(args.data, args.root), seeds, args.budget, args.extra.split(),
                                 pred_lens)
        else:
            if args.pred_len is not None:
                raise ValueError("--pred_len only applies to --task long_term_forecast")
            runs = plan(parse_models(args.models), parse_data(args.data, args.root), seeds, args.budget,
                        args.extra.split())
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        for run in runs:
            print(run.key, " ".join(run.flags))
        return 0
    gpus = _gpus()
    print(f"{len(runs)} runs ({args.budget} budget), {args.jobs} at a time"
          + (f" over GPUs {','.join(gpus)}" if len(gpus) > 1 else ""), flush=True)
    failures = []

    def task(i_run):
        i, run = i_run
        device = gpus[i % len(gpus)] if len(gpus) > 1 else None
        return execute(run, args.out, device)

    runs_to_do = [] if args.tables_only else runs
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for run, code, tail, seconds in pool.map(task, enumerate(runs_to_do)):
            status = ("skipped (results exist)" if tail.startswith("skipped") else "ok") if code == 0 \
                else f"FAILED (exit {code})"
            print(f"{run.key}: {status} {seconds:.0f}s" + ("" if code == 0 else "\n  " + tail.replace("\n", "\n  ")),
                  flush=True)
            if code != 0:
                failures.append(f"{run.key} (exit {code}): {' '.join(run.flags)}\n{tail}\n")
    if failures:
        save_text(os.path.join(args.out, "failures.txt"), "\n".join(failures))
    df = merge(args.out, runs)
    if df.empty:
        print("no finished runs; nothing to tabulate", file=sys.stderr)
        return 1
    tables = os.path.join(args.out, "tables")
    if args.task == FORECAST:
        forecast_tables(df, runs, args, seeds, tables)
        return 1 if failures else 0
    st = stats(df, PAPER_COLUMNS + HONEST_COLUMNS)
    caption = (f"{len(seeds)} seed(s) {','.join(map(str, seeds))}; budget `{args.budget}`: "
               f"{' '.join(BUDGETS[args.budget]['all']) or 'each model at its defaults'}"
               + (f"; extra flags `{args.extra}`" if args.extra else "") + ". Mean ± sample std over seeds; "
               "best mean per dataset in bold; Random is the chance level.")
    paper_md = markdown(st, PAPER_COLUMNS, "The paper's columns (test-leaking threshold, prediction-based)",
                        caption + " These reward even random scores: read them beside the honest ones.")
    honest_md = markdown(st, HONEST_COLUMNS, "Honest columns (scores as TSB-AD; leak-free thresholds)", caption)
    save_text(os.path.join(tables, "paper_columns.md"), paper_md)
    save_text(os.path.join(tables, "honest_columns.md"), honest_md)
    atomic_write(os.path.join(tables, "comparison.csv"), lambda tmp: st.to_csv(tmp, index=False))
    plot(st, os.path.join(tables, "comparison.png"))
    print(paper_md)
    print(honest_md)
    print(f"tables and plot written to {tables}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

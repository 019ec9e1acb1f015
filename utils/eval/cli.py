"""Evaluate any detector's saved scores with the framework's protocol (README, Evaluation).

    python -m utils.eval --scores S.npy --labels L.npy [--train_scores T.npy] [--val_scores V.npy]
        [--anomaly_ratio R] [--vus_window W | --series X.npy] [--out report.json] [--markdown report.md]
        [--random uniform --seed N] [--summary results/summary.csv --data MSL --model NAME]

Files are `.npy` (1-D, or 2-D with one column) or text/CSV with one value per line. The compact table
goes to stdout; `--out` writes the full report as JSON, `--markdown` the report.md body (atomic writes);
`--summary` appends the run's row (the same columns as `run.py`'s) to a summary CSV for the tables.
`--random uniform` replaces the scores (test, and train/val when given) by seeded U(0, 1) scores of
the same lengths: the chance baseline on any dataset. Then `--scores` is not needed and
`--train_scores`/`--val_scores` only give lengths, so the raw split files work, e.g.

    python -m utils.eval --random uniform --labels MSL/MSL_test_label.npy \
        --train_scores MSL/MSL_train.npy --anomaly_ratio 0.85

Input handling: scores and labels of different lengths, NaN/Inf scores, labels other than 0/1
(floats 0.0/1.0 are accepted) and all-zero labels are errors (exit status 2, a message naming the
problem and the fix). `--allow_no_anomalies` evaluates all-zero labels anyway; label-dependent
metrics are then null.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from utils.eval.metrics import check_labels, check_scores, estimate_period
from utils.eval.render import render_markdown, render_table
from utils.eval.report import evaluate_scores, summary_row
from utils.io import append_summary, save_json, save_text
from utils.provenance import git_commit


def load_array(path: str) -> np.ndarray:
    """A 1-D array from `.npy` or a text/CSV file of one number per line (a 2-D single column is flattened)."""
    try:
        a = np.load(path, allow_pickle=False) if path.endswith(".npy") else np.loadtxt(path, delimiter=",", ndmin=1)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {path}: {err}") from err
    if a.ndim == 2 and 1 in a.shape:
        a = a.reshape(-1)
    if a.ndim != 1:
        raise ValueError(f"{path}: expected one value per time point (1-D), got shape {a.shape}")
    return a


def _length(path: str) -> int:
    """Number of time points (first dimension) of an array file, without reading a .npy into memory."""
    if path.endswith(".npy"):
        return int(np.load(path, mmap_mode="r").shape[0])
    return int(np.loadtxt(path, delimiter=",", ndmin=2).shape[0])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m utils.eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scores", help="test scores [T] (.npy or text); not needed with --random")
    p.add_argument("--labels", required=True, help="test labels [T], 0/1")
    p.add_argument("--train_scores", help="training scores: enables the paper threshold and POT/SPOT")
    p.add_argument("--val_scores", help="validation scores: joins train for the train+val threshold")
    p.add_argument("--anomaly_ratio", type=float, default=1.0, help="percent flagged by percentile thresholds")
    p.add_argument("--pot_risk", type=float, default=1e-3)
    p.add_argument("--pot_level", type=float, default=0.98)
    p.add_argument("--vus_window", type=int, default=None, help="range-AUC/VUS window (default 100, as TSB-AD)")
    p.add_argument("--series", help="raw test series (.npy [T] or [T, C]): estimate the VUS window from its "
                                    "first channel, as TSB-AD does")
    p.add_argument("--random", choices=("uniform",), help="evaluate seeded random scores of the same lengths")
    p.add_argument("--seed", type=int, default=0, help="seed for --random")
    p.add_argument("--allow_no_anomalies", action="store_true", help="evaluate all-zero labels (metrics null)")
    p.add_argument("--summary", help="append a row to this summary CSV (e.g. results/summary.csv) so the "
                                     "scores enter `python -m utils.eval.tables`; needs --data and --model")
    p.add_argument("--data", help="dataset name for the summary row (e.g. MSL)")
    p.add_argument("--entity", default="", help="sub-series for the summary row (SMD machine, UCR id)")
    p.add_argument("--model", help="method name for the summary row (default Random with --random)")
    p.add_argument("--out", help="write the full report as JSON here")
    p.add_argument("--markdown", help="write the Markdown report here")
    return p


def run(args: argparse.Namespace) -> dict:
    """Load, validate, evaluate; return the report (raises ValueError on bad input)."""
    labels = check_labels(load_array(args.labels))
    if args.random:
        rng = np.random.default_rng(args.seed)
        scores = rng.random(labels.shape[0])
        # random train/val scores only need a length: the first dimension of the given file
        train = None if args.train_scores is None else rng.random(_length(args.train_scores))
        val = None if args.val_scores is None else rng.random(_length(args.val_scores))
    else:
        if args.scores is None:
            raise ValueError("--scores is required (or pass --random uniform for the chance baseline)")
        scores = check_scores(load_array(args.scores), "scores")
        train = None if args.train_scores is None else check_scores(load_array(args.train_scores), "train_scores")
        val = None if args.val_scores is None else check_scores(load_array(args.val_scores), "val_scores")
    if scores.shape[0] != labels.shape[0]:
        raise ValueError(f"scores have {scores.shape[0]} points but labels have {labels.shape[0]}; "
                         f"pass the labels of the same test split")
    if not labels.any() and not args.allow_no_anomalies:
        raise ValueError("labels contain no anomaly (all 0): recall, F1, AUCs and VUS are undefined; "
                         "check the label file or pass --allow_no_anomalies")
    window = args.vus_window
    if window is None and args.series:
        series = np.load(args.series) if args.series.endswith(".npy") else np.loadtxt(args.series, delimiter=",")
        window = estimate_period(series.reshape(series.shape[0], -1)[:, 0])
    report = evaluate_scores(scores, labels, train_scores=train, val_scores=val, anomaly_ratio=args.anomaly_ratio,
                             pot_risk=args.pot_risk, pot_level=args.pot_level, vus_window=window)
    report["source"] = {"scores": "random uniform, seed %d" % args.seed if args.random else args.scores,
                        "labels": args.labels, "train_scores": args.train_scores, "val_scores": args.val_scores}
    return report


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    model = args.model or ("Random" if args.random else None)
    if args.summary and not (args.data and model):
        print("error: --summary needs --data and --model (the table's row and column)", file=sys.stderr)
        return 2
    for flag, example in (("out", "report.json"), ("markdown", "report.md"), ("summary", "summary.csv")):
        path = getattr(args, flag)
        if path and os.path.isdir(path):  # checked before evaluating: the report would be lost at the end
            print(f"error: --{flag} {path} is a folder; give a file name, e.g. --{flag} "
                  f"{os.path.join(path, example)}", file=sys.stderr)
            return 2
    try:
        report = run(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(render_table(report))
    if args.summary:
        row = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "setting": f"evaluate_{model}_{args.data}",
               "task_name": "anomaly_detection", "model": model, "model_id": model, "data": args.data,
               "entity": args.entity, "seed": args.seed if args.random else "", "git_commit": git_commit()["commit"],
               "anomaly_ratio": args.anomaly_ratio, **summary_row(report)}
        append_summary(args.summary, row)
    if args.out:
        save_json(args.out, report)
    if args.markdown:
        title = f"random uniform scores (seed {args.seed})" if args.random else args.scores
        save_text(args.markdown, render_markdown(report, title=title))
    return 0


if __name__ == "__main__":
    sys.exit(main())

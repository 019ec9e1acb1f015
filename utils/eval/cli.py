"""Evaluate any detector's saved scores with the framework's protocol (README, Evaluation).

    python -m utils.eval --scores S.npy --labels L.npy [--train_scores T.npy] [--val_scores V.npy]
        [--anomaly_ratio R] [--vus_window W | --series X.npy] [--out report.json] [--markdown report.md]
        [--random uniform --seed N] [--summary results/summary.csv --data MSL --model NAME]
    python -m utils.eval --run results/<setting> [--out report.json] [--markdown report.md]

`--run` rebuilds a run.py anomaly run's full report (every threshold and metric) from its folder: the
test, train and validation scores and labels it saved, and the evaluation flags in its metrics.json
(flags given here win). It says whether the rebuilt report equals the saved one.

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
import hashlib
import json
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


DEFAULTS = {"anomaly_ratio": 1.0, "pot_risk": 1e-3, "pot_level": 0.98}
RUN_FILES = {"scores": "scores.npy", "labels": "labels.npy", "train_scores": "train_scores.npy",
             "val_scores": "val_scores.npy"}


def load_run(args: argparse.Namespace) -> dict:
    """Fill `args` from the run folder `args.run` (files and evaluation flags not given); return its metrics.json."""
    folder = args.run
    meta_path = os.path.join(folder, "metrics.json")
    if not os.path.isdir(folder):
        raise ValueError(f"--run {folder}: no such folder; pass a run.py results folder, results/<setting>")
    if os.path.exists(os.path.join(folder, "INCOMPLETE")):
        raise ValueError(f"--run {folder} is marked INCOMPLETE: the run was interrupted while writing its "
                         f"results; run it again (--is_training 0 retests its checkpoint)")
    if not os.path.isfile(meta_path):
        raise ValueError(f"--run {folder} has no metrics.json; is it a run.py results folder?")
    with open(meta_path) as f:
        meta = json.load(f)
    if meta.get("task_name") != "anomaly_detection":
        raise ValueError(f"--run {folder} is a {meta.get('task_name')} run; only anomaly runs have scores to evaluate")
    missing = [name for name in RUN_FILES.values() if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise ValueError(f"--run {folder} lacks {', '.join(missing)}: it was written by an older version, "
                         f"before run.py saved the train and validation scores; run it again to write them")
    for key, name in RUN_FILES.items():
        if getattr(args, key) is None:
            setattr(args, key, os.path.join(folder, name))
    run_args = meta.get("args", {})
    for key in ("anomaly_ratio", "pot_risk", "pot_level", "vus_window"):
        if getattr(args, key) is None:
            setattr(args, key, run_args.get(key))
    for key, run_key in (("data", "data"), ("model", "model"), ("entity", "entity")):
        if not getattr(args, key):
            setattr(args, key, run_args.get(run_key) or "")
    return meta


def _comparable(report: dict) -> dict:
    """A report without what a rebuild cannot reproduce (timings, the data summary, file names)."""
    return {k: v for k, v in report.items() if k not in ("seconds", "data", "source")}


def _inputs_digest(args: argparse.Namespace, scores: bool) -> str:
    """Digest of what an evaluation read: the labels and flags, and with `scores` the scores' contents
    (or the random seed). With them it is the summary row's identity (its setting: the same scores
    evaluated again count once), without them its configuration (what the tables average over)."""
    h = hashlib.sha256()
    keys = ("labels", "scores", "train_scores", "val_scores") if scores and not args.random else ("labels",)
    for key in keys:
        path = getattr(args, key)
        h.update(key.encode())
        if path:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    h.update(json.dumps([args.model, args.data, args.entity, args.random, args.seed if scores else None,
                         args.anomaly_ratio, args.pot_risk, args.pot_level, args.vus_window, args.series]).encode())
    return h.hexdigest()[:10]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m utils.eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", help="a run.py results folder (results/<setting>): rebuild its report from the "
                                 "scores it saved")
    p.add_argument("--scores", help="test scores [T] (.npy or text); not needed with --random or --run")
    p.add_argument("--labels", help="test labels [T], 0/1 (required unless --run)")
    p.add_argument("--train_scores", help="training scores: enables the paper threshold and POT/SPOT")
    p.add_argument("--val_scores", help="validation scores: joins train for the train+val threshold")
    p.add_argument("--anomaly_ratio", type=float, default=None,
                   help=f"percent flagged by percentile thresholds (default {DEFAULTS['anomaly_ratio']:g}, or the run's)")
    p.add_argument("--pot_risk", type=float, default=None, help=f"default {DEFAULTS['pot_risk']:g}, or the run's")
    p.add_argument("--pot_level", type=float, default=None, help=f"default {DEFAULTS['pot_level']:g}, or the run's")
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
    for key, value in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.labels is None:
        raise ValueError("--labels is required (or pass --run results/<setting> to rebuild a run's report)")
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
    for flag, example in (("out", "report.json"), ("markdown", "report.md"), ("summary", "summary.csv")):
        path = getattr(args, flag)
        if path and os.path.isdir(path):  # checked before evaluating: the report would be lost at the end
            print(f"error: --{flag} {path} is a folder; give a file name, e.g. --{flag} "
                  f"{os.path.join(path, example)}", file=sys.stderr)
            return 2
    try:
        meta = load_run(args) if args.run else None
        model = args.model or ("Random" if args.random else None)
        if args.summary and not (args.data and model):
            raise ValueError("--summary needs --data and --model (the table's row and column)")
        report = run(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(render_table(report))
    if meta is not None:
        same = _comparable(json.loads(json.dumps(report))) == _comparable(meta["metrics"])
        print(f"rebuilt from {args.run}: " + ("equals its metrics.json" if same else
                                                "DIFFERS from its metrics.json (a different code version or "
                                                "evaluation flags)"))
    if args.summary:
        # the setting names what was evaluated, so a repeated evaluation counts once in the tables
        args.model = model
        setting = "_".join(["evaluate", model, args.data] + ([args.entity] if args.entity else [])
                           + [f"h{_inputs_digest(args, scores=True)}"] + ([f"sd{args.seed}"] if args.random else []))
        row = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "setting": setting,
               "task_name": "anomaly_detection", "model": model, "model_id": model, "data": args.data,
               "entity": args.entity, "seed": args.seed if args.random else "", "git_commit": git_commit()["commit"],
               "config": _inputs_digest(args, scores=False), **summary_row(report)}
        append_summary(args.summary, row)
    if args.out:
        save_json(args.out, report)
    if args.markdown:
        title = (meta["setting"] if meta is not None else
                 f"random uniform scores (seed {args.seed})" if args.random else args.scores)
        save_text(args.markdown, render_markdown(report, title=title))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: the full evaluation suite on a long synthetic series (`python -m scripts.bench metrics`).

A seeded series of `--length` points (default 1,000,000) with `--anomaly_rate` (2 %) of its points
in anomalous segments of 20..`--max_segment` points; scores are noise plus a bump on the segments,
train scores noise of `--length // 4` points. Prints the seconds of each metric and of the whole
`evaluate_scores` report (every threshold and metric, the paper's published protocol included). With
`--compare_vus` and the `vus` PyPI package importable, also times that package's reference VUS
(TSB-AD's `RangeAUC_volume_opt`) on the first `--compare_length` points beside ours on the same points,
and checks the two values agree.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--length", type=int, default=1_000_000)
    p.add_argument("--anomaly_rate", type=float, default=0.02)
    p.add_argument("--max_segment", type=int, default=400)
    p.add_argument("--window", type=int, default=100, help="range-AUC / VUS window (VUS buffers 0..window)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compare_vus", action="store_true", help="time the `vus` package's VUS too (if installed)")
    p.add_argument("--compare_length", type=int, default=100_000)


def synthetic(length: int, rate: float, max_segment: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded (test scores [T], labels [T], train scores [T//4]) with `rate` of points in segments."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(length, dtype=np.int8)
    target = int(rate * length)
    lengths = rng.integers(20, max_segment + 1, size=max(1, 2 * target // 20))
    lengths = lengths[: int(np.searchsorted(np.cumsum(lengths), target)) + 1]
    # place segments in disjoint slots so they never touch
    slots = rng.choice(length // (max_segment + 1) - 1, size=len(lengths), replace=False)
    starts = slots * (max_segment + 1) + rng.integers(0, max_segment + 1 - lengths)
    bounds = np.zeros(length + 1, dtype=np.int64)
    np.add.at(bounds, starts, 1)
    np.add.at(bounds, starts + lengths, -1)
    labels[np.cumsum(bounds[:-1]) > 0] = 1
    scores = rng.standard_normal(length) ** 2 + labels * rng.uniform(0.5, 3.0)
    train = rng.standard_normal(length // 4) ** 2
    return scores, labels, train


def _time(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(args: argparse.Namespace) -> int:
    from utils.eval import metrics as M
    from utils.eval import thresholds as T
    from utils.eval.report import evaluate_scores

    scores, labels, train = synthetic(args.length, args.anomaly_rate, args.max_segment, args.seed)
    n_seg = len(M.segments(labels)[0])
    print(f"series: {args.length} points, {labels.mean() * 100:.2f} % anomalous in {n_seg} segments; "
          f"train scores {len(train)}; window {args.window} (VUS buffers 0..{args.window}, 250 thresholds)")
    thr = T.paper_threshold(train, scores, 2.0)
    pred = scores > thr
    rows = []
    for name, fn in [
        ("paper threshold (percentile)", lambda: T.paper_threshold(train, scores, 2.0)),
        ("POT (train)", lambda: T.pot_threshold(train)),
        ("SPOT (100 blocks)", lambda: T.spot_thresholds(train, scores)),
        ("oracle best-F1", lambda: M.best_f1_threshold(scores, labels)),
        ("point-wise P/R/F1", lambda: M.precision_recall_f1(pred, labels)),
        ("point-adjusted P/R/F1/acc", lambda: M.adjusted_metrics(pred, labels)),
        ("PA%K curve (11 K) + area", lambda: M.pa_k_curve(pred, labels)),
        ("affiliation P/R/F1", lambda: M.affiliation(pred, labels)),
        ("AUC-ROC", lambda: M.auc_roc(scores, labels)),
        ("AUC-PR", lambda: M.auc_pr(scores, labels)),
        ("range-AUC-ROC/PR (vus RangeAUC)", lambda: M.range_auc(scores, labels, args.window)),
        ("VUS-ROC/PR (TSB-AD, buffers 0..window)", lambda: M.vus(scores, labels, args.window)),
        ("paper protocol (PA + range-AUC/VUS of predictions)", lambda: M.paper_protocol(pred, labels)),
    ]:
        _, sec = _time(fn)
        rows.append((name, sec))
    report, total = _time(lambda: evaluate_scores(scores, labels, train_scores=train, val_scores=None,
                                                  anomaly_ratio=2.0, vus_window=args.window))
    rows.append(("FULL evaluate_scores (5 thresholds x all metrics + paper block)", total))
    width = max(len(r[0]) for r in rows)
    print(f"\n{'metric':<{width}}  seconds")
    print("-" * (width + 10))
    for name, sec in rows:
        print(f"{name:<{width}}  {sec:7.3f}")
    f = report["threshold_free"]
    print(f"\nvalues: VUS-PR {f['vus_pr']:.4f}  VUS-ROC {f['vus_roc']:.4f}  AUC-PR {f['auc_pr']:.4f}  "
          f"paper PA-F1 {report['paper']['pa_f1']:.4f}  paper R-AUC-PR {report['paper']['range_auc_pr']:.4f}")
    print(f"target: full suite < 10 s -> {'met' if total < 10 else 'NOT met'} ({total:.1f} s)")

    if args.compare_vus:
        try:
            from vus.utils.metrics import metricor
        except ImportError:
            print("\n--compare_vus: the `vus` package is not importable; skipped")
            return 0
        n = min(args.compare_length, args.length)
        s, y = scores[:n], labels[:n].astype(int)
        (_, _, _, _, ref_roc, ref_pr), t_ref = _time(
            lambda: metricor().RangeAUC_volume_opt(labels_original=y, score=s, windowSize=args.window, thre=250))
        ours, t_ours = _time(lambda: M.vus(s, y, args.window))
        print(f"\nVUS on the first {n} points: vus package {t_ref:.2f} s, ours {t_ours:.3f} s "
              f"(x{t_ref / max(t_ours, 1e-9):.0f}); VUS-PR {ref_pr:.6f} vs {ours['vus_pr']:.6f}, "
              f"VUS-ROC {ref_roc:.6f} vs {ours['vus_roc']:.6f}")
    return 0

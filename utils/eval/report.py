"""The full evaluation report of one run's test scores (README, Evaluation): the paper's protocol beside
the honest ones.

`evaluate_scores` returns a JSON-serialisable nested dict (undefined values are None, never NaN):

    {"n_test", "n_anomalies", "anomaly_rate", "n_segments", "anomaly_ratio", "params": {...},
     "notes": [str],
     "thresholds": {name: {"value", "leaks_test", "oracle", "description", ...}},
     "per_threshold": {name: {"n_predicted",
                              "point": {precision, recall, f1},
                              "point_adjusted": {precision, recall, f1, accuracy},
                              "pa_k": {"k": [0..100], "f1": [...], "auc"},
                              "affiliation": {precision, recall, f1}}},
     "paper": {threshold, pa_accuracy, pa_precision, pa_recall, pa_f1, aff_precision, aff_recall,
               range_auc_roc, range_auc_pr, vus_roc, vus_pr, ...},
     "threshold_free": {auc_roc, auc_pr, range_auc_roc, range_auc_pr, vus_roc, vus_pr},
     "seconds": {step: wall seconds}}

`paper` is the paper's published evaluation, value for value (`metrics.paper_protocol`): at the
test-leaking `paper` threshold, its range-AUCs and VUS are computed on the point-adjusted BINARY
PREDICTIONS (TSB-UAD's original algorithm), which is what the paper's "ROC/PRC" columns report.
`threshold_free` is TSB-AD's evaluation of the raw scores: AUC-ROC, AUC-PR (average precision),
VUS-ROC/PR over buffers 0..`vus_window` (TSB-AD `get_metrics`) and range-AUC-ROC/PR at `vus_window`
(the `vus` package's `RangeAUC`).

Thresholds (`scores > value` predicts an anomaly):
- `paper`: percentile 100 - anomaly_ratio of train + TEST scores (leaks test scores; the paper's code);
- `trainval`: the same percentile of train + validation scores (leak-free);
- `pot`: POT on train scores, risk `pot_risk`, initial quantile `pot_level` (leak-free);
- `spot`: SPOT, POT updated block-wise along the test stream, as an online detector would (no labels);
- `oracle`: best point-wise F1 chosen WITH the test labels: an upper bound, not a result.
Thresholds whose inputs are missing (no train or validation scores) or whose fit fails are omitted,
with the reason in `notes`. Affiliation metrics need binary predictions, so they are reported per
threshold. Predictions are not stored; `predictions(report, test_scores)` rebuilds them.
"""
from __future__ import annotations

import math
import time

import numpy as np

from utils.eval import metrics as M
from utils.eval import thresholds as T
from utils.eval.columns import PAPER, PER_THRESHOLD, THRESHOLD, THRESHOLD_FREE, THRESHOLD_ORDER

DEFAULT_VUS_WINDOW = 100  # TSB-AD get_metrics(slidingWindow=100); VUS spans buffers 0..100
PAPER_SOURCE = ("xf530xf/LLMs-Mamba d9721c5 solver.py test() -> metrics/metrics.py combine_all_evaluation_scores: "
                "affiliation on the predictions, then range-AUC (window 100) and VUS (buffers 0..200) by TSB-UAD's "
                "original RangeAUC on the point-adjusted predictions")


def _clean(x):
    """NaN/Inf -> None and numpy scalars -> Python, recursively, so the report is strict JSON."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def _flags(name: str) -> dict[str, bool]:
    return {"leaks_test": THRESHOLD[name].leaks_test, "oracle": THRESHOLD[name].oracle}


def evaluate_scores(test_scores: np.ndarray, test_labels: np.ndarray, *, train_scores: np.ndarray | None = None,
                    val_scores: np.ndarray | None = None, anomaly_ratio: float = 1.0, pot_risk: float = 1e-3,
                    pot_level: float = 0.98, vus_window: int | None = None, spot_blocks: int = 100) -> dict:
    """Evaluate per-point test scores `[T]` against 0/1 labels `[T]` under every threshold and metric.

    Args:
        test_scores: finite anomaly scores `[T]` (NaN/Inf raise ValueError naming the count).
        test_labels: 0/1 labels `[T]`; all-zero labels are allowed: label-dependent metrics are None
            and a note says so.
        train_scores, val_scores: scores of the training / validation splits `[N]`, `[V]`, or None.
            `paper` and `pot`/`spot` need train scores; `trainval` uses whichever of the two is given.
        anomaly_ratio: percentage of points flagged by the percentile thresholds (the paper's 0.85
            for MSL etc.).
        pot_risk, pot_level: POT/SPOT risk q and initial quantile.
        vus_window: range-AUC buffer / VUS sliding window. None uses 100, TSB-AD's `get_metrics`
            default. It is never estimated from the scores: every method on a dataset must be judged
            with the same window. Callers with the raw test series may pass
            `metrics.estimate_period(series[:, 0])`, as TSB-AD's benchmark does.
        spot_blocks: number of SPOT update blocks along the test series.
    Returns: the report dict described in the module docstring.
    """
    seconds: dict[str, float] = {}
    tick = time.perf_counter()
    s = M.check_scores(test_scores, "test_scores")
    y = M.check_labels(test_labels, s.shape[0])
    train = None if train_scores is None else M.check_scores(train_scores, "train_scores")
    val = None if val_scores is None else M.check_scores(val_scores, "val_scores")
    notes: list[str] = []
    n_pos = int(y.sum())
    starts, _ = M.segments(y)
    if n_pos == 0:
        notes.append("test labels contain no anomaly: recall, F1, AUCs, VUS and affiliation are undefined (null)")
    if np.ptp(s) == 0:
        notes.append("test scores are constant: AUC-ROC is 0.5 and percentile thresholds predict nothing")
    window = DEFAULT_VUS_WINDOW if vus_window is None else int(vus_window)

    # ---- thresholds
    th: dict[str, dict] = {}
    if train is not None:
        th["paper"] = {"value": T.paper_threshold(train, s, anomaly_ratio), **_flags("paper"),
                       "description": f"percentile {100 - anomaly_ratio:g} of train+test scores (paper protocol; "
                                      f"uses test scores)"}
    else:
        notes.append("no train scores: the paper threshold (train+test percentile), POT and SPOT are omitted")
    calib = [a for a in (train, val) if a is not None]
    if calib:
        parts = "+".join(name for name, a in (("train", train), ("val", val)) if a is not None)
        th["trainval"] = {"value": T.percentile_threshold(np.concatenate(calib), anomaly_ratio), **_flags("trainval"),
                          "description": f"percentile {100 - anomaly_ratio:g} of {parts} scores"}
        if val is None:
            notes.append("no validation scores: the train+val threshold uses train scores only")
    else:
        notes.append("no train or validation scores: the train+val threshold is omitted")
    if train is not None:
        try:
            pot = T.pot_threshold(train, q=pot_risk, level=pot_level)
            th["pot"] = {**pot, **_flags("pot"),
                         "description": f"POT on train scores, risk {pot_risk:g}, level {pot_level:g}"}
            spot = T.spot_thresholds(train, s, q=pot_risk, level=pot_level, n_blocks=spot_blocks)
            th["spot"] = {**spot, **_flags("spot"), "dynamic": True,
                          "description": f"SPOT: POT updated along the test stream in {len(spot['block_values'])} "
                                         f"blocks (online, no labels)"}
        except ValueError as err:
            notes.append(f"POT/SPOT omitted: {err}")
    if n_pos > 0:
        thr, _ = M.best_f1_threshold(s, y)
        th["oracle"] = {"value": thr, **_flags("oracle"),
                        "description": "best point-wise F1 threshold chosen with the test LABELS (upper bound)"}
    seconds["thresholds"] = time.perf_counter() - tick

    # ---- per-threshold metrics
    report = {"n_test": int(s.size), "n_anomalies": n_pos, "anomaly_rate": n_pos / s.size,
              "n_segments": int(len(starts)), "anomaly_ratio": float(anomaly_ratio),
              "params": {"pot_risk": pot_risk, "pot_level": pot_level, "vus_window": window,
                         "vus_window_source": "given" if vus_window is not None else "default (TSB-AD get_metrics)",
                         "vus_max_buffer": window, "vus_thresholds": 250, "pa_k": list(M.PA_K),
                         "range_auc_source": M.VUS_RANGE_AUC.source, "vus_source": M.TSB_AD_VUS.source,
                         "spot_blocks": spot_blocks},
              "notes": notes, "thresholds": th}
    preds = predictions(report, s)
    per: dict[str, dict] = {}
    t_pa = t_aff = 0.0
    for name, pred in preds.items():
        t0 = time.perf_counter()
        entry = {"n_predicted": int(pred.sum()), "point": M.precision_recall_f1(pred, y),
                 "point_adjusted": M.adjusted_metrics(pred, y), "pa_k": M.pa_k_curve(pred, y)}
        t1 = time.perf_counter()
        entry["affiliation"] = M.affiliation(pred, y)
        t_aff += time.perf_counter() - t1
        t_pa += t1 - t0
        per[name] = entry
    seconds["point_pa_pak"] = t_pa
    seconds["affiliation"] = t_aff

    # ---- the paper's published protocol on the paper threshold's predictions
    if "paper" in preds:
        t0 = time.perf_counter()
        report["paper"] = {"threshold": th["paper"]["value"], "leaks_test": True, "prediction_based": True,
                           "window": M.PAPER_WINDOW, "vus_max_buffer": 2 * M.PAPER_WINDOW, "source": PAPER_SOURCE,
                           **M.paper_protocol(preds["paper"], y)}
        seconds["paper_protocol"] = time.perf_counter() - t0

    # ---- threshold-free metrics
    t0 = time.perf_counter()
    free = {"auc_roc": M.auc_roc(s, y), "auc_pr": M.auc_pr(s, y)}
    seconds["auc"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    free.update(M.range_auc_vus(s, y, window))
    seconds["range_auc_vus"] = time.perf_counter() - t0
    report["per_threshold"] = per
    report["threshold_free"] = free
    report["seconds"] = seconds
    return _clean(report)


def predictions(report: dict, test_scores: np.ndarray) -> dict[str, np.ndarray]:
    """Bool predictions `[T]` for each threshold of `report` (SPOT uses its block-wise thresholds)."""
    s = np.asarray(test_scores, dtype=np.float64).reshape(-1)
    out = {}
    for name in THRESHOLD_ORDER:
        t = report["thresholds"].get(name)
        if t is None:
            continue
        if t.get("block_values") is not None:
            out[name] = T.spot_predictions(s, t["block_values"], t["block_size"])
        else:
            out[name] = s > t["value"]
    return out


def summary_row(report: dict) -> dict[str, float]:
    """Flat metrics for results/summary.csv, named by `columns`: `<threshold>_<metric>` for every
    threshold and `PER_THRESHOLD` metric (`paper_f1`, `trainval_pa_f1`, `pot_aff_f1`, ...); `paper_<metric>`
    for the paper's published protocol (`PAPER`: its `paper_pa_*` and `paper_aff_*` are the published
    code's values, and `paper_range_auc_*`, `paper_vus_*` its range metrics of the adjusted
    predictions); and the threshold-free `THRESHOLD_FREE` metrics by name (`auc_roc`, ..., `vus_pr`).
    It starts with the evaluation's `anomaly_ratio` and `vus_window`. Missing or undefined values are
    NaN, so every row has the same columns.
    """
    nan = float("nan")
    row: dict[str, float] = {"anomaly_ratio": float(report["anomaly_ratio"]),
                             "vus_window": int(report["params"]["vus_window"])}
    for name in THRESHOLD_ORDER:
        m = report["per_threshold"].get(name)
        for metric in PER_THRESHOLD:
            v = None if m is None else m[metric.section][metric.key]
            row[f"{name}_{metric.column}"] = nan if v is None else float(v)
    paper = report.get("paper") or {}
    for metric in PAPER:
        v = paper.get(metric.key)
        row[f"paper_{metric.column}"] = nan if v is None else float(v)
    for metric in THRESHOLD_FREE:
        v = report["threshold_free"].get(metric.key)
        row[metric.column] = nan if v is None else float(v)
    return row

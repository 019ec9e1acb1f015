"""The full evaluation report of one run's test scores (DESIGN section 3): the paper's protocol beside
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

from utils import metrics as M
from utils import thresholds as T

THRESHOLD_ORDER = ("paper", "trainval", "pot", "spot", "oracle")
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
        th["paper"] = {"value": T.paper_threshold(train, s, anomaly_ratio), "leaks_test": True, "oracle": False,
                       "description": f"percentile {100 - anomaly_ratio:g} of train+test scores (paper protocol; "
                                      f"uses test scores)"}
    else:
        notes.append("no train scores: the paper threshold (train+test percentile), POT and SPOT are omitted")
    calib = [a for a in (train, val) if a is not None]
    if calib:
        parts = "+".join(name for name, a in (("train", train), ("val", val)) if a is not None)
        th["trainval"] = {"value": T.percentile_threshold(np.concatenate(calib), anomaly_ratio), "leaks_test": False,
                          "oracle": False, "description": f"percentile {100 - anomaly_ratio:g} of {parts} scores"}
        if val is None:
            notes.append("no validation scores: the train+val threshold uses train scores only")
    else:
        notes.append("no train or validation scores: the train+val threshold is omitted")
    if train is not None:
        try:
            pot = T.pot_threshold(train, q=pot_risk, level=pot_level)
            th["pot"] = {**pot, "leaks_test": False, "oracle": False,
                         "description": f"POT on train scores, risk {pot_risk:g}, level {pot_level:g}"}
            spot = T.spot_thresholds(train, s, q=pot_risk, level=pot_level, n_blocks=spot_blocks)
            th["spot"] = {**spot, "leaks_test": False, "oracle": False, "dynamic": True,
                          "description": f"SPOT: POT updated along the test stream in {len(spot['block_values'])} "
                                         f"blocks (online, no labels)"}
        except ValueError as err:
            notes.append(f"POT/SPOT omitted: {err}")
    if n_pos > 0:
        thr, _ = M.best_f1_threshold(s, y)
        th["oracle"] = {"value": thr, "leaks_test": True, "oracle": True,
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


# --------------------------------------------------------------------------- rendering

def _f(x, digits: int = 4) -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


LABELS = {"paper": "paper (train+test pct, LEAKS test)", "trainval": "train+val percentile", "pot": "POT (train)",
          "spot": "SPOT (online)", "oracle": "oracle best-F1 (uses labels)"}


def render_table(report: dict) -> str:
    """Compact console table: one row per threshold, then the threshold-free metrics."""
    head = f"{'threshold':<34}{'value':>11}{'F1':>8}{'PA-F1':>8}{'PA%K':>8}{'Aff-F1':>8}{'P':>8}{'R':>8}"
    lines = [head, "-" * len(head)]
    for name, t in report["thresholds"].items():
        m = report["per_threshold"][name]
        lines.append(f"{LABELS.get(name, name):<34}{_f(t['value'], 5):>11}{_f(m['point']['f1']):>8}"
                     f"{_f(m['point_adjusted']['f1']):>8}{_f(m['pa_k']['auc']):>8}{_f(m['affiliation']['f1']):>8}"
                     f"{_f(m['point']['precision']):>8}{_f(m['point']['recall']):>8}")
    if (pp := report.get("paper")) is not None:
        lines.append(f"paper protocol (LEAKS test; range metrics of the PA predictions): PA-F1 {_f(pp['pa_f1'])}  "
                     f"R-AUC-ROC {_f(pp['range_auc_roc'])}  R-AUC-PR {_f(pp['range_auc_pr'])}  "
                     f"VUS-ROC {_f(pp['vus_roc'])}  VUS-PR {_f(pp['vus_pr'])}")
    f = report["threshold_free"]
    lines.append(f"scores (TSB-AD): AUC-ROC {_f(f['auc_roc'])}  AUC-PR {_f(f['auc_pr'])}  "
                 f"R-AUC-ROC {_f(f['range_auc_roc'])}  R-AUC-PR {_f(f['range_auc_pr'])}  VUS-ROC {_f(f['vus_roc'])}  "
                 f"VUS-PR {_f(f['vus_pr'])}  (window {report['params']['vus_window']})")
    for note in report["notes"]:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def render_markdown(report: dict, title: str = "") -> str:
    """report.md body: data summary, per-threshold table, PA%K curves, threshold-free metrics, notes."""
    p = report["params"]
    out = [f"# {title}" if title else "# Evaluation report", ""]
    out.append(f"{report['n_test']} test points, {report['n_anomalies']} anomalous "
               f"({100 * report['anomaly_rate']:.2f} %) in {report['n_segments']} segments; "
               f"anomaly_ratio {report['anomaly_ratio']:g} %.")
    out += ["", "The paper's number is **PA-F1 under the `paper` threshold**, which uses the test scores and "
            "rewards even random scores (Kim et al., AAAI 2022). Read it beside the leak-free thresholds, "
            "the point-wise F1 and VUS-PR. The oracle row uses the test labels: an upper bound only.", ""]
    out.append("| threshold | value | leaks test | P | R | F1 | PA-P | PA-R | PA-F1 | PA-acc | PA%K AUC | "
               "Aff-P | Aff-R | Aff-F1 | #pred |")
    out.append("|---|---:|:---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, t in report["thresholds"].items():
        m = report["per_threshold"][name]
        pt, pa, af = m["point"], m["point_adjusted"], m["affiliation"]
        leak = "oracle" if t["oracle"] else ("yes" if t["leaks_test"] else "no")
        out.append(f"| {LABELS.get(name, name)} | {_f(t['value'], 5)} | {leak} | {_f(pt['precision'])} | "
                   f"{_f(pt['recall'])} | {_f(pt['f1'])} | {_f(pa['precision'])} | {_f(pa['recall'])} | "
                   f"{_f(pa['f1'])} | {_f(pa['accuracy'])} | {_f(m['pa_k']['auc'])} | {_f(af['precision'])} | "
                   f"{_f(af['recall'])} | {_f(af['f1'])} | {m['n_predicted']} |")
    out += ["", "## PA%K F1 (K = " + ", ".join(str(k) for k in p["pa_k"]) + ")", ""]
    out.append("| threshold | " + " | ".join(f"K={k}" for k in p["pa_k"]) + " |")
    out.append("|---|" + "---:|" * len(p["pa_k"]))
    for name in report["thresholds"]:
        out.append(f"| {name} | " + " | ".join(_f(v, 3) for v in report["per_threshold"][name]["pa_k"]["f1"]) + " |")
    if (pp := report.get("paper")) is not None:
        out += ["", "## The paper's protocol (test-leaking threshold, prediction-based)", "",
                "As the paper's published code computes it, at the `paper` threshold: affiliation on the "
                "predictions, then point adjustment, then range-AUC and VUS **of the adjusted binary predictions** "
                "(not of the scores). These range-AUCs are the paper table's ROC/PRC columns.", "",
                "| PA-acc | PA-P | PA-R | PA-F1 | Aff-P | Aff-R | Range-AUC-ROC | Range-AUC-PR | VUS-ROC | VUS-PR |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
                "| " + " | ".join(_f(pp[k]) for k in ("pa_accuracy", "pa_precision", "pa_recall", "pa_f1",
                                                     "aff_precision", "aff_recall", "range_auc_roc", "range_auc_pr",
                                                     "vus_roc", "vus_pr")) + " |", "",
                f"Window {pp['window']} (VUS buffers 0..{pp['vus_max_buffer']}); source: {pp['source']}."]
    f = report["threshold_free"]
    out += ["", "## Threshold-free (raw scores, as TSB-AD)", "",
            "| AUC-ROC | AUC-PR | Range-AUC-ROC | Range-AUC-PR | VUS-ROC | VUS-PR |",
            "|---:|---:|---:|---:|---:|---:|",
            f"| {_f(f['auc_roc'])} | {_f(f['auc_pr'])} | {_f(f['range_auc_roc'])} | {_f(f['range_auc_pr'])} | "
            f"{_f(f['vus_roc'])} | {_f(f['vus_pr'])} |", "",
            f"Sliding window {p['vus_window']} ({p['vus_window_source']}). Range-AUC at that buffer as "
            f"{p['range_auc_source']}; VUS averages buffers 0..{p['vus_max_buffer']} over {p['vus_thresholds']} "
            f"thresholds as {p['vus_source']}. "
            f"POT/SPOT risk {p['pot_risk']:g}, initial level {p['pot_level']:g}."]
    if report["notes"]:
        out += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(out) + "\n"


def summary_row(report: dict) -> dict[str, float]:
    """Flat metrics for results/summary.csv: `<threshold>_<metric>` plus the threshold-free ones.

    Per threshold (paper, trainval, pot, spot, oracle): `_f1` (point-wise), `_precision`, `_recall`,
    `_pa_f1`, `_pa_precision`, `_pa_recall`, `_pa_k_auc`, `_aff_f1`, `_aff_precision`, `_aff_recall`.
    The paper's published protocol (`report["paper"]`): `paper_pa_f1`, `paper_pa_precision`,
    `paper_pa_recall` and `paper_aff_*` are the published code's numbers, and `paper_range_auc_roc`,
    `paper_range_auc_pr`, `paper_vus_roc`, `paper_vus_pr` its range metrics of the adjusted predictions.
    Threshold-free: auc_roc, auc_pr, range_auc_roc, range_auc_pr, vus_roc, vus_pr. Missing or
    undefined values are NaN, so every row has the same columns.
    """
    nan = float("nan")
    row: dict[str, float] = {}
    for name in THRESHOLD_ORDER:
        m = report["per_threshold"].get(name)
        vals = {}
        if m is not None:
            vals = {"f1": m["point"]["f1"], "precision": m["point"]["precision"], "recall": m["point"]["recall"],
                    "pa_f1": m["point_adjusted"]["f1"], "pa_precision": m["point_adjusted"]["precision"],
                    "pa_recall": m["point_adjusted"]["recall"], "pa_k_auc": m["pa_k"]["auc"],
                    "aff_f1": m["affiliation"]["f1"], "aff_precision": m["affiliation"]["precision"],
                    "aff_recall": m["affiliation"]["recall"]}
        for key in ("f1", "precision", "recall", "pa_f1", "pa_precision", "pa_recall", "pa_k_auc",
                    "aff_f1", "aff_precision", "aff_recall"):
            v = vals.get(key)
            row[f"{name}_{key}"] = nan if v is None else float(v)
    paper = report.get("paper") or {}
    for key in PAPER_COLUMNS:
        v = paper.get(key)
        row[f"paper_{key}"] = nan if v is None else float(v)
    for key, v in report["threshold_free"].items():
        row[key] = nan if v is None else float(v)
    return row


# the paper block's summary columns (paper_<key>); PA and affiliation override the per-threshold ones
PAPER_COLUMNS = ("pa_f1", "pa_precision", "pa_recall", "aff_precision", "aff_recall", "range_auc_roc",
                 "range_auc_pr", "vus_roc", "vus_pr")

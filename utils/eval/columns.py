"""The evaluation's vocabulary, declared once: the thresholds (name, label, colour, what they may see)
and the metrics of a report with their summary-column names. The report, both renderers, the summary
row, the tables and the plot read these tables; adding a metric is a function in `metrics` plus one
entry here (and one line in `report.evaluate_scores` that computes it).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Threshold:
    """One way of turning scores into predictions (`scores > value`)."""
    name: str
    label: str  # row label in the console table and report.md
    colour: str  # matplotlib colour of its line and predictions in scores.png
    leaks_test: bool  # it sees the test scores or labels
    oracle: bool = False  # chosen with the test labels: an upper bound, never a result


THRESHOLDS = (
    Threshold("paper", "paper (train+test pct, LEAKS test)", "tab:red", leaks_test=True),
    Threshold("trainval", "train+val percentile", "tab:green", leaks_test=False),
    Threshold("pot", "POT (train)", "tab:purple", leaks_test=False),
    Threshold("spot", "SPOT (online)", "tab:orange", leaks_test=False),
    Threshold("oracle", "oracle best-F1 (uses labels)", "tab:gray", leaks_test=True, oracle=True),
)
THRESHOLD = {t.name: t for t in THRESHOLDS}
THRESHOLD_ORDER = tuple(t.name for t in THRESHOLDS)


@dataclass(frozen=True)
class Metric:
    """One number of a report: where it sits, its short header, and its summary column suffix."""
    column: str  # summary.csv name: `<threshold>_<column>`, `paper_<column>` or `<column>`
    header: str  # short header in the report tables
    section: str  # report["per_threshold"][t][section][key], report["paper"][key] or report["threshold_free"][key]
    key: str


# per threshold, in report.md's column order
PER_THRESHOLD = (
    Metric("precision", "P", "point", "precision"), Metric("recall", "R", "point", "recall"),
    Metric("f1", "F1", "point", "f1"),
    Metric("pa_precision", "PA-P", "point_adjusted", "precision"),
    Metric("pa_recall", "PA-R", "point_adjusted", "recall"), Metric("pa_f1", "PA-F1", "point_adjusted", "f1"),
    Metric("pa_accuracy", "PA-acc", "point_adjusted", "accuracy"),
    Metric("pa_k_auc", "PA%K AUC", "pa_k", "auc"),
    Metric("aff_precision", "Aff-P", "affiliation", "precision"),
    Metric("aff_recall", "Aff-R", "affiliation", "recall"), Metric("aff_f1", "Aff-F1", "affiliation", "f1"),
)
# the paper's published protocol at the paper threshold (report["paper"]); its PA and affiliation values
# replace the per-threshold `paper_*` columns of the same name in the summary
PAPER = (
    Metric("pa_accuracy", "PA-acc", "paper", "pa_accuracy"), Metric("pa_precision", "PA-P", "paper", "pa_precision"),
    Metric("pa_recall", "PA-R", "paper", "pa_recall"), Metric("pa_f1", "PA-F1", "paper", "pa_f1"),
    Metric("aff_precision", "Aff-P", "paper", "aff_precision"), Metric("aff_recall", "Aff-R", "paper", "aff_recall"),
    Metric("range_auc_roc", "R-AUC-ROC", "paper", "range_auc_roc"),
    Metric("range_auc_pr", "R-AUC-PR", "paper", "range_auc_pr"),
    Metric("vus_roc", "VUS-ROC", "paper", "vus_roc"), Metric("vus_pr", "VUS-PR", "paper", "vus_pr"),
)
# threshold-free, on the raw scores (as TSB-AD)
THRESHOLD_FREE = (
    Metric("auc_roc", "AUC-ROC", "threshold_free", "auc_roc"), Metric("auc_pr", "AUC-PR", "threshold_free", "auc_pr"),
    Metric("range_auc_roc", "R-AUC-ROC", "threshold_free", "range_auc_roc"),
    Metric("range_auc_pr", "R-AUC-PR", "threshold_free", "range_auc_pr"),
    Metric("vus_roc", "VUS-ROC", "threshold_free", "vus_roc"), Metric("vus_pr", "VUS-PR", "threshold_free", "vus_pr"),
)

# the tables' default columns: the paper's (test-leaking threshold, range-AUC of the point-adjusted
# predictions) first, then the honest ones
PAPER_TABLE_METRICS = ("paper_pa_f1", "paper_range_auc_roc", "paper_range_auc_pr")
DEFAULT_TABLE_METRICS = PAPER_TABLE_METRICS + ("trainval_f1", "pot_f1", "trainval_pa_f1", "trainval_aff_f1",
                                               "auc_pr", "vus_pr", "vus_roc", "range_auc_pr", "range_auc_roc")

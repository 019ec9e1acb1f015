"""Readable forms of an evaluation report (`report.evaluate_scores`): the console table and report.md.

Row labels, leak flags and headers come from `columns`, so a new threshold or metric appears here
without editing this file.
"""
from __future__ import annotations

import math

from utils.eval.columns import PAPER, PER_THRESHOLD, THRESHOLD, THRESHOLD_FREE


def _f(x, digits: int = 4) -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def _label(name: str) -> str:
    return THRESHOLD[name].label if name in THRESHOLD else name


def render_table(report: dict) -> str:
    """Compact console table: one row per threshold, the paper's protocol, then the threshold-free metrics."""
    head = f"{'threshold':<34}{'value':>11}{'F1':>8}{'PA-F1':>8}{'PA%K':>8}{'Aff-F1':>8}{'P':>8}{'R':>8}"
    lines = [head, "-" * len(head)]
    for name, t in report["thresholds"].items():
        m = report["per_threshold"][name]
        lines.append(f"{_label(name):<34}{_f(t['value'], 5):>11}{_f(m['point']['f1']):>8}"
                     f"{_f(m['point_adjusted']['f1']):>8}{_f(m['pa_k']['auc']):>8}{_f(m['affiliation']['f1']):>8}"
                     f"{_f(m['point']['precision']):>8}{_f(m['point']['recall']):>8}")
    if (pp := report.get("paper")) is not None:
        lines.append("paper protocol (LEAKS test; range metrics of the PA predictions): " + "  ".join(
            f"{m.header} {_f(pp[m.key])}" for m in PAPER if m.column in ("pa_f1", "range_auc_roc", "range_auc_pr",
                                                                          "vus_roc", "vus_pr")))
    f = report["threshold_free"]
    lines.append("scores (TSB-AD): " + "  ".join(f"{m.header} {_f(f[m.key])}" for m in THRESHOLD_FREE)
                 + f"  (window {report['params']['vus_window']})")
    for note in report["notes"]:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def render_markdown(report: dict, title: str = "") -> str:
    """report.md body: data summary, per-threshold table, PA%K curves, the paper's protocol, threshold-free
    metrics, notes."""
    p = report["params"]
    out = [f"# {title}" if title else "# Evaluation report", ""]
    out.append(f"{report['n_test']} test points, {report['n_anomalies']} anomalous "
               f"({100 * report['anomaly_rate']:.2f} %) in {report['n_segments']} segments; "
               f"anomaly_ratio {report['anomaly_ratio']:g} %.")
    out += ["", "The paper's numbers are **PA-F1 under the `paper` threshold** and the range-AUCs of its "
            "point-adjusted predictions (the paper's protocol, below). The threshold uses the test scores and "
            "rewards even random scores (Kim et al., AAAI 2022). Read it beside the leak-free thresholds, "
            "the point-wise F1 and VUS-PR. The oracle row uses the test labels: an upper bound only.", ""]
    out.append("| threshold | value | leaks test | " + " | ".join(m.header for m in PER_THRESHOLD) + " | #pred |")
    out.append("|---|---:|:---:|" + "---:|" * (len(PER_THRESHOLD) + 1))
    for name, t in report["thresholds"].items():
        m = report["per_threshold"][name]
        leak = "oracle" if t["oracle"] else ("yes" if t["leaks_test"] else "no")
        out.append(f"| {_label(name)} | {_f(t['value'], 5)} | {leak} | "
                   + " | ".join(_f(m[c.section][c.key]) for c in PER_THRESHOLD) + f" | {m['n_predicted']} |")
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
                "| " + " | ".join(m.header for m in PAPER) + " |", "|" + "---:|" * len(PAPER),
                "| " + " | ".join(_f(pp[m.key]) for m in PAPER) + " |", "",
                f"Window {pp['window']} (VUS buffers 0..{pp['vus_max_buffer']}); source: {pp['source']}."]
    f = report["threshold_free"]
    out += ["", "## Threshold-free (raw scores, as TSB-AD)", "",
            "| " + " | ".join(m.header for m in THRESHOLD_FREE) + " |", "|" + "---:|" * len(THRESHOLD_FREE),
            "| " + " | ".join(_f(f[m.key]) for m in THRESHOLD_FREE) + " |", "",
            f"Sliding window {p['vus_window']} ({p['vus_window_source']}). Range-AUC at that buffer as "
            f"{p['range_auc_source']}; VUS averages buffers 0..{p['vus_max_buffer']} over {p['vus_thresholds']} "
            f"thresholds as {p['vus_source']}. "
            f"POT/SPOT risk {p['pot_risk']:g}, initial level {p['pot_level']:g}."]
    if report["notes"]:
        out += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(out) + "\n"

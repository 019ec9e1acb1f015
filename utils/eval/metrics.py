"""Anomaly-detection metrics on one score per time point (README, Evaluation), vectorised numpy.

Conventions (every function):
- `scores`: float array `[T]`, higher = more anomalous; must be finite (NaN/Inf raise `ValueError`).
- `labels`: array `[T]` of 0/1 (bool, int or float 0.0/1.0; anything else raises).
- `pred`: binary predictions `[T]`; a threshold `thr` predicts `scores > thr` (strict, as the paper's code).
- A *segment* (event) is a maximal run of consecutive 1 labels; segments are returned as
  `starts, ends` with `ends` exclusive.
- Nothing here loops in Python over time points. Loops run over thresholds (at most 250) or
  buffer lengths (at most `max_buffer + 1`), each step vectorised.

Edge cases (documented behaviour, tested):
- All-zero labels: recall, F1, AUC-ROC, AUC-PR, range-AUC, VUS and affiliation are undefined and
  returned as NaN; precision is still defined (0 when anything is predicted).
- Nothing predicted: precision is undefined; we return 0 (so F1 is 0), and affiliation precision NaN.
- Constant scores: AUC-ROC = 0.5, AUC-PR = anomaly rate; a percentile threshold equals the constant,
  so `scores > thr` predicts nothing.

References: point adjustment (Xu et al., WWW 2018, as used by Anomaly Transformer and the paper);
PA%K (Kim et al., "Towards a Rigorous Evaluation of Time-Series Anomaly Detection", AAAI 2022);
affiliation metrics (Huet, Navarro & Rossi, "Local Evaluation of Time Series Anomaly Detection
Algorithms", KDD 2022); range-AUC and VUS (Paparrizos, Boniol, Palpanas, Tsay, Elmore & Franklin,
"Volume Under the Surface", VLDB 2022), with TSB-AD's defaults (see `range_auc_vus`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PA_K = tuple(range(0, 101, 10))  # the K values of the PA%K curve, in percent


# --------------------------------------------------------------------------- validation, segments

def check_scores(scores: np.ndarray, name: str = "scores") -> np.ndarray:
    """Return `scores` as a 1-D float64 array; raise if it is empty or holds NaN/Inf."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        s = s.reshape(-1) if s.ndim == 2 and 1 in s.shape else s
    if s.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one score per time point), got shape {np.shape(scores)}")
    if s.size == 0:
        raise ValueError(f"{name} is empty")
    bad = ~np.isfinite(s)
    if bad.any():
        raise ValueError(f"{name} contains {int(np.isnan(s).sum())} NaN and {int(np.isinf(s).sum())} infinite "
                         f"values (first at index {int(np.flatnonzero(bad)[0])}); fix the detector or replace "
                         f"them (e.g. np.nan_to_num) before evaluating")
    return s


def check_labels(labels: np.ndarray, n: int | None = None) -> np.ndarray:
    """Return `labels` as a 1-D bool array; raise if values are not 0/1 or the length differs from `n`."""
    y = np.asarray(labels)
    if y.ndim == 2 and 1 in y.shape:
        y = y.reshape(-1)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D (one 0/1 label per time point), got shape {np.shape(labels)}")
    if n is not None and y.shape[0] != n:
        raise ValueError(f"labels have length {y.shape[0]} but scores have length {n}; they must align "
                         f"point by point")
    if y.dtype != bool:
        ok = (y == 0) | (y == 1)
        if not ok.all():
            vals = np.unique(y[~ok])[:5]
            raise ValueError(f"labels must be 0/1; found other values such as {vals.tolist()} "
                             f"(binarise them first, e.g. labels > 0)")
        y = y == 1
    return y


def segments(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start indices and exclusive end indices of the runs of 1s in a 0/1 array `[T]`."""
    y = np.asarray(labels).astype(np.int8)
    d = np.diff(np.concatenate(([0], y, [0])))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


# --------------------------------------------------------------------------- thresholded metrics

def _prf(tp: np.ndarray | float, n_pred: np.ndarray | float, n_pos: float):
    """Precision, recall, F1 from counts (arrays broadcast). Precision 0 when nothing is predicted."""
    tp = np.asarray(tp, dtype=np.float64)
    n_pred = np.asarray(n_pred, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(n_pred > 0, tp / np.maximum(n_pred, 1), 0.0)
        recall = tp / n_pos if n_pos > 0 else np.full_like(tp, np.nan)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    if n_pos == 0:
        f1 = np.full_like(tp, np.nan)
    return precision, recall, f1


def precision_recall_f1(pred: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Point-wise precision, recall, F1 of binary `pred` `[T]` against `labels` `[T]`."""
    p = np.asarray(pred).astype(bool)
    y = check_labels(labels, p.shape[0])
    precision, recall, f1 = _prf(np.sum(p & y), p.sum(), y.sum())
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


def point_adjust(pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Point adjustment: a true segment with at least one predicted point counts as fully detected.

    Returns a NEW bool array `[T]`; `pred` and `labels` are never modified (the published code adjusts
    in place, which silently changes the caller's predictions).
    """
    return pa_k_adjust(pred, labels, 0)


def pa_k_adjust(pred: np.ndarray, labels: np.ndarray, k: float) -> np.ndarray:
    """PA%K (Kim et al., AAAI 2022): adjust a segment only if MORE than `k` % of its points are predicted.

    k = 0 is the usual point adjustment, k = 100 leaves the predictions as they are (point-wise).
    Returns a new bool array `[T]`; inputs are not modified.
    """
    p = np.array(pred, dtype=bool, copy=True)
    y = check_labels(labels, p.shape[0])
    starts, ends = segments(y)
    if len(starts) == 0:
        return p
    hits = _segment_sums(p, starts, ends)
    full = hits / (ends - starts) > k / 100.0  # [n_seg]
    # mark the points of the fully credited segments without looping: +1 at start, -1 at end, cumsum
    mark = np.zeros(len(p) + 1, dtype=np.int64)
    np.add.at(mark, starts[full], 1)
    np.add.at(mark, ends[full], -1)
    p |= np.cumsum(mark[:-1]) > 0
    return p


def _segment_sums(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Sum of `values[starts[i]:ends[i]]` for each segment, via one cumulative sum."""
    c = np.concatenate(([0], np.cumsum(values, dtype=np.int64)))
    return c[ends] - c[starts]


def adjusted_metrics(pred: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Point-adjusted precision, recall, F1 and accuracy (the paper's protocol)."""
    y = check_labels(labels, len(pred))
    adj = point_adjust(pred, y)
    out = precision_recall_f1(adj, y)
    out["accuracy"] = float(np.mean(adj == y))
    return out


def pa_k_curve(pred: np.ndarray, labels: np.ndarray, ks=PA_K) -> dict:
    """F1 after PA%K for each K in `ks` (percent) and the area under F1(K/100) over [0, 1] (trapezoid).

    Returns {"k": [...], "f1": [...], "auc": float}. Vectorised over segments and K at once.
    """
    p = np.asarray(pred).astype(bool)
    y = check_labels(labels, p.shape[0])
    ks_arr = np.asarray(ks, dtype=np.float64)
    starts, ends = segments(y)
    n_pos = float(y.sum())
    if n_pos == 0:
        return {"k": ks_arr.tolist(), "f1": [float("nan")] * len(ks_arr), "auc": float("nan")}
    lengths = (ends - starts).astype(np.float64)
    hits = _segment_sums(p, starts, ends).astype(np.float64)  # predicted points inside each segment
    fp = float(np.sum(p & ~y))
    full = hits[None, :] / lengths[None, :] > ks_arr[:, None] / 100.0  # [n_k, n_seg]
    tp = np.where(full, lengths[None, :], hits[None, :]).sum(axis=1)  # [n_k]
    _, _, f1 = _prf(tp, tp + fp, n_pos)
    x = ks_arr / 100.0
    auc = float(np.sum((x[1:] - x[:-1]) * (f1[1:] + f1[:-1]) / 2)) if len(x) > 1 else float("nan")
    return {"k": ks_arr.tolist(), "f1": f1.tolist(), "auc": auc}


# --------------------------------------------------------------------------- threshold-free metrics

def _ranked_counts(scores: np.ndarray, y: np.ndarray):
    """Cumulative TP and FP counts at each distinct score, scanning from the highest score down."""
    order = np.argsort(-scores, kind="mergesort")
    s = scores[order]
    yy = y[order]
    last = np.flatnonzero(np.r_[s[1:] != s[:-1], True])  # last index of each group of tied scores
    tp = np.cumsum(yy, dtype=np.float64)[last]
    fp = (last + 1) - tp
    return s[last], tp, fp


def auc_roc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of raw scores (ties handled as one step, i.e. linear interpolation).

    NaN when labels are all 0 or all 1.
    """
    s = check_scores(scores)
    y = check_labels(labels, s.shape[0])
    n_pos, n_neg = y.sum(), (~y).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, tp, fp = _ranked_counts(s, y)
    tpr = np.r_[0.0, tp / n_pos]
    fpr = np.r_[0.0, fp / n_neg]
    return float(np.sum((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1]) / 2))


def auc_pr(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the precision-recall curve as average precision: sum_k (R_k - R_{k-1}) P_k.

    Step-wise (no interpolation), the same definition as scikit-learn's `average_precision_score`.
    NaN when labels are all 0.
    """
    s = check_scores(scores)
    y = check_labels(labels, s.shape[0])
    n_pos = y.sum()
    if n_pos == 0:
        return float("nan")
    _, tp, fp = _ranked_counts(s, y)
    recall = np.r_[0.0, tp / n_pos]
    precision = tp / (tp + fp)
    return float(np.sum((recall[1:] - recall[:-1]) * precision))


def best_f1_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """ORACLE: the threshold `thr` maximising point-wise F1 of `scores > thr`, and that F1.

    It is chosen with the test labels, so it is an upper bound, never a result. Returned `thr` is the
    next lower distinct score below the best cut (or just below the minimum), so `scores > thr`
    reproduces the best prediction exactly. NaN F1 when labels are all 0.
    """
    s = check_scores(scores)
    y = check_labels(labels, s.shape[0])
    values, tp, fp = _ranked_counts(s, y)
    n_pos = float(y.sum())
    if n_pos == 0:
        return float(np.max(s)), float("nan")
    _, _, f1 = _prf(tp, tp + fp, n_pos)
    j = int(np.argmax(f1))
    thr = values[j + 1] if j + 1 < len(values) else np.nextafter(values[-1], -np.inf)
    return float(thr), float(f1[j])


# --------------------------------------------------------------------------- range-AUC and VUS

def estimate_period(x: np.ndarray, max_lag: int = 400, max_period: int = 300, default: int = 125) -> int:
    """Dominant period of a 1-D series from its autocorrelation, the rule TSB-AD uses for its window.

    The ACF (via FFT, on the first 20,000 points) is searched for local maxima at lags 3..`max_lag`;
    the lag of the highest one is the period. If there is none, or it exceeds `max_period`, return
    `default` (125, TSB-AD's fallback). Constant series return `default`.
    """
    v = np.asarray(x, dtype=np.float64).reshape(-1)[:20000]
    v = v[np.isfinite(v)]
    if v.size < 10 or np.std(v) == 0:
        return default
    v = v - v.mean()
    m = 1 << int(np.ceil(np.log2(2 * v.size)))
    f = np.fft.rfft(v, m)
    acf = np.fft.irfft(f * np.conj(f), m)[: min(max_lag, v.size - 1) + 1]
    acf = acf / acf[0]
    a = acf[3:]
    if a.size < 3:
        return default
    peak = np.flatnonzero((a[1:-1] > a[:-2]) & (a[1:-1] > a[2:])) + 1  # indices into a
    if peak.size == 0:
        return default
    lag = int(peak[np.argmax(a[peak])]) + 3
    return lag if 3 <= lag <= max_period else default


@dataclass(frozen=True)
class RangeConvention:
    """How one reference implementation buffers the labels and integrates the range curves.

    The range-AUC family (Paparrizos et al., VLDB 2022) exists in three published variants that give
    different numbers on the same input; each is one row below. With a buffer of length l and
    h = l // 2, a point at distance d from a true segment gets the soft label sqrt(1 - d / l);
    points inside two buffers (or a buffer and a segment) saturate at 1.

    - `short_right`: the buffer after a segment has h - 1 points instead of h (TSB-UAD's original
      `extend_postive_range` starts the right buffer AT the segment's last point).
    - `soft_mass`: "predicted" puts only the PREDICTED soft mass into P' = P + mass / 2 (TSB-AD's
      optimised VUS); "all" uses the whole buffer mass at every threshold (`RangeAUC`).
    - `merge_touching`: buffered segments count as one event for the existence ratio when their
      buffers touch (a run of non-zero soft labels); otherwise only when they overlap.
    - `pr`: "step" is sum (R_k - R_{k-1}) P_k; "trapezoid" averages P_k and P_{k-1}, with P_0 = 1.
    """
    name: str
    source: str
    short_right: bool
    soft_mass: str
    merge_touching: bool
    pr: str


TSB_AD_VUS = RangeConvention(
    "tsb_ad_vus", "TSB-AD get_metrics -> basic_metricor.RangeAUC_volume_opt (TheDatumOrg/TSB-AD 8763009, "
    "PyPI TSB-AD 1.5); also vus 0.0.6 generate_curve(version='opt')",
    short_right=False, soft_mass="predicted", merge_touching=False, pr="step")
VUS_RANGE_AUC = RangeConvention(
    "vus_range_auc", "vus 0.0.6 metricor.RangeAUC (PyPI vus, TheDatumOrg/VUS)",
    short_right=False, soft_mass="all", merge_touching=True, pr="trapezoid")
PUBLISHED_TSB_UAD = RangeConvention(
    "published_tsb_uad", "the paper's code: xf530xf/LLMs-Mamba d9721c5 metrics/vus (TSB-UAD metricor.RangeAUC "
    "and RangeAUC_volume)",
    short_right=True, soft_mass="all", merge_touching=True, pr="trapezoid")


def range_curves(scores: np.ndarray, labels: np.ndarray, buffers, convention: RangeConvention = TSB_AD_VUS,
                 n_thresholds: int = 250) -> tuple[np.ndarray, np.ndarray]:
    """Range-AUC-ROC and range-AUC-PR `[len(buffers)]`, one per buffer length l in `buffers`.

    Thresholds: `n_thresholds` values taken at evenly spaced ranks of the sorted scores
    (`np.linspace(0, T - 1, n).astype(int)`), prediction `scores >= thr`, plus the end points (0, 0)
    and (1, 1) of the ROC curve, as every reference does. For one threshold and buffer:
    TP = predicted true points + predicted soft mass, P' = P + (soft mass) / 2 (see
    `RangeConvention.soft_mass`), TPR = min(TP / P', 1) * (fraction of buffered events holding a
    prediction), FPR = (#pred - TP) / (T - P'), precision = TP / #pred. ROC by the trapezoid rule.

    The references loop over thresholds, segments and points; here each point gets the index of the
    first threshold that predicts it, so every count becomes a cumulative histogram. Cost
    O(T log T + len(buffers) * (points within max(buffers) // 2 of a segment)).
    NaN arrays when labels are all 0 or all 1.
    """
    s = check_scores(scores)
    y = check_labels(labels, s.shape[0])
    buffers = np.asarray(list(buffers), dtype=np.int64).reshape(-1)
    if buffers.size == 0 or buffers.min() < 0:
        raise ValueError(f"buffer lengths must be >= 0, got {buffers.tolist()}")
    starts, ends = segments(y)
    if len(starts) == 0 or y.all():
        return np.full(buffers.size, np.nan), np.full(buffers.size, np.nan)
    n, K = s.shape[0], int(n_thresholds)
    last = ends - 1  # last anomalous index of each segment

    # rank[t] = 1-based index of the first threshold that predicts t (thresholds decrease with k)
    taus = np.sort(s)[::-1][np.linspace(0, n - 1, K).astype(int)]  # [K], non-increasing
    rank = K - np.searchsorted(taus[::-1], s, side="right") + 1  # [T] in 1..K
    n_pred = np.cumsum(np.bincount(rank, minlength=K + 1))[1:].astype(np.float64)  # [K]
    hit_pos = np.cumsum(np.bincount(rank[y], minlength=K + 1))[1:].astype(np.float64)  # [K]
    P = float(y.sum())

    # normal points near a segment: distances after the two nearest segments on their left (dl)
    # and before the two nearest on their right (dr)
    h_max = int(buffers.max()) // 2
    idx = np.flatnonzero(~y)
    j = np.searchsorted(last, idx, side="left")  # segments with last < idx are 0..j-1
    big = np.iinfo(np.int64).max // 4
    dl1 = np.where(j >= 1, idx - last[np.maximum(j - 1, 0)], big)
    dl2 = np.where(j >= 2, idx - last[np.maximum(j - 2, 0)], big)
    r = np.searchsorted(starts, idx, side="right")  # segments with start > idx are r..
    dr1 = np.where(r < len(starts), starts[np.minimum(r, len(starts) - 1)] - idx, big)
    dr2 = np.where(r + 1 < len(starts), starts[np.minimum(r + 1, len(starts) - 1)] - idx, big)
    near = np.minimum(dl1, dr1) <= h_max
    dl1, dl2, dr1, dr2 = dl1[near], dl2[near], dr1[near], dr2[near]
    rank_b = rank[idx[near]]

    # first-predicting threshold over each segment and over growing buffers on each side
    seg_rank = _segment_min(rank, starts, ends)  # [n_seg]
    never = K + 1
    if h_max > 0:
        off = np.arange(1, h_max + 1)
        li, ri = starts[:, None] - off, last[:, None] + off  # [n_seg, h_max]
        left_min = np.minimum.accumulate(np.where(li >= 0, rank[np.clip(li, 0, n - 1)], never), axis=1)
        right_min = np.minimum.accumulate(np.where(ri < n, rank[np.clip(ri, 0, n - 1)], never), axis=1)
    gap = starts[1:] - last[:-1]  # [n_seg - 1]
    touch = 1 if convention.merge_touching else 0

    roc = np.empty(buffers.size)
    pr = np.empty(buffers.size)
    for b, ell in enumerate(buffers.tolist()):
        hl = ell // 2  # buffer points before a segment
        hr = max(hl - 1, 0) if convention.short_right else hl  # and after it
        m = seg_rank
        if hl > 0:
            after, before = dl1 <= hr, dr1 <= hl
            double = (dl2 <= hr) | (dr2 <= hl) | (after & before)
            d = np.where(after, dl1, dr1).astype(np.float64)
            soft = np.where(double, 1.0, np.where(after | before, np.sqrt(np.clip(1 - d / ell, 0, 1)), 0.0))
            buf = np.cumsum(np.bincount(rank_b, weights=soft, minlength=K + 1))[1:]  # [K]
            mass = buf if convention.soft_mass == "predicted" else np.full(K, soft.sum())
            m = np.minimum(m, left_min[:, hl - 1])
            if hr > 0:
                m = np.minimum(m, right_min[:, hr - 1])
        else:
            buf = mass = np.zeros(K)
        first = np.r_[True, gap > hl + hr + touch]  # a new buffered event starts here
        group_rank = np.minimum.reduceat(m, np.flatnonzero(first))
        exist = np.cumsum(np.bincount(group_rank, minlength=K + 2))[1:K + 1]  # [K]
        tp = hit_pos + buf
        p_new = P + mass / 2
        tpr = np.minimum(tp / p_new, 1.0) * exist / len(group_rank)
        fpr = (n_pred - tp) / (n - p_new)
        prec = tp / n_pred
        t = np.r_[0.0, tpr, 1.0]
        f = np.r_[0.0, fpr, 1.0]
        roc[b] = np.sum((f[1:] - f[:-1]) * (t[1:] + t[:-1]) / 2)
        height = prec if convention.pr == "step" else (prec + np.r_[1.0, prec[:-1]]) / 2
        pr[b] = np.sum((t[1:-1] - t[:-2]) * height)
    return roc, pr


def range_auc(scores: np.ndarray, labels: np.ndarray, window: int,
              convention: RangeConvention = VUS_RANGE_AUC) -> dict[str, float]:
    """Range-AUC-ROC/PR at one buffer length `window` (default convention: the `vus` package's RangeAUC)."""
    roc, pr = range_curves(scores, labels, [int(window)], convention)
    return {"range_auc_roc": float(roc[0]), "range_auc_pr": float(pr[0])}


def vus(scores: np.ndarray, labels: np.ndarray, max_buffer: int,
        convention: RangeConvention = TSB_AD_VUS) -> dict[str, float]:
    """VUS-ROC/PR: the range-AUCs averaged over buffer lengths 0, 1, ..., `max_buffer`."""
    roc, pr = range_curves(scores, labels, range(int(max_buffer) + 1), convention)
    return {"vus_roc": float(roc.mean()), "vus_pr": float(pr.mean())}


def range_auc_vus(scores: np.ndarray, labels: np.ndarray, window: int) -> dict[str, float]:
    """The threshold-free range metrics on raw scores, as TSB-AD reports them, at sliding window `window`.

    - range-AUC-ROC/PR: the `vus` package's `metricor.RangeAUC(labels, score, window)` (`VUS_RANGE_AUC`);
    - VUS-ROC/PR: TSB-AD `get_metrics(score, labels, slidingWindow=window)`, buffers 0..`window`
      (`TSB_AD_VUS`).
    Returns {"range_auc_roc", "range_auc_pr", "vus_roc", "vus_pr"}; NaN when labels are all 0 (or all 1).
    """
    window = int(window)
    if window < 0:
        raise ValueError(f"window must be >= 0, got {window}")
    return {**range_auc(scores, labels, window), **vus(scores, labels, window)}


def _segment_min(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Minimum of `values[starts[i]:ends[i]]` per (non-empty, disjoint, sorted) segment."""
    # reduceat over [start_i, end_i) pairs: interleave starts and ends, keep every other result
    bounds = np.stack([starts, ends], axis=1).reshape(-1)
    vals = np.r_[values, values[-1:]]  # a dummy slot so an end index equal to T is valid
    return np.minimum.reduceat(vals, bounds)[::2]


# --------------------------------------------------------------------------- the paper's published protocol

PAPER_WINDOW = 100  # the published code calls get_range_vus_roc(pred, gt, 100): range-AUC at 100, VUS to 200


def published_point_adjust(pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Point adjustment exactly as the paper's code (`get_adjust_F1PA`) does it, as a new array.

    It equals `point_adjust` except for one quirk of the published loop: its backward walk
    `for j in range(i, 0, -1)` stops at index 1, so a true segment that starts at index 0 and is first
    hit later keeps `pred[0] = 0`. The published code also adjusts its input in place; this function
    never modifies `pred` or `labels`.
    """
    adj = point_adjust(pred, labels)
    p = np.asarray(pred).astype(bool)
    y = check_labels(labels, p.shape[0])
    if y[0] and not p[0]:
        adj[0] = False
    return adj


def paper_protocol(pred: np.ndarray, labels: np.ndarray, window: int = PAPER_WINDOW) -> dict[str, float]:
    """The paper's published evaluation of binary predictions (xf530xf/LLMs-Mamba d9721c5,
    `solver.py` test() -> `metrics/metrics.py combine_all_evaluation_scores(pred, gt, test_energy)`).

    `pred` `[T]` is `test_scores > threshold` at the test-leaking percentile threshold. In the order
    of the published code:
    - affiliation precision/recall (Huet et al., KDD 2022) on the UNADJUSTED predictions;
    - the predictions are point-adjusted (`published_point_adjust`);
    - PA accuracy/precision/recall/F1 of the adjusted predictions (scikit-learn's binary definitions;
      precision 0 when nothing is predicted);
    - range-AUC-ROC/PR (TSB-UAD `metricor.RangeAUC`, buffer `window`) and VUS-ROC/PR (TSB-UAD
      `RangeAUC_volume`, buffers 0..2 * `window`) computed ON THE ADJUSTED BINARY PREDICTIONS used as
      scores (`PUBLISHED_TSB_UAD`), not on the anomaly scores. These range-AUCs are the "ROC/PRC"
      columns of the paper's table.
    Returns {"pa_accuracy", "pa_precision", "pa_recall", "pa_f1", "aff_precision", "aff_recall",
    "range_auc_roc", "range_auc_pr", "vus_roc", "vus_pr"}; label-dependent values are NaN when
    labels are all 0 (the published code raises there).
    """
    p = np.asarray(pred).astype(bool)
    y = check_labels(labels, p.shape[0])
    aff = affiliation(p, y)
    adj = published_point_adjust(p, y)
    pa = precision_recall_f1(adj, y)
    window = int(window)
    roc, pr = range_curves(adj.astype(np.float64), y, range(2 * window + 1), PUBLISHED_TSB_UAD)
    return {"pa_accuracy": float(np.mean(adj == y)), "pa_precision": pa["precision"], "pa_recall": pa["recall"],
            "pa_f1": pa["f1"], "aff_precision": aff["precision"], "aff_recall": aff["recall"],
            "range_auc_roc": float(roc[window]), "range_auc_pr": float(pr[window]),
            "vus_roc": float(roc.mean()), "vus_pr": float(pr.mean())}


# --------------------------------------------------------------------------- affiliation

def affiliation(pred: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Affiliation precision, recall and F1 (Huet, Navarro & Rossi, KDD 2022).

    Each point i is the interval [i, i+1); true events are the label segments, the time axis [0, T)
    is cut into affiliation zones at the midpoints between consecutive events, and inside the zone
    I_j of event g_j with predictions Y_j = pred ∩ I_j:
    - precision_j = mean over y in Y_j of  S_j(dist(y, g_j)), S_j(d) = P_{X~U(I_j)}(dist(X, g_j) >= d),
      i.e. how much closer to the event y is than a uniformly random point of the zone
      (closed form: S_j(d) = [max(0, a_j - z0 - d) + max(0, z1 - b_j - d)] / |I_j| for d > 0, 1 at d = 0);
    - recall_j = mean over x in g_j of  S_x(dist(x, Y_j)), S_x(d) = P_{X~U(I_j)}(|X - x| >= d)
      = [max(0, x - z0 - d) + max(0, z1 - x - d)] / |I_j|   (0 when Y_j is empty).
    Precision averages precision_j over zones with a prediction; recall averages recall_j over all
    zones. A random prediction scores about 0.5 on both, a perfect one 1.

    The integrals are exact: both integrands are piecewise linear in y or x with kinks only at
    multiples of 1/4 (event bounds are integers, zone cuts multiples of 1/2), so the midpoint rule
    on half-cells (precision) and quarter-cells (recall) is exact. Everything is vectorised over points.
    NaN (all three) when labels are all 0; precision NaN and F1 0 when nothing is predicted.
    """
    p = np.asarray(pred).astype(bool)
    y = check_labels(labels, p.shape[0])
    n = p.shape[0]
    starts, ends = segments(y)
    nan = float("nan")
    if len(starts) == 0:
        return {"precision": nan, "recall": nan, "f1": nan}
    n_seg = len(starts)
    cuts = (ends[:-1] + starts[1:]) / 2.0  # zone boundaries
    z0 = np.r_[0.0, cuts]
    z1 = np.r_[cuts, float(n)]
    zlen = z1 - z0

    # precision: midpoints of the half-cells of predicted points
    py = (np.flatnonzero(p)[:, None] + np.array([0.25, 0.75])).reshape(-1)
    if py.size:
        zone = np.searchsorted(cuts, py, side="right")
        a, b = starts[zone], ends[zone]
        d = np.maximum(np.maximum(a - py, py - b), 0.0)
        surv = (np.maximum(0.0, a - z0[zone] - d) + np.maximum(0.0, z1[zone] - b - d)) / zlen[zone]
        surv = np.where(d > 0, surv, 1.0)
        cnt = np.bincount(zone, minlength=n_seg)
        prec_j = np.bincount(zone, weights=surv, minlength=n_seg)[cnt > 0] / cnt[cnt > 0]
        precision = float(prec_j.mean())
    else:
        precision = nan

    # recall: quarter-cell midpoints of the true anomalous points; distance to the zone's predictions
    g = np.flatnonzero(y)
    seg = np.searchsorted(starts, g, side="right") - 1  # event (= zone) of each anomalous point
    ar = np.arange(n)
    prev_pred = np.maximum.accumulate(np.where(p, ar, -1))  # last predicted index <= i
    next_pred = np.minimum.accumulate(np.where(p, ar, n)[::-1])[::-1]  # first predicted index >= i
    qx = g[:, None] + np.array([0.125, 0.375, 0.625, 0.875])  # [n_anom, 4]
    zs, ze = z0[seg][:, None], z1[seg][:, None]
    pl = prev_pred[g][:, None]
    yl = pl + 1.0  # right end of the nearest predicted cell on the left
    left_ok = (pl >= 0) & (yl > zs)
    qn = next_pred[g][:, None]
    right_ok = (qn < n) & (qn < ze)
    dist = np.minimum(np.where(left_ok, qx - yl, np.inf), np.where(right_ok, qn - qx, np.inf))
    dist = np.where(p[g][:, None], 0.0, dist)
    surv = (np.maximum(0.0, qx - zs - dist) + np.maximum(0.0, ze - qx - dist)) / (ze - zs)
    rec_j = np.bincount(seg, weights=surv.sum(axis=1), minlength=n_seg) / (4.0 * (ends - starts))
    recall = float(rec_j.mean())
    if np.isnan(precision) or precision + recall == 0:
        f1 = 0.0
    else:
        f1 = 2 * precision * recall / (precision + recall)
    return {"precision": precision, "recall": recall, "f1": float(f1)}

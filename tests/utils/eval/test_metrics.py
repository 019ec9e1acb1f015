"""utils.eval.metrics: a hand-computed case per metric, properties (hypothesis) and edge cases;
cross-checks against the reference implementations are in test_reference.py."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.eval import metrics as M

# ----------------------------------------------------------------------------- hand-computed cases


def test_point_wise_hand():
    pred = np.array([1, 1, 0, 0, 1, 0])
    labels = np.array([1, 0, 0, 1, 1, 0])
    # TP = {0, 4}, FP = {1}, FN = {3}
    m = M.precision_recall_f1(pred, labels)
    assert m == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3})


LAB = np.array([0, 1, 1, 1, 0, 0, 1, 1, 0])
PRED = np.array([0, 0, 1, 0, 0, 0, 0, 0, 1])


def test_point_adjust_hand():
    adj = M.point_adjust(PRED, LAB)
    # segment [1, 4) has a hit -> fully credited; segment [6, 8) has none
    assert adj.astype(int).tolist() == [0, 1, 1, 1, 0, 0, 0, 0, 1]
    m = M.adjusted_metrics(PRED, LAB)
    # TP 3, FP 1, FN 2; accuracy: 6 of 9 points agree
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["recall"] == pytest.approx(3 / 5)
    assert m["f1"] == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert m["accuracy"] == pytest.approx(6 / 9)


def test_pa_k_hand():
    curve = M.pa_k_curve(PRED, LAB)
    # segment 1 has 1/3 = 33 % detected: adjusted for K < 33.3; segment 2 never
    pa, pw = 2 * 0.75 * 0.6 / 1.35, 2 * 0.5 * 0.2 / 0.7  # K <= 30: PA F1; K >= 40: point-wise F1
    assert curve["k"] == list(map(float, range(0, 101, 10)))
    assert curve["f1"] == pytest.approx([pa] * 4 + [pw] * 7)
    area = 0.1 * (3 * pa + (pa + pw) / 2 + 6 * pw)
    assert curve["auc"] == pytest.approx(area)
    assert M.pa_k_adjust(PRED, LAB, 100).astype(int).tolist() == PRED.tolist()


def test_auc_hand():
    s, y = np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])
    assert M.auc_roc(s, y) == pytest.approx(0.75)  # 3 of 4 positive-negative pairs ordered right
    assert M.auc_pr(s, y) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)  # recall steps at precision 1 and 2/3
    # ties form one step: ROC (0,0) -> (0.5,1) -> (1,1), area 0.75; AP = 1 * 1/2
    assert M.auc_roc([1.0, 1.0, 0.0], [1, 0, 0]) == pytest.approx(0.75)
    assert M.auc_pr([1.0, 1.0, 0.0], [1, 0, 0]) == pytest.approx(0.5)


def test_oracle_hand():
    s, y = np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])
    thr, f1 = M.best_f1_threshold(s, y)
    # cuts >=0.8: F1 2/3; >=0.4: 1/2; >=0.35: P 2/3 R 1 -> 0.8; >=0.1: 2/3
    assert f1 == pytest.approx(0.8)
    assert thr == 0.1 and (s > thr).astype(int).tolist() == [0, 1, 1, 1]


def test_affiliation_hand():
    labels = np.zeros(10, int)
    labels[4:6] = 1  # one event [4, 6), one zone [0, 10)
    pred = np.zeros(10, int)
    pred[4] = 1
    # precision: the prediction lies in the event -> 1. recall: x in [4,5) distance 0 -> 1;
    # x in [5,6): d = x-5, S = (x-d + 10-x-d)/10 = (20-2x)/10, integral over [5,6) = 0.9 -> recall 0.95
    m = M.affiliation(pred, labels)
    assert m["precision"] == pytest.approx(1.0)
    assert m["recall"] == pytest.approx(0.95)
    assert m["f1"] == pytest.approx(2 * 0.95 / 1.95)
    pred = np.zeros(10, int)
    pred[8] = 1
    # precision: y in [8,9), d = y-6 in [2,3), S(d) = (4-d + 4-d)/10, mean over d = 0.3
    # recall: x in [4,6), d = 8-x, S = (2x-8 + 2)/10, integral (x^2-6x)/10 over [4,6) = 0.8, / 2 = 0.4
    m = M.affiliation(pred, labels)
    assert m["precision"] == pytest.approx(0.3)
    assert m["recall"] == pytest.approx(0.4)


def test_range_curves_hand():
    s, y = np.array([0.9, 0.5, 0.1, 0.2, 0.3]), np.array([0, 1, 0, 0, 0])
    # 5 thresholds = every score. Buffers l = 0, 1 (no buffer points): ROC (0,0),(.25,0),(.25,1),...,(1,1)
    # -> 0.75, AP = 1 * 0.5 (first hit at precision 1/2).
    # l = 2, TSB-AD: points 0 and 2 get soft label w = sqrt(1 - 1/2); at the first threshold (only point 0):
    # TP = w, P' = 1 + w/2 (predicted mass), TPR = w / (1 + w/2), FPR = (1 - w) / (5 - 1 - w/2),
    # precision = w; at the second (points 0, 1): TPR = 1, same FPR, precision (1 + w) / 2.
    w = math.sqrt(0.5)
    tpr1, fpr1 = w / (1 + w / 2), (1 - w) / (4 - w / 2)
    roc2 = fpr1 * tpr1 / 2 + (1 - fpr1)
    pr2 = tpr1 * w + (1 - tpr1) * (1 + w) / 2
    roc, pr = M.range_curves(s, y, [0, 1, 2], M.TSB_AD_VUS, n_thresholds=5)
    assert roc == pytest.approx([0.75, 0.75, roc2])
    assert pr == pytest.approx([0.5, 0.5, pr2])
    # the vus package's RangeAUC: P' = 1 + (whole buffer mass 2w) / 2 at every threshold, PR by trapezoids
    # from precision 1
    t1, f1 = w / (1 + w), (1 - w) / (4 - w)
    roc, pr = M.range_curves(s, y, [2], M.VUS_RANGE_AUC, n_thresholds=5)
    assert roc[0] == pytest.approx(f1 * t1 / 2 + (1 - f1))
    assert pr[0] == pytest.approx(t1 * (1 + w) / 2 + (1 - t1) * ((1 + w) / 2 + w) / 2)
    # the published TSB-UAD: the buffer after the segment is one point shorter (none at l = 2), so only
    # point 0 has soft label w; P' = 1 + w / 2; trapezoid PR
    roc, pr = M.range_curves(s, y, [2], M.PUBLISHED_TSB_UAD, n_thresholds=5)
    assert roc[0] == pytest.approx(roc2)
    assert pr[0] == pytest.approx(tpr1 * (1 + w) / 2 + (1 - tpr1) * ((1 + w) / 2 + w) / 2)
    # the threshold-free entry point: range-AUC as the vus package at the window, VUS as TSB-AD over 0..window
    out = M.range_auc_vus(s, y, window=2)
    assert out["vus_roc"] == pytest.approx((0.75 + 0.75 + roc2) / 3, abs=0.05)  # 250 thresholds here, not 5


def test_paper_protocol_hand():
    """Binary predictions, by hand: segments [0, 3) and [6, 8); pred hits index 1 and misses the second."""
    y = np.array([1, 1, 1, 0, 0, 0, 1, 1, 0, 0])
    pred = np.array([0, 1, 0, 0, 1, 0, 0, 0, 0, 0])
    out = M.paper_protocol(pred, y)
    adj = np.array([0, 1, 1, 0, 1, 0, 0, 0, 0, 0], bool)  # the published adjustment leaves index 0 at 0
    assert np.array_equal(M.published_point_adjust(pred, y), adj)
    assert out["pa_precision"] == pytest.approx(2 / 3) and out["pa_recall"] == pytest.approx(2 / 5)
    assert out["pa_accuracy"] == pytest.approx(0.6)
    aff = M.affiliation(pred.astype(bool), y)  # affiliation of the UNADJUSTED predictions
    assert out["aff_precision"] == aff["precision"] and out["aff_recall"] == aff["recall"]
    roc, pr = M.range_curves(adj.astype(float), y, range(201), M.PUBLISHED_TSB_UAD)
    assert out["range_auc_roc"] == roc[100] and out["vus_pr"] == pytest.approx(pr.mean())


def test_estimate_period():
    t = np.arange(5000)
    assert M.estimate_period(np.sin(2 * np.pi * t / 50)) == 50
    assert M.estimate_period(np.ones(100)) == 125  # constant -> TSB-AD's fallback


# ----------------------------------------------------------------------------- properties

labels_st = st.lists(st.integers(0, 1), min_size=2, max_size=60)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), labels=labels_st)
def test_pa_f1_at_least_point_f1(data, labels):
    y = np.array(labels)
    pred = np.array(data.draw(st.lists(st.integers(0, 1), min_size=len(y), max_size=len(y))))
    if y.sum() == 0:
        return
    assert M.adjusted_metrics(pred, y)["f1"] >= M.precision_recall_f1(pred, y)["f1"] - 1e-12
    f1s = M.pa_k_curve(pred, y)["f1"]
    assert all(a >= b - 1e-12 for a, b in zip(f1s, f1s[1:]))  # PA%K F1 never increases with K


@settings(max_examples=40, deadline=None)
@given(data=st.data(), labels=labels_st)
def test_threshold_free_invariant_to_increasing_transform(data, labels):
    y = np.array(labels)
    if y.sum() == 0 or y.sum() == len(y):
        return
    ints = np.array(data.draw(st.lists(st.integers(-20, 20), min_size=len(y), max_size=len(y))), dtype=float)
    moved = ints ** 3 + 5 * ints + 7  # strictly increasing, exact in float64 for these integers
    assert M.auc_roc(moved, y) == pytest.approx(M.auc_roc(ints, y))
    assert M.auc_pr(moved, y) == pytest.approx(M.auc_pr(ints, y))
    assert M.range_auc_vus(moved, y, 4) == pytest.approx(M.range_auc_vus(ints, y, 4))
    for conv in (M.TSB_AD_VUS, M.VUS_RANGE_AUC, M.PUBLISHED_TSB_UAD):
        assert np.stack(M.range_curves(moved, y, range(9), conv)) == pytest.approx(
            np.stack(M.range_curves(ints, y, range(9), conv)))


@settings(max_examples=40, deadline=None)
@given(labels=labels_st)
def test_perfect_scores_give_one(labels):
    y = np.array(labels)
    if y.sum() == 0 or y.sum() == len(y):
        return
    s = y.astype(float)
    assert M.auc_roc(s, y) == pytest.approx(1.0)
    assert M.auc_pr(s, y) == pytest.approx(1.0)
    assert all(v == pytest.approx(1.0) for v in M.vus(s, y, 6).values())  # TSB-AD's VUS: 1 for a perfect score
    assert all(v == pytest.approx(1.0) for v in M.range_auc(s, y, 0).values())
    # the vus package's RangeAUC counts the whole buffer mass in P', so a perfect score stays below 1
    # once buffers exist, unless they fall outside the series
    assert M.range_auc(s, y, 6)["range_auc_roc"] <= 1.0 + 1e-12
    assert M.precision_recall_f1(y, y)["f1"] == pytest.approx(1.0)
    assert M.adjusted_metrics(y, y)["f1"] == pytest.approx(1.0)
    assert M.pa_k_curve(y, y)["auc"] == pytest.approx(1.0)
    assert M.affiliation(y, y) == pytest.approx({"precision": 1.0, "recall": 1.0, "f1": 1.0})
    assert M.best_f1_threshold(s, y)[1] == pytest.approx(1.0)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), labels=labels_st)
def test_inputs_never_mutated(data, labels):
    y = np.array(labels)
    pred = np.array(data.draw(st.lists(st.integers(0, 1), min_size=len(y), max_size=len(y))), dtype=bool)
    y0, p0 = y.copy(), pred.copy()
    M.point_adjust(pred, y)
    M.pa_k_adjust(pred, y, 30)
    M.adjusted_metrics(pred, y)
    M.pa_k_curve(pred, y)
    M.affiliation(pred, y)
    s = pred.astype(float)
    M.range_auc_vus(s, y, 4)
    assert np.array_equal(y, y0) and np.array_equal(pred, p0)
    assert M.point_adjust(pred, y) is not pred


def test_random_predictions_affiliation_near_half():
    rng = np.random.default_rng(0)
    n = 200_000
    labels = np.zeros(n, int)
    for start in rng.choice(n - 100, 40, replace=False):
        labels[start:start + rng.integers(5, 100)] = 1
    for rate in (0.01, 0.1, 0.5):
        m = M.affiliation(rng.random(n) < rate, labels)
        assert abs(m["precision"] - 0.5) < 0.03, (rate, m)


# ----------------------------------------------------------------------------- edge cases


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="NaN"):
        M.auc_roc(np.array([0.1, np.nan, 0.3]), np.array([0, 1, 0]))
    with pytest.raises(ValueError, match="0/1"):
        M.auc_roc(np.array([0.1, 0.2, 0.3]), np.array([0, 2, 0]))
    with pytest.raises(ValueError, match="length"):
        M.auc_roc(np.array([0.1, 0.2, 0.3]), np.array([0, 1]))
    assert M.check_labels(np.array([0.0, 1.0])).tolist() == [False, True]  # float labels are fine


def test_all_zero_labels_and_constant_scores():
    y0 = np.zeros(50, int)
    s = np.linspace(0, 1, 50)
    assert math.isnan(M.auc_roc(s, y0)) and math.isnan(M.auc_pr(s, y0))
    assert all(math.isnan(v) for v in M.range_auc_vus(s, y0, 4).values())
    assert all(math.isnan(v) for v in M.affiliation(s > 0.5, y0).values())
    m = M.precision_recall_f1(s > 0.5, y0)
    assert m["precision"] == 0 and math.isnan(m["recall"])
    y = (np.arange(50) % 10 == 0).astype(int)
    assert M.auc_roc(np.ones(50), y) == pytest.approx(0.5)
    assert M.auc_pr(np.ones(50), y) == pytest.approx(y.mean())
    m = M.affiliation(np.zeros(50, bool), y)  # nothing predicted
    assert math.isnan(m["precision"]) and m["recall"] == 0 and m["f1"] == 0


def test_matches_sklearn_auc():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    y = (rng.random(3000) < 0.1).astype(int)
    s = np.round(rng.random(3000) + 0.3 * y, 2)  # with ties
    assert M.auc_roc(s, y) == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)
    assert M.auc_pr(s, y) == pytest.approx(sk.average_precision_score(y, s), abs=1e-12)

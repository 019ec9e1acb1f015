"""Our evaluation against its references, value for value.

- The paper's published protocol (xf530xf/LLMs-Mamba `combine_all_evaluation_scores`): its outputs on
  fixed inputs are stored in `reference/published_protocol.json` by `reference/make_published_fixtures.py`
  (the published code cannot be imported here; see that script), including uniform random scores on
  MSL and SMAP.
- TSB-AD's `get_metrics` (AUC-ROC, AUC-PR, VUS-ROC/PR) and the `vus` package's `RangeAUC`, imported
  live (PyPI TSB-AD 1.5 and vus 0.0.6, installed with --no-deps).
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conftest import DATA_ROOT, REPO, reference
from reference.cases import RANDOM_CASES, digest, paper_predictions, random_case, synthetic_cases
from utils.eval import metrics as M
from utils.eval.report import evaluate_scores

FIXTURE = os.path.join(REPO, "tests", "reference", "published_protocol.json")
# published output key -> our key in metrics.paper_protocol
PUBLISHED_KEYS = {"pa_accuracy": "pa_accuracy", "pa_precision": "pa_precision", "pa_recall": "pa_recall",
                  "pa_f_score": "pa_f1", "Affiliation precision": "aff_precision",
                  "Affiliation recall": "aff_recall", "R_AUC_ROC": "range_auc_roc", "R_AUC_PR": "range_auc_pr",
                  "VUS_ROC": "vus_roc", "VUS_PR": "vus_pr"}


def _published() -> dict:
    with open(FIXTURE) as f:
        return json.load(f)


def _case(name: str) -> dict:
    synthetic = synthetic_cases()
    if name in synthetic:
        return synthetic[name]
    data, _, seed = name.partition("_random_seed")
    case = random_case(DATA_ROOT, data.upper(), int(seed))
    if case is None:
        pytest.skip(f"real data for {name} not found under {DATA_ROOT} (set CROSSALIGN_DATA)")
    return case


def test_fixture_covers_every_case():
    names = set(_published()["cases"])
    expected = set(synthetic_cases()) | {f"{d.lower()}_random_seed{s}" for d in RANDOM_CASES for s in (0, 1, 2)}
    assert names == expected
    assert _published()["commit"].startswith("d9721c5")


@pytest.mark.parametrize("name", sorted(_published()["cases"]))
def test_paper_protocol_equals_published_code(name):
    ref = _published()["cases"][name]
    case = _case(name)
    assert digest(case) == ref["digest"], "the inputs differ from those the reference was recorded on"
    pred = paper_predictions(case)
    assert int(pred.sum()) == ref["n_predicted"]
    ours = M.paper_protocol(pred, case["labels"])
    for key, our_key in PUBLISHED_KEYS.items():
        assert ours[our_key] == pytest.approx(ref["outputs"][key], abs=1e-10), key
    # the report's paper block is the same computation at the report's paper threshold
    r = evaluate_scores(case["test"], case["labels"], train_scores=case["train"],
                        anomaly_ratio=case["anomaly_ratio"])
    for key, our_key in PUBLISHED_KEYS.items():
        assert r["paper"][our_key] == pytest.approx(ref["outputs"][key], abs=1e-10), key


def test_published_adjustment_quirk_is_reproduced():
    """A segment starting at index 0 and first hit later: the published loop never sets pred[0]."""
    case = synthetic_cases()["ties_constant"]
    y, pred = case["labels"], paper_predictions(case).astype(bool)
    assert y[0] == 1 and not pred[0] and pred[:40].any()
    ours = M.published_point_adjust(pred, y)
    assert not ours[0] and M.point_adjust(pred, y)[0]
    assert np.array_equal(ours[1:], M.point_adjust(pred, y)[1:])
    ref = _published()["cases"]["ties_constant"]["outputs"]
    n_pos = y.sum()
    assert ours[y == 1].sum() / n_pos == pytest.approx(ref["pa_recall"], abs=1e-12)
    assert M.point_adjust(pred, y)[y == 1].sum() / n_pos != pytest.approx(ref["pa_recall"], abs=1e-6)


def test_paper_protocol_does_not_mutate_inputs():
    case = synthetic_cases()["random_long_segments"]
    pred = paper_predictions(case)
    before = pred.copy()
    M.paper_protocol(pred, case["labels"])
    assert np.array_equal(pred, before)


def _honest_cases():
    cases = synthetic_cases()
    for name, case in cases.items():
        yield name, case["test"], case["labels"]


@pytest.mark.parametrize("window", [0, 7, 100])
def test_threshold_free_equals_tsb_ad_get_metrics(window):
    tsb = reference("TSB_AD.evaluation.basic_metrics")
    for name, s, y in _honest_cases():
        grader = tsb.basic_metricor()
        *_, ref_vus_roc, ref_vus_pr = tsb.generate_curve(y.astype(int), s, window, "opt", 250)
        ours = evaluate_scores(s, y, vus_window=window)["threshold_free"]
        assert ours["auc_roc"] == pytest.approx(grader.metric_ROC(y, s), abs=1e-10), name
        assert ours["auc_pr"] == pytest.approx(grader.metric_PR(y, s), abs=1e-10), name
        assert ours["vus_roc"] == pytest.approx(ref_vus_roc, abs=1e-10), name
        assert ours["vus_pr"] == pytest.approx(ref_vus_pr, abs=1e-10), name


def test_get_metrics_entry_point_on_one_case():
    """TSB-AD's public entry point itself (it also runs its threshold metrics, so one small case)."""
    tm = reference("TSB_AD.evaluation.metrics")
    case = synthetic_cases()["good_detector"]
    s, y = case["test"][:1500], case["labels"][:1500]
    ref = tm.get_metrics(s, y, slidingWindow=100)
    ours = evaluate_scores(s, y)["threshold_free"]
    for key, our_key in (("AUC-ROC", "auc_roc"), ("AUC-PR", "auc_pr"), ("VUS-ROC", "vus_roc"),
                         ("VUS-PR", "vus_pr")):
        assert ours[our_key] == pytest.approx(ref[key], abs=1e-10), key


@pytest.mark.parametrize("window", [0, 1, 2, 7, 100])
def test_range_auc_equals_vus_package(window):
    vm = reference("vus.utils.metrics")
    for name, s, y in _honest_cases():
        ref_roc, ref_pr, *_ = vm.metricor().RangeAUC(labels=y, score=s, window=window, plot_ROC=True)
        ours = M.range_auc_vus(s, y, window)
        assert ours["range_auc_roc"] == pytest.approx(ref_roc, abs=1e-10), name
        assert ours["range_auc_pr"] == pytest.approx(ref_pr, abs=1e-10), name


def test_vus_package_opt_curve_equals_ours_random_cases():
    """Random small inputs (segments at the edges, ties, binary scores) against the vus package."""
    vm = reference("vus.utils.metrics")
    rng = np.random.default_rng(5)
    for trial in range(8):
        n = int(rng.integers(150, 900))
        y = np.zeros(n, dtype=int)
        for _ in range(int(rng.integers(1, 6))):
            start = int(rng.integers(0, n - 3))
            y[start:start + int(rng.integers(1, 50))] = 1
        y[:3] = trial % 2
        y[-2:] = trial % 3 == 0
        s = rng.random(n) + 0.6 * y
        if trial % 3 == 1:
            s = np.round(s, 1)
        if trial % 3 == 2:
            s = (s > np.quantile(s, 0.9)).astype(float)
        w = int(rng.integers(0, 25))
        *_, ref_roc, ref_pr = vm.metricor().RangeAUC_volume_opt(labels_original=y, score=s, windowSize=w, thre=250)
        ours = M.vus(s, y, w)
        assert ours["vus_roc"] == pytest.approx(ref_roc, abs=1e-10)
        assert ours["vus_pr"] == pytest.approx(ref_pr, abs=1e-10)
        roc, pr, *_ = vm.metricor().RangeAUC(labels=y, score=s, window=w, plot_ROC=True)
        ours = M.range_auc(s, y, w)
        assert ours["range_auc_roc"] == pytest.approx(roc, abs=1e-10)
        assert ours["range_auc_pr"] == pytest.approx(pr, abs=1e-10)


def test_affiliation_equals_reference():
    """Huet et al.'s own affiliation code, as shipped in the vus package."""
    aff = reference("vus.affiliation.metrics")
    gen = reference("vus.affiliation.generics")
    for name, s, y in _honest_cases():
        for q in (0.5, 0.9, 0.99):
            pred = s > np.quantile(s, q)
            ref = aff.pr_from_events(gen.convert_vector_to_events(pred), gen.convert_vector_to_events(y),
                                     (0, len(y)))
            ours = M.affiliation(pred, y)
            assert ours["precision"] == pytest.approx(ref["Affiliation_Precision"], abs=1e-10), name
            assert ours["recall"] == pytest.approx(ref["Affiliation_Recall"], abs=1e-10), name

"""utils.eval.thresholds: percentile thresholds by hand, the GPD fit against scipy, POT against a known tail,
SPOT's block updates against a per-point reference, and clear errors."""
from __future__ import annotations

import math

import numpy as np
import pytest

from utils.eval import thresholds as T


def test_paper_threshold_uses_train_and_test():
    train, test = np.arange(10.0), np.arange(10.0, 20.0)
    # percentile 90 of 0..19 (linear interpolation): 0.9 * 19 = 17.1
    assert T.paper_threshold(train, test, 10.0) == pytest.approx(17.1)
    # leak-free: the same percentile of the training scores alone, 0.9 * 9 = 8.1
    assert T.percentile_threshold(train, 10.0) == pytest.approx(8.1)
    with pytest.raises(ValueError, match="percentage"):
        T.percentile_threshold(train, 150)


@pytest.mark.parametrize("shape", [0.25, 0.0, -0.3])
def test_gpd_fit_matches_scipy_mle(shape):
    stats = pytest.importorskip("scipy.stats")
    y = stats.genpareto.rvs(shape, scale=1.5, size=4000, random_state=7)
    y = y[y > 0]
    gamma, sigma = T.fit_gpd(y)
    c, _, scale = stats.genpareto.fit(y, floc=0)
    # both maximise the same likelihood; compare likelihoods (robust) and parameters (loosely)
    assert T._gpd_loglik(y, gamma, sigma) >= T._gpd_loglik(y, c, scale) - 1e-6
    assert gamma == pytest.approx(c, abs=0.02) and sigma == pytest.approx(scale, rel=0.02)


def test_gpd_fit_bounded_tail():
    # uniform excesses: the likelihood peaks at gamma -> -1 with no interior root of Grimshaw's equation
    y = np.random.default_rng(0).uniform(0, 2.0, 3000)
    gamma, sigma = T.fit_gpd(y)
    assert gamma == pytest.approx(-1.0, abs=0.01) and sigma == pytest.approx(2.0, rel=0.01)


def test_pot_recovers_exponential_quantile():
    x = np.random.default_rng(1).exponential(1.0, 200_000)
    for q in (1e-3, 1e-4):
        pot = T.pot_threshold(x, q=q, level=0.98)
        # P(X > z) = q  ->  z = -log q for the unit exponential
        assert pot["value"] == pytest.approx(-math.log(q), rel=0.05)
        assert pot["n_peaks"] == pytest.approx(0.02 * x.size, rel=0.01)


def test_pot_errors():
    with pytest.raises(ValueError, match="at least"):
        T.pot_threshold(np.ones(1000))  # constant scores: nothing above the initial quantile
    with pytest.raises(ValueError, match="risk"):
        T.pot_threshold(np.random.default_rng(0).random(1000), q=2.0)


def _spot_per_point(train, test, q, level):
    """Siffer et al.'s SPOT, one point at a time (the reference for n_blocks = len(test))."""
    cal = T.pot_threshold(train, q=q, level=level)
    t, z = cal["initial"], cal["value"]
    peaks = list(train[train > t] - t)
    n, gamma, sigma = train.size, cal["gamma"], cal["sigma"]
    out = []
    for x in test:
        out.append(z)
        if x > z:  # alarm: the model is left unchanged
            continue
        n += 1
        if x > t:
            peaks.append(x - t)
            gamma, sigma = T.fit_gpd(np.array(peaks))
        z = max(T._quantile(t, gamma, sigma, q, n, len(peaks)), t)
    return np.array(out)


def test_spot_blocks_of_one_is_exact_spot():
    rng = np.random.default_rng(2)
    train, test = rng.exponential(1.0, 3000), rng.exponential(1.0, 120)
    test[[10, 50]] = 20.0  # two alarms, which must not enter the model
    ref = _spot_per_point(train, test, 1e-2, 0.95)
    ours = T.spot_thresholds(train, test, q=1e-2, level=0.95, n_blocks=test.size)
    assert ours["block_size"] == 1
    assert np.allclose(ours["block_values"], ref, rtol=1e-6)
    pred = T.spot_predictions(test, ours["block_values"], ours["block_size"])
    assert np.array_equal(pred, test > ref)


def test_spot_stationary_stays_near_pot():
    rng = np.random.default_rng(3)
    train, test = rng.exponential(1.0, 50_000), rng.exponential(1.0, 50_000)
    pot = T.pot_threshold(train)
    spot = T.spot_thresholds(train, test, n_blocks=50)
    assert len(spot["block_values"]) == 50 and spot["block_values"][0] == pytest.approx(pot["value"])
    assert spot["value"] == pytest.approx(pot["value"], rel=0.1)
    assert T.spot_predictions(test, spot["block_values"], spot["block_size"]).shape == test.shape

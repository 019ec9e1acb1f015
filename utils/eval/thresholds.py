"""Thresholds for turning anomaly scores into predictions (README, Evaluation > Thresholds).

A threshold `thr` predicts `scores > thr`. Four kinds, each labelled by what it may see:

- `paper_threshold`: percentile `100 - anomaly_ratio` of the concatenated train and TEST scores, as
  the paper's published code does. It uses the test scores (not their labels), so it LEAKS the test
  distribution; reported beside the honest ones, never alone.
- `percentile_threshold`: the same percentile of training (+ validation) scores only: leak-free.
- `pot_threshold` / `spot_thresholds`: Peaks-Over-Threshold and its streaming form SPOT (Siffer,
  Fouque, Termier & Largouet, "Anomaly Detection in Streams with Extreme Value Theory", KDD 2017),
  calibrated on training scores, with risk `q` (the probability of exceeding the threshold).
- the oracle best-F1 threshold lives in `utils.eval.metrics.best_f1_threshold` (it needs test labels).

POT in brief: take an initial high quantile t of the calibration scores (`level`, 0.98), fit a
generalised Pareto distribution GPD(gamma, sigma) to the excesses Y = X - t over it, and return
    z_q = t + sigma / gamma * ((q * n / N_t) ** -gamma - 1)     (gamma != 0)
    z_q = t - sigma * log(q * n / N_t)                          (gamma == 0, exponential tail)
with n calibration points and N_t excesses. The GPD is fitted by maximum likelihood with Grimshaw's
(1993) reduction to one variable, as in Siffer et al.: the ML solution satisfies u(x) v(x) = 1 with
x = gamma / sigma, u(x) = mean(1 / (1 + x Y)), v(x) = 1 + mean(log(1 + x Y)); gamma = v(x) - 1. The
roots are bracketed on a grid over (-1 / max Y, 0) and (0, 2 (mean Y - min Y) / min Y^2), refined by
Brent's method, and the candidate of highest likelihood wins among the roots, x = 0 (the exponential
fit) and the bracket ends (where bounded tails, e.g. uniform scores, have their maximum and no root).
"""
from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq

from utils.eval.metrics import check_scores


def paper_threshold(train_scores: np.ndarray, test_scores: np.ndarray, anomaly_ratio: float) -> float:
    """Percentile `100 - anomaly_ratio` of train and test scores together. LEAKS test scores."""
    _check_ratio(anomaly_ratio)
    both = np.concatenate([check_scores(train_scores, "train_scores"), check_scores(test_scores, "test_scores")])
    return float(np.percentile(both, 100.0 - anomaly_ratio))


def percentile_threshold(scores: np.ndarray, anomaly_ratio: float) -> float:
    """Percentile `100 - anomaly_ratio` of (training and validation) scores: leak-free."""
    _check_ratio(anomaly_ratio)
    return float(np.percentile(check_scores(scores), 100.0 - anomaly_ratio))


def _check_ratio(anomaly_ratio: float) -> None:
    if not 0 <= anomaly_ratio <= 100:
        raise ValueError(f"anomaly_ratio is a percentage in [0, 100], got {anomaly_ratio}")


# --------------------------------------------------------------------------- GPD fit (Grimshaw)

def _grimshaw_w(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """w(x) = u(x) v(x) - 1 for each candidate x `[G]` given excesses y `[N]` (vectorised over both)."""
    xy = 1.0 + np.outer(x, y)  # [G, N]
    u = np.mean(1.0 / xy, axis=1)
    v = 1.0 + np.mean(np.log(xy), axis=1)
    return u * v - 1.0


def _gpd_loglik(y: np.ndarray, gamma: float, sigma: float) -> float:
    if sigma <= 0:
        return -math.inf
    if abs(gamma) < 1e-12:
        return -len(y) * math.log(sigma) - float(np.sum(y)) / sigma
    z = 1.0 + gamma * y / sigma
    if np.any(z <= 0):
        return -math.inf
    return -len(y) * math.log(sigma) - (1.0 + 1.0 / gamma) * float(np.sum(np.log(z)))


def fit_gpd(excesses: np.ndarray, n_grid: int = 64) -> tuple[float, float]:
    """Maximum-likelihood GPD (gamma, sigma) of positive excesses `[N]` by Grimshaw's procedure.

    Falls back to the exponential tail (gamma = 0, sigma = mean) when it has the higher likelihood
    or when the excesses are (nearly) all equal.
    """
    y = np.asarray(excesses, dtype=np.float64)
    if y.size == 0 or np.any(y <= 0):
        raise ValueError("GPD fit needs a non-empty array of positive excesses")
    y_mean, y_min, y_max = float(y.mean()), float(y.min()), float(y.max())
    candidates = [(0.0, y_mean)]
    eps = 1e-8 / y_mean
    lo_neg = -1.0 / y_max + eps
    hi_pos = 2.0 * (y_mean - y_min) / (y_min * y_min) if y_mean > y_min else 0.0
    brackets = []
    if lo_neg < -eps:
        # geometric spacing crowds the grid near both ends, where roots tend to sit
        frac = np.geomspace(1e-6, 1 - 1e-6, n_grid)
        brackets.append(np.sort(np.r_[lo_neg * frac, lo_neg * (1 - frac)]))
    if hi_pos > eps:
        brackets.append(np.geomspace(eps, hi_pos, n_grid))
    for grid in brackets:
        # the profile likelihood at the bracket ends is a candidate too: for short-tailed (bounded)
        # excesses such as uniform scores the maximum sits at x -> -1/max(Y) and w has no root
        for x in (grid[0], grid[-1]):
            gamma = float(np.mean(np.log1p(x * y)))
            if gamma / x > 0:
                candidates.append((gamma, gamma / x))
        w = _grimshaw_w(grid, y)
        sign_change = np.flatnonzero(np.sign(w[:-1]) * np.sign(w[1:]) < 0)
        for i in sign_change:
            x = brentq(lambda t: float(_grimshaw_w(np.array([t]), y)[0]), grid[i], grid[i + 1], xtol=1e-14)
            gamma = float(np.mean(np.log1p(x * y)))
            sigma = gamma / x
            if sigma > 0:
                candidates.append((gamma, sigma))
    best = max(candidates, key=lambda c: _gpd_loglik(y, *c))
    return float(best[0]), float(best[1])


def _quantile(t: float, gamma: float, sigma: float, q: float, n: int, n_peaks: int) -> float:
    r = q * n / n_peaks
    if abs(gamma) < 1e-12:
        return t - sigma * math.log(r)
    return t + sigma / gamma * (r ** (-gamma) - 1.0)


MIN_PEAKS = 10  # fewer excesses than this make the tail fit meaningless


def pot_threshold(scores: np.ndarray, q: float = 1e-3, level: float = 0.98) -> dict:
    """POT threshold z_q from calibration (training) scores `[N]`.

    Returns {"value", "initial", "gamma", "sigma", "n_peaks"}. Raises `ValueError` (with the reason)
    when the tail cannot be fitted: fewer than 10 excesses over the initial quantile, e.g. constant
    scores or too few points; lower `level` or provide more scores.
    """
    if not 0 < q < 1:
        raise ValueError(f"POT risk q must be in (0, 1), got {q}")
    if not 0 < level < 1:
        raise ValueError(f"POT level must be in (0, 1), got {level}")
    s = check_scores(scores, "calibration scores")
    t = float(np.quantile(s, level))
    y = s[s > t] - t
    if y.size < MIN_PEAKS:
        raise ValueError(f"POT needs at least {MIN_PEAKS} scores above the initial {level:.3g}-quantile, "
                         f"found {y.size} (of {s.size}); lower pot_level or use more calibration scores")
    gamma, sigma = fit_gpd(y)
    z = _quantile(t, gamma, sigma, q, s.size, y.size)
    return {"value": float(max(z, t)), "initial": t, "gamma": gamma, "sigma": sigma, "n_peaks": int(y.size)}


def spot_thresholds(train_scores: np.ndarray, test_scores: np.ndarray, q: float = 1e-3, level: float = 0.98,
                    n_blocks: int = 100) -> dict:
    """SPOT: POT calibrated on training scores, then updated while streaming over the test scores.

    Siffer et al. update after every point: a point above z_q is an alarm (left out of the tail and
    of the point count n), a point between t and z_q becomes a new excess and the GPD is refitted,
    any other point only increments n. To avoid a Python loop
    over points we update once per block: the test series is cut into `n_blocks` equal blocks, each
    block is judged with the threshold fitted on everything before it (vectorised), then its new
    excesses and its length are added and the GPD is refitted. `n_blocks = len(test)` is exact SPOT.

    Returns {"value": final threshold, "block_values": [n_blocks'] thresholds, "block_size": int,
             "initial", "gamma", "sigma", "n_peaks"}; the prediction for test point i is
    `test[i] > block_values[i // block_size]`.
    """
    cal = pot_threshold(train_scores, q=q, level=level)
    s = check_scores(test_scores, "test_scores")
    train = check_scores(train_scores, "train_scores")
    t = cal["initial"]
    peaks = [train[train > t] - t]
    n_seen, n_peaks = train.size, int(peaks[0].size)
    z, gamma, sigma = cal["value"], cal["gamma"], cal["sigma"]
    block = max(1, math.ceil(s.size / max(1, int(n_blocks))))
    values = []
    for b0 in range(0, s.size, block):
        x = s[b0:b0 + block]
        values.append(z)
        normal = x <= z  # alarms (x > z) are kept out of the tail model and out of the count n
        new = x[normal & (x > t)] - t
        n_seen += int(normal.sum())
        if new.size:
            peaks.append(new)
            n_peaks += new.size
            gamma, sigma = fit_gpd(np.concatenate(peaks))
        z = max(_quantile(t, gamma, sigma, q, n_seen, n_peaks), t)
    return {"value": float(values[-1]), "block_values": [float(v) for v in values], "block_size": int(block),
            "initial": t, "gamma": float(gamma), "sigma": float(sigma), "n_peaks": int(n_peaks)}


def spot_predictions(test_scores: np.ndarray, block_values: list[float], block_size: int) -> np.ndarray:
    """Bool predictions `[T]` of SPOT's block-wise thresholds (see `spot_thresholds`)."""
    s = np.asarray(test_scores, dtype=np.float64)
    thr = np.repeat(np.asarray(block_values, dtype=np.float64), block_size)[: s.size]
    if thr.size != s.size:
        raise ValueError(f"SPOT thresholds cover {thr.size} points but scores have {s.size}")
    return s > thr

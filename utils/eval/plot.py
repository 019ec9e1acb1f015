"""scores.png: test scores over time, each threshold, true anomaly segments shaded, predictions marked.

Long series are decimated for drawing only: the time axis is cut into at most `max_points` buckets
and each bucket is drawn at its MAXIMUM score (max-pooling), so a single spike is never lost, unlike
plain subsampling; a light band spans each bucket's minimum to maximum. Predictions are max-pooled
the same way (a bucket is marked if any point in it is predicted). True segments are drawn exactly
from their start/end indices. 400k points take well under a second. Written atomically (temporary file, then rename), with matplotlib's Agg backend.
"""
from __future__ import annotations

import numpy as np

from utils.eval.columns import THRESHOLD
from utils.eval.metrics import segments
from utils.io import atomic_write

COLORS = {t.name: t.colour for t in THRESHOLD.values()}


def _max_pool(x: np.ndarray, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """Bucket start indices and per-bucket maxima of `x` `[T]` (at most `buckets` buckets)."""
    n = x.shape[0]
    if n <= buckets:
        return np.arange(n), x
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)[:-1]
    edges = np.unique(edges)
    return edges, np.maximum.reduceat(x, edges)


def plot_scores(path: str, test_scores: np.ndarray, test_labels: np.ndarray, thresholds: dict[str, float],
                predictions: dict[str, np.ndarray] | None = None, title: str = "", max_points: int = 4000) -> None:
    """Write a PNG of `test_scores` `[T]` with true segments of `test_labels` `[T]` shaded.

    `thresholds`: name -> value (a horizontal line), or name -> array `[T]` for a time-varying threshold
    (SPOT), drawn as a step line. `predictions`: name -> bool `[T]`; each threshold's predicted points
    are marked in a strip under the score panel, one row per threshold.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = np.asarray(test_scores, dtype=np.float64).reshape(-1)
    y = np.asarray(test_labels).reshape(-1) > 0
    n = s.shape[0]
    xs, ys = _max_pool(s, max_points)
    _, ys_min = _max_pool(-s, max_points)  # per-bucket minimum, for the band
    preds = predictions or {}
    fig, axes = plt.subplots(2, 1, figsize=(14, 5), sharex=True,
                             gridspec_kw={"height_ratios": [4, max(1, len(preds)) * 0.35 + 0.3]})
    ax, strip = axes
    starts, ends = segments(y)
    for a, b in zip(starts, ends):
        ax.axvspan(a, b, color="tab:red", alpha=0.3, lw=0, zorder=3)
    if n > max_points:
        ax.fill_between(xs, -ys_min, ys, step="post", color="tab:blue", alpha=0.2, lw=0,
                        label="score min..max per bucket")
        ax.step(xs, ys, where="post", color="tab:blue", lw=0.6, label="score max per bucket")
    else:
        ax.plot(xs, ys, color="tab:blue", lw=0.7, label="score")
    for name, value in thresholds.items():
        color = COLORS.get(name, None)
        v = np.asarray(value, dtype=np.float64)
        if v.ndim == 0:
            ax.axhline(float(v), color=color, lw=1, ls="--", label=f"{name} {float(v):.4g}")
        else:
            bx, bv = _max_pool(v.reshape(-1), max_points)
            ax.step(bx, bv, where="post", color=color, lw=1, ls="--", label=f"{name} (dynamic)")
    lo, hi = np.percentile(s, 0.5), s.max()
    if hi > lo:
        ax.set_ylim(min(lo, s.min()) - 0.02 * (hi - lo), hi + 0.05 * (hi - lo))
    ax.set_ylabel("anomaly score")
    ax.legend(loc="upper left", fontsize=7, ncol=3)
    if title:
        ax.set_title(title)
    for row, (name, pred) in enumerate(preds.items()):
        px, pv = _max_pool(np.asarray(pred).reshape(-1).astype(np.int8), max_points)
        hit = px[pv > 0]
        strip.scatter(hit, np.full(hit.shape, row), s=2, marker="|", color=COLORS.get(name, "black"))
    strip.set_yticks(range(len(preds)))
    strip.set_yticklabels(list(preds), fontsize=7)
    strip.set_ylim(-0.7, max(0, len(preds) - 1) + 0.7)
    strip.set_xlabel("test time step (true anomalies shaded)")
    strip.set_xlim(0, n)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)

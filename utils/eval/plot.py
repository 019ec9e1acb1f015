"""scores.png: test scores over time, each threshold, true anomaly segments shaded, predictions marked.

The y-range is robust (`y_range`): a few dominating spikes are clipped at the top edge and marked there,
so the thresholds stay visible. The prediction strips shade the true segments too and mark hits and
false alarms in different colours (`strip_marks`).

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


def y_range(scores: np.ndarray, thresholds: dict[str, float | np.ndarray], spread: float = 2.0
            ) -> tuple[float, float, bool]:
    """`(low, high, clipped)`: the score panel's y-range, robust to a few dominating spikes.

    The range must show every threshold and the bulk of the scores (up to their 99.9th percentile):
    call that top `keep`. When the largest score lies within `spread` x (keep - low) of the low end,
    everything is drawn (`clipped` False); otherwise the panel stops 30 % above `keep` and the points
    above it are drawn as markers on the top edge (`clipped` True), so a handful of spikes cannot
    squash the thresholds and the rest of the series into the bottom pixels.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return 0.0, 1.0, False
    levels = [np.asarray(v, dtype=np.float64).reshape(-1) for v in thresholds.values()]
    levels = np.concatenate([v[np.isfinite(v)] for v in levels]) if levels else np.empty(0)
    low = float(min(s.min(), levels.min())) if levels.size else float(s.min())
    keep = float(max(np.percentile(s, 99.9), levels.max())) if levels.size else float(np.percentile(s, 99.9))
    top = float(s.max())
    if keep <= low:  # constant scores
        return low - 0.5, low + 0.5, False
    if top - low <= spread * (keep - low):
        top = max(top, keep)
        span = top - low
        return low - 0.02 * span, top + 0.05 * span, False
    return low - 0.02 * (keep - low), low + 1.3 * (keep - low), True


def strip_marks(prediction: np.ndarray, labels: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Bucket starts with a predicted point inside a true segment (hits) and outside one (false alarms).

    Both max-pooled over the same buckets as the score line, so a bucket can be both when it holds both.
    """
    pred = np.asarray(prediction).reshape(-1).astype(bool)
    true = np.asarray(labels).reshape(-1) > 0
    hx, hv = _max_pool((pred & true).astype(np.int8), max_points)
    fx, fv = _max_pool((pred & ~true).astype(np.int8), max_points)
    return hx[hv > 0], fx[fv > 0]


def plot_scores(path: str, test_scores: np.ndarray, test_labels: np.ndarray, thresholds: dict[str, float],
                predictions: dict[str, np.ndarray] | None = None, title: str = "", max_points: int = 4000) -> dict:
    """Write a PNG of `test_scores` `[T]` with true segments of `test_labels` `[T]` shaded.

    `thresholds`: name -> value (a horizontal line), or name -> array `[T]` for a time-varying threshold
    (SPOT), drawn as a step line. `predictions`: name -> bool `[T]`; each threshold's predicted points
    are marked in a strip under the score panel, one row per threshold, hits (inside a true segment,
    shaded there too) and false alarms in different colours. The y-range is `y_range`'s (points above
    it are marked on the top edge); legends sit right of the panels, off the data.
    Returns `{"ylim": (low, high), "clipped": number of points above the range}`.
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
    low, high, clipped = y_range(s, thresholds)
    fig, axes = plt.subplots(2, 1, figsize=(15, 5), sharex=True,
                             gridspec_kw={"height_ratios": [4, max(1, len(preds)) * 0.35 + 0.3]})
    ax, strip = axes
    starts, ends = segments(y)
    for a, b in zip(starts, ends):
        ax.axvspan(a, b, color="tab:red", alpha=0.3, lw=0, zorder=3)
        strip.axvspan(a, b, color="tab:red", alpha=0.15, lw=0)
    if n > max_points:
        ax.fill_between(xs, -ys_min, np.minimum(ys, high), step="post", color="tab:blue", alpha=0.2, lw=0,
                        label="score min..max per bucket")
        ax.step(xs, np.minimum(ys, high), where="post", color="tab:blue", lw=0.6, label="score max per bucket")
    else:
        ax.plot(xs, np.minimum(ys, high), color="tab:blue", lw=0.7, label="score")
    n_clipped = int((s > high).sum())
    if n_clipped:
        over = ys > high
        ax.scatter(xs[over], np.full(int(over.sum()), high), marker="^", s=14, color="tab:purple", zorder=5,
                   clip_on=False, label=f"{n_clipped} points above the range (max {s.max():.4g})")
    for name, value in thresholds.items():
        color = COLORS.get(name, None)
        v = np.asarray(value, dtype=np.float64)
        if v.ndim == 0:
            ax.axhline(float(v), color=color, lw=1, ls="--", label=f"{name} {float(v):.4g}")
        else:
            bx, bv = _max_pool(v.reshape(-1), max_points)
            ax.step(bx, bv, where="post", color=color, lw=1, ls="--", label=f"{name} (dynamic)")
    ax.set_ylim(low, high)
    ax.set_ylabel("anomaly score" + (" (range clipped)" if clipped else ""))
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), borderaxespad=0, fontsize=7)
    if title:
        ax.set_title(title)
    for row, (name, pred) in enumerate(preds.items()):
        hits, false = strip_marks(pred, y, max_points)
        strip.scatter(hits, np.full(hits.shape, row), s=30, marker="|", color="tab:green",
                      label="hit (inside a true segment)" if row == 0 else None)
        strip.scatter(false, np.full(false.shape, row), s=30, marker="|", color="black",
                      label="false alarm" if row == 0 else None)
    strip.set_yticks(range(len(preds)))
    strip.set_yticklabels(list(preds), fontsize=7)
    strip.set_ylim(-0.7, max(0, len(preds) - 1) + 0.7)
    if preds:
        strip.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), borderaxespad=0, fontsize=7)
    strip.set_xlabel("test time step (true anomalies shaded)")
    strip.set_xlim(0, n)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png", bbox_inches="tight"))
    plt.close(fig)
    return {"ylim": (low, high), "clipped": n_clipped}

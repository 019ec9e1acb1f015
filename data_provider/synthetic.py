"""A seeded synthetic multivariate benchmark with the five anomaly types of the TODS taxonomy.

Lai, Zha, Xu, Zhao, Wang & Hu, "Revisiting Time Series Outlier Detection:
Definitions and Benchmarks", NeurIPS 2021 Datasets and Benchmarks. Their
taxonomy distinguishes point anomalies (global, contextual) from pattern
anomalies (shapelet, seasonal, trend). Each channel here is a sum of two
sinusoids with channel-specific periods and phases, a shared slow component
(so channels are correlated) and Gaussian noise. The training split is clean;
the test split carries anomalies of all five types, each injected on a random
subset of channels:

- global point: isolated points far outside the channel's range;
- contextual point: points inside the global range but far from their neighbours;
- shapelet: a segment whose waveform is replaced (a square wave of the same period);
- seasonal: a segment whose frequency changes (the period is halved);
- trend: a segment with an added linear ramp.
"""
from __future__ import annotations

import numpy as np

ANOMALY_TYPES = ("global", "contextual", "shapelet", "seasonal", "trend")


def _clean_series(rng: np.random.Generator, length: int, channels: int, offset: int,
                  periods: np.ndarray, phases: np.ndarray, mix: np.ndarray) -> np.ndarray:
    t = np.arange(offset, offset + length, dtype=np.float64)[:, None]              # [T, 1]
    base = np.sin(2 * np.pi * t / periods[None, :] + phases) \
        + 0.5 * np.sin(2 * np.pi * t / (periods[None, :] / 3) + 2 * phases)         # [T, C]
    shared = np.sin(2 * np.pi * t / 500.0) * mix[None, :]                            # slow common factor
    return base + shared + 0.1 * rng.standard_normal((length, channels))


def generate_synthetic(length: int = 6000, channels: int = 8, anomaly_rate: float = 0.02,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
    """Return `(train [length, C], test [length, C], labels [length], events)` as float32/int64.

    `anomaly_rate` is the target fraction of test points inside anomalies
    (0 < rate <= 0.5); the types are drawn in turn so each of the five appears.
    `events` lists the injected anomalies (`type`, `start`, `end` exclusive,
    `channels`) for inspection and tests. The same seed gives the same data.
    """
    if not 0 < anomaly_rate <= 0.5:
        raise ValueError(f"--synthetic_anomaly_rate must be in (0, 0.5], got {anomaly_rate}")
    if length < 500 or channels < 1:
        raise ValueError(f"--synthetic_length must be >= 500 and --synthetic_channels >= 1, got {length}, {channels}")
    rng = np.random.default_rng(seed)
    periods = rng.uniform(20, 80, channels)
    phases = rng.uniform(0, 2 * np.pi, channels)
    mix = rng.uniform(-1, 1, channels)
    train = _clean_series(rng, length, channels, 0, periods, phases, mix)
    test = _clean_series(rng, length, channels, length, periods, phases, mix)
    scale = train.std(axis=0)

    labels = np.zeros(length, dtype=np.int64)
    events: list[dict] = []
    budget = int(anomaly_rate * length)
    margin = 100
    kind = 0
    for _attempt in range(100 * len(ANOMALY_TYPES) + budget):  # bounded: a crowded series stops early
        if labels.sum() >= budget:
            break
        atype = ANOMALY_TYPES[kind % len(ANOMALY_TYPES)]
        seg = 1 if atype in ("global", "contextual") else min(int(rng.integers(10, 30)), budget - int(labels.sum()))
        start = int(rng.integers(margin, length - margin - seg))
        if labels[max(0, start - 20):start + seg + 20].any():  # keep events apart
            continue
        kind += 1
        chans = rng.choice(channels, size=max(1, channels // 3), replace=False)
        end = start + seg
        t = np.arange(start, end, dtype=np.float64) + length
        for c in chans:
            if atype == "global":
                test[start, c] += rng.choice([-1, 1]) * 6 * scale[c]
            elif atype == "contextual":
                # stays inside [min, max] of the channel but opposes its local level
                test[start, c] = -np.sign(test[start, c]) * 0.9 * np.abs(train[:, c]).max()
            elif atype == "shapelet":
                test[start:end, c] = np.sign(np.sin(2 * np.pi * t / periods[c] + phases[c])) * scale[c] * 1.2
            elif atype == "seasonal":
                test[start:end, c] += np.sin(2 * np.pi * t / (periods[c] / 2) + phases[c]) * scale[c]
            else:  # trend
                test[start:end, c] += np.linspace(0, 3 * scale[c], seg)
        labels[start:end] = 1
        events.append({"type": atype, "start": start, "end": end, "channels": sorted(int(c) for c in chans)})
    return train.astype(np.float32), test.astype(np.float32), labels, events

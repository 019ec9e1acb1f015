"""Fixed evaluation inputs shared by the reference cross-checks and the script that recorded the
published code's outputs on them (`make_published_fixtures.py`).

Every case is rebuilt from a seed, and `digest` fingerprints the exact arrays, so a stored reference
output is only compared with our value on the very same inputs.
"""
from __future__ import annotations

import hashlib
import os

import numpy as np


def _segments(n: int, rng: np.random.Generator, count: int, lo: int, hi: int) -> np.ndarray:
    y = np.zeros(n, dtype=np.int64)
    for _ in range(count):
        start = int(rng.integers(0, n - lo))
        y[start:start + int(rng.integers(lo, hi))] = 1
    return y


def synthetic_cases() -> dict[str, dict]:
    """name -> {"train", "test", "labels", "anomaly_ratio"}: the four kinds of input the issue names,
    plus the published point adjustment's one quirk (a segment at index 0 first hit later)."""
    cases = {}
    rng = np.random.default_rng(10)
    y = _segments(6000, rng, 12, 100, 600)  # long segments, about 10-20 % anomalous, like MSL/SMAP
    cases["random_long_segments"] = {"train": rng.random(4000), "test": rng.random(6000), "labels": y,
                                     "anomaly_ratio": 0.85}
    rng = np.random.default_rng(11)
    y = _segments(5000, rng, 15, 5, 80)
    test = rng.normal(size=5000) + 2.0 * y * (rng.random(5000) < 0.7)  # hits most anomalous points
    cases["good_detector"] = {"train": rng.normal(size=3000), "test": test, "labels": y, "anomaly_ratio": 2.0}
    rng = np.random.default_rng(12)
    y = _segments(3000, rng, 8, 3, 60)
    y[:40] = 1  # a segment at the start and one at the very end
    y[-7:] = 1
    test = np.round(rng.random(3000) + 0.3 * y, 1)  # heavy ties
    test[1000:1600] = 0.5  # and a constant region
    test[0] = 0.0  # the first segment is hit, but not at index 0 (the published adjustment's quirk)
    cases["ties_constant"] = {"train": np.round(rng.random(2000), 1), "test": test, "labels": y,
                              "anomaly_ratio": 5.0}
    y = np.array([1, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 1])
    test = np.array([.1, .9, .2, .1, .8, .1, .3, .2, .1, .1, .7, .1, .95, .1, .2, .1, .1, .1, .6, .1])
    cases["tiny_hand"] = {"train": np.array([.1, .2, .3, .2, .1, .4, .2, .1, .3, .2]), "test": test,
                          "labels": y, "anomaly_ratio": 20.0}
    return cases


RANDOM_CASES = {"MSL": 0.85, "SMAP": 0.8}  # dataset -> the anomaly_ratio of the paper's script


def random_case(root: str, data: str, seed: int) -> dict | None:
    """Uniform random scores on a dataset's test labels (MSL or SMAP), drawn exactly as `utils.eval
    --random uniform --seed N --train_scores <data>_train.npy` draws them (test first, then train), at the
    paper script's anomaly ratio; None if the files are absent."""
    labels_path = os.path.join(root, data, f"{data}_test_label.npy")
    train_path = os.path.join(root, data, f"{data}_train.npy")
    if not (os.path.exists(labels_path) and os.path.exists(train_path)):
        return None
    labels = np.load(labels_path).astype(np.int64)
    n_train = np.load(train_path, mmap_mode="r").shape[0]
    rng = np.random.default_rng(seed)
    test = rng.random(labels.size)
    return {"train": rng.random(n_train), "test": test, "labels": labels, "anomaly_ratio": RANDOM_CASES[data]}


def digest(case: dict) -> str:
    """sha256 of the case's arrays (float64 / int64 bytes) and ratio: the identity of an input."""
    h = hashlib.sha256()
    for key in ("train", "test", "labels"):
        h.update(np.ascontiguousarray(case[key], dtype=np.int64 if key == "labels" else np.float64).tobytes())
    h.update(repr(float(case["anomaly_ratio"])).encode())
    return h.hexdigest()


def paper_predictions(case: dict) -> np.ndarray:
    """The published solver's predictions: test > percentile(100 - ratio) of train + test scores."""
    thr = np.percentile(np.concatenate([case["train"], case["test"]]), 100 - case["anomaly_ratio"])
    return (case["test"] > thr).astype(np.int64)

"""Classical outlier detectors of the PyOD library on lag features (`--model PyOD --detector NAME`).

PyOD: Zhao, Nasrullah & Li, "PyOD: A Python Toolbox for Scalable Outlier Detection", JMLR 20(96), 2019;
PyOD 2 (Chen et al., 2024) made the deep detectors (AutoEncoder, DeepSVDD, ...) torch-based. The
detectors themselves are pyod's, unchanged; this module only turns a time series into feature rows,
fits one detector on the training split and scores every point (README, Rivals).

Features. The row of point t of a split `x` [N, C] is its last `w` points, flattened time-major:

    f(t) = [x[t-w+1, :], ..., x[t, :]]            (w * C values)

The first `w - 1` points of a split have too short a history: the split's first row is repeated
before it (edge padding), so every point gets a score and the padding adds no artificial jump.
Splits are scored separately (the loop calls `score_series` on train, validation and test), so the
first test points do not see the end of the training split. Default `w` (`--pyod_window` unset):
`max(1, seq_len // C)`, a budget of about `seq_len` values per row: for a univariate series the row
is the dataset's window (TSB-AD's sub-sequence detectors use a period-long window, 100 by default),
for SMD (C = 38, seq_len 100) it is the last 2 points. The budget keeps the quadratic detectors
(KNN, LOF, OCSVM) and the AutoEncoder's input width tractable on wide data.

Fit. On the standardised training split (validation excluded). When it has more rows than
`--pyod_max_train` (default 10,000), a uniform subsample of that many rows without replacement,
drawn with `numpy.random.default_rng(args.seed)`, is used; the cap bounds the fit of the detectors
whose cost grows with the square of the rows (OCSVM, LOF, KNN's neighbour queries at scoring time).
Feature columns that are constant over the fitted rows (zero-variance channels, as SMD has) are
dropped before the fit and ignored at scoring, so no detector divides by a zero variance; when every
column is constant there is nothing to learn and `fit` raises ValueError. Detectors that take a
`random_state` get `args.seed`.

Score. `decision_function` of the fitted detector (pyod's convention: higher = more anomalous), one
per point, computed in chunks of rows to bound memory. A non-finite score (none was seen with the
supported detectors) is replaced by the largest finite one (NaN, +inf) or the smallest (-inf), with
a warning that counts them.

No gradient training (`needs_training = False`); the module has no parameters (the checkpoint holds
an empty state_dict), and a test-only run refits with the same seed, so the same detector.
"""
from __future__ import annotations

import importlib
import inspect
import warnings
from argparse import Namespace

import numpy as np
import torch
from torch import nn

# --detector name -> (pyod module, class). Every entry is exercised by tests/models/test_pyod.py.
DETECTORS: dict[str, tuple[str, str]] = {
    "IForest": ("pyod.models.iforest", "IForest"),      # Liu, Ting & Zhou, ICDM 2008
    "KNN": ("pyod.models.knn", "KNN"),                  # Ramaswamy, Rastogi & Shim, SIGMOD 2000
    "LOF": ("pyod.models.lof", "LOF"),                  # Breunig et al., SIGMOD 2000
    "PCA": ("pyod.models.pca", "PCA"),                  # Shyu et al., 2003
    "ECOD": ("pyod.models.ecod", "ECOD"),               # Li et al., TKDE 2022
    "COPOD": ("pyod.models.copod", "COPOD"),            # Li et al., ICDM 2020
    "HBOS": ("pyod.models.hbos", "HBOS"),               # Goldstein & Dengel, KI 2012
    "OCSVM": ("pyod.models.ocsvm", "OCSVM"),            # Schölkopf et al., Neural Computation 2001
    "AutoEncoder": ("pyod.models.auto_encoder", "AutoEncoder"),  # torch MLP autoencoder (PyOD 2)
    "LODA": ("pyod.models.loda", "LODA"),               # Pevný, Machine Learning 2016
}

DEFAULT_MAX_TRAIN = 10_000
CONSTANT_STD = 1e-6     # a feature column with a smaller std over the fitted rows is dropped
SCORE_CHUNK = 8192      # rows per decision_function call
RANK_RTOL = 1e-6        # PCA keeps the components whose singular value exceeds this x the largest


def default_window(seq_len: int, channels: int) -> int:
    """`--pyod_window` when unset: `max(1, seq_len // channels)` (about `seq_len` values per row)."""
    return max(1, int(seq_len) // max(1, int(channels)))


def resolve_detector(name: str) -> type:
    """The pyod class registered under `name` (case-insensitive).

    Raises ValueError listing the supported names for an unknown one, and ImportError with the install
    command when pyod is missing.
    """
    key = next((k for k in DETECTORS if k.lower() == str(name).lower()), None)
    if key is None:
        raise ValueError(f"unknown --detector {name!r} for --model PyOD; supported: {', '.join(DETECTORS)}")
    module, cls = DETECTORS[key]
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError as err:
        raise ImportError(f"--model PyOD needs the pyod package: pip install 'pyod>=3.0' ({err})") from err


def lag_features(series: np.ndarray, window: int, rows: np.ndarray | None = None) -> np.ndarray:
    """Lag-feature rows of `series` [N, C]: row t is `series[t-window+1 .. t]` flattened time-major.

    The first `window - 1` points are edge-padded (the first row repeated before the split).
    `rows` selects which points' rows to build (default all, in order). Returns float64 [len(rows), window * C].
    """
    x = np.asarray(series, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"lag_features expects a non-empty [N, C] array, got shape {x.shape}")
    if window < 1:
        raise ValueError(f"--pyod_window must be >= 1, got {window}")
    padded = np.concatenate([np.repeat(x[:1], window - 1, axis=0), x], axis=0)    # [N + w - 1, C]
    rows = np.arange(len(x)) if rows is None else np.asarray(rows, dtype=np.int64)
    idx = rows[:, None] + np.arange(window)[None, :]                                # [R, w] into padded
    return padded[idx].reshape(len(rows), window * x.shape[1])


def numerical_rank(features: np.ndarray, rtol: float = RANK_RTOL) -> int:
    """Rank of the standardised `features` [N, F]: singular values above `rtol` x the largest (>= 1)."""
    z = (features - features.mean(axis=0)) / features.std(axis=0)
    sv = np.linalg.svd(z, compute_uv=False)
    return max(1, int((sv > rtol * sv[0]).sum()))


def _finite(scores: np.ndarray) -> np.ndarray:
    """Replace NaN/+inf by the largest finite score and -inf by the smallest (0 if none is finite), warning."""
    bad = ~np.isfinite(scores)
    if not bad.any():
        return scores
    finite = scores[~bad]
    hi, lo = (finite.max(), finite.min()) if len(finite) else (0.0, 0.0)
    warnings.warn(f"PyOD: {int(bad.sum())} non-finite score(s) replaced by the extreme finite score", stacklevel=3)
    return np.where(np.isneginf(scores), lo, np.where(bad, hi, scores))


class Model(nn.Module):
    """One pyod detector on lag features; see the module docstring for features, fit and score."""

    needs_training = False

    def __init__(self, args: Namespace):
        super().__init__()
        self.detector_name = next((k for k in DETECTORS if k.lower() == str(args.detector).lower()), args.detector)
        self.detector_cls = resolve_detector(args.detector)
        self.channels = int(args.enc_in)
        self.window = (int(args.pyod_window) if getattr(args, "pyod_window", None) is not None
                       else default_window(args.seq_len, self.channels))
        if self.window < 1:
            raise ValueError(f"--pyod_window must be >= 1, got {self.window}")
        cap = getattr(args, "pyod_max_train", None)
        self.max_train = DEFAULT_MAX_TRAIN if cap is None else int(cap)
        if self.max_train < 1:
            raise ValueError(f"--pyod_max_train must be >= 1, got {self.max_train}")
        self.seed = int(getattr(args, "seed", 0))
        use_gpu = bool(getattr(args, "use_gpu", 0)) and torch.cuda.is_available()
        self.params = self._detector_params(use_gpu)
        self.detector = None
        self.keep: np.ndarray | None = None   # indices of the feature columns the detector sees
        self.fit_rows = 0

    def _detector_params(self, use_gpu: bool) -> dict:
        """The constructor arguments we set (everything else is pyod's default)."""
        accepted = inspect.signature(self.detector_cls.__init__).parameters
        params: dict = {}
        if "random_state" in accepted:
            params["random_state"] = self.seed
        if "verbose" in accepted:
            params["verbose"] = 0
        if "device" in accepted:  # the torch-based detectors follow the run's device
            params["device"] = "cuda" if use_gpu else "cpu"
        return params

    @staticmethod
    def setting_tags(args: Namespace) -> list[str]:
        """Detector, lag window and training cap, so runs that differ in them never share a folder."""
        window = args.pyod_window
        if window is None:
            window = default_window(args.seq_len, args.enc_in) if getattr(args, "enc_in", None) else "auto"
        cap = DEFAULT_MAX_TRAIN if args.pyod_max_train is None else args.pyod_max_train
        name = next((k for k in DETECTORS if k.lower() == str(args.detector).lower()), args.detector)
        return [f"det{name}", f"pw{window}", f"pm{cap}"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("PyOD detectors score whole splits through score_series, not windows")

    def fit(self, train: np.ndarray) -> None:
        """Fit the detector on `train` [N, C] (standardised): seeded subsample of at most `max_train`
        rows, constant feature columns dropped. Raises ValueError when every feature column is constant."""
        train = np.asarray(train)
        if train.ndim != 2 or train.shape[1] != self.channels:
            raise ValueError(f"PyOD: expected training data [N, {self.channels}], got shape {train.shape}")
        rows = np.arange(len(train))
        if len(rows) > self.max_train:
            rows = np.sort(np.random.default_rng(self.seed).choice(len(train), self.max_train, replace=False))
        features = lag_features(train, self.window, rows)
        keep = np.flatnonzero(features.std(axis=0) > CONSTANT_STD)
        if len(keep) == 0:
            raise ValueError("PyOD: every channel is constant in the training split; nothing to fit")
        self.keep, self.fit_rows = keep, len(rows)
        params = dict(self.params)
        if self.detector_name == "PCA" and "n_components" not in params:
            # pyod's PCA divides by each component's explained variance: collinear lag features (SMAP's
            # one-hot command channels) give zero-variance components and every score inf, so keep the
            # components of the numerical rank only
            params["n_components"] = numerical_rank(features[:, keep])
        self.detector = self.detector_cls(**params)
        self.detector.fit(features[:, keep])

    def score_series(self, series: np.ndarray) -> np.ndarray:
        """One anomaly score per point of `series` [N, C]: `decision_function` of its lag-feature row
        (higher = more anomalous), float64 [N], always finite."""
        if self.detector is None:
            raise RuntimeError("PyOD: call fit(train) before score_series")
        series = np.asarray(series)
        out = np.empty(len(series), dtype=np.float64)
        for start in range(0, len(series), SCORE_CHUNK):
            rows = np.arange(start, min(start + SCORE_CHUNK, len(series)))
            feats = lag_features(series, self.window, rows)[:, self.keep]
            out[rows] = np.asarray(self.detector.decision_function(feats), dtype=np.float64).reshape(-1)
        return _finite(out)

    def describe(self) -> dict:
        """Provenance for metrics.json: the detector, the arguments we set, features and training cap."""
        import pyod
        return {"architecture": f"pyod {self.detector_name} on lag features (no gradient training)",
                "library": f"pyod {pyod.__version__}",
                "detector": self.detector_name,
                "detector_class": f"{self.detector_cls.__module__}.{self.detector_cls.__name__}",
                "detector_params": dict(self.params),
                "features": f"last {self.window} points x {self.channels} channels, flattened time-major; "
                            f"first {self.window - 1} points of each split edge-padded; constant columns dropped",
                "pyod_window": self.window,
                "pyod_max_train": self.max_train,
                "score": "decision_function (higher = more anomalous)"}

"""Anomaly detection by reconstruction: train on normal windows, score test points by their error.

Score of a point = mean over channels of the squared reconstruction error,
averaged over the windows that own the point (README, The model). The report
(README, Evaluation) is computed by `utils.eval.report` from test scores and
labels plus training and validation scores for the leak-free thresholds.
"""
from __future__ import annotations

import os
import time
from typing import Callable, Iterator

import numpy as np
import torch

from data_provider.anomaly import PointScoreAccumulator, WindowDataset, load_anomaly_data, window_starts
from exp.exp_basic import ExpBasic, model_output
from utils import distributed
from utils.eval.plot import plot_scores
from utils.eval.render import render_markdown, render_table
from utils.eval.report import evaluate_scores, predictions, summary_row
from utils.io import save_npy


def anomaly_loss(model: torch.nn.Module, x: torch.Tensor, autocast) -> tuple[torch.Tensor, torch.Tensor]:
    """Training objective on windows `x` `[B, L, C]`: `(total loss, task loss for validation)`.

    A model with its own objective defines `loss(x) -> (total, task)`; otherwise the total is the MSE of
    its reconstruction plus its auxiliary loss, and the task loss is that MSE.
    """
    if hasattr(model, "loss"):
        with autocast:
            total, task = model.loss(x)
        return total.float(), task.float()
    x_hat, aux = model_output(model, x, autocast)
    mse = torch.mean((x_hat - x) ** 2)
    return mse + aux, mse


def window_scores(model: torch.nn.Module, x: torch.Tensor, autocast) -> torch.Tensor:
    """Per-point anomaly scores `[B, L]` of windows `x` `[B, L, C]`: the model's `score(x)` if it has one,
    else the mean over channels of its squared reconstruction error."""
    if hasattr(model, "score"):
        with autocast:
            return model.score(x).float()
    x_hat, _ = model_output(model, x, autocast)
    return torch.mean((x_hat - x) ** 2, dim=-1)


def score_windows(model: torch.nn.Module, series: np.ndarray, starts: np.ndarray, seq_len: int, batch_size: int,
                  autocast: Callable[[], object], device: torch.device) -> Iterator[tuple[int, np.ndarray]]:
    """`(first, scores [b, seq_len])` for the windows of `series` `[N, C]` at `starts`, `batch_size` at a time.

    Inference mode (autograd records nothing) under `autocast()` (the run's bf16 setting); the windows
    are gathered by one index op. On an accelerator's out-of-memory error the batch is halved and
    retried, so the automatic size only needs to be an upper bound.
    """
    model.eval()
    in_memory = isinstance(series, np.ndarray)  # else a MappedSeries: read window by window, never in full
    values = torch.from_numpy(np.ascontiguousarray(series, dtype=np.float32)) if in_memory else None  # [N, C]
    offsets = torch.arange(seq_len)
    first = 0
    while first < len(starts):
        size = min(batch_size, len(starts) - first)
        batch_starts = np.asarray(starts[first:first + size], dtype=np.int64)
        if in_memory:
            windows = values[torch.from_numpy(batch_starts)[:, None] + offsets]  # [b, L, C]
        else:
            windows = torch.from_numpy(np.stack([series[s:s + seq_len] for s in batch_starts]))
        try:
            with torch.inference_mode():
                err = window_scores(model, windows.to(device), autocast())  # [b, L]
        except torch.OutOfMemoryError:
            if size == 1:
                raise
            batch_size = size // 2
            torch.cuda.empty_cache()
            continue
        yield first, err.float().cpu().numpy()
        first += size


# automatic scoring batch (windows) per device type. CPU: 8x the usual training batch (MiniLM, 2 blocks,
# SMAP's shape: 1.06-1.17x the points/s of 32-window batches without inference mode, 1 thread, load 8-9);
# larger ones would mostly cost memory. CUDA starts large and halves on every out-of-memory error.
AUTO_SCORE_BATCH = {"cpu": 256, "cuda": 2048}


class ExpAnomalyDetection(ExpBasic):
    task_name = "anomaly_detection"

    def _load_data(self) -> None:
        args = self.args
        self.data = load_anomaly_data(args)
        args.enc_in = args.c_out = self.data.channels
        L = args.seq_len
        train_starts, _ = window_starts(len(self.data.train), L, args.step)
        val_starts, _ = window_starts(len(self.data.val), L, args.step)
        keep = self.smoke_validation(len(val_starts))
        if keep is not None:
            val_starts = val_starts[keep]
        self.train_loader = self._loader(WindowDataset(self.data.train, L, train_starts), shuffle=True)
        self.val_loader = self._loader(WindowDataset(self.data.val, L, val_starts), shuffle=False)
        info = self.data.info
        print(f"data {info['dataset']}{'/' + info['entity'] if info['entity'] else ''}: C={info['channels']} "
              f"train {info['n_train']} val {info['n_val']} test {info['n_test']} points, "
              f"{len(train_starts)} training windows (L={L}, step={args.step}), "
              f"test anomalies {100 * info['test_anomaly_fraction']:.2f} %")

    def _setting_data_part(self) -> str:
        a = self.args
        return f"sl{a.seq_len}_st{a.step}_ar{a.anomaly_ratio:g}"

    def _loss(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return anomaly_loss(self.model, self.to_device(batch), self._autocast())  # batch [B, L, C]

    def fit_data(self) -> np.ndarray:
        return np.asarray(self.data.train)  # [N, C], standardised (a memory-mapped split is loaded here)

    def score_batch_size(self) -> int:
        """Windows per scoring batch: `--score_batch_size`, or automatic (0): `AUTO_SCORE_BATCH` of the device
        (`score_windows` halves it when an accelerator runs out of memory)."""
        return int(self.args.score_batch_size) or AUTO_SCORE_BATCH.get(self.device.type, AUTO_SCORE_BATCH["cpu"])

    def _windows(self, series: np.ndarray, starts: np.ndarray, split: str):
        """`(index of the first window, scores [b, L])` over `starts`; under torchrun only this process's
        contiguous shard of them (`point_scores` all-reduces the per-point sums)."""
        lo, hi = distributed.shard_bounds(len(starts), distributed.world_size(), distributed.rank())
        bar = self._progress(None, f"scoring {split}", total=hi - lo)
        for first, err in score_windows(self.model, series, starts[lo:hi], self.args.seq_len,
                                        self.score_batch_size(), self._autocast, self.device):
            yield lo + first, err
            bar.update(len(err))
        bar.close()

    def point_scores(self, series: np.ndarray, step: int, split: str = "test") -> np.ndarray:
        """One anomaly score per point of `series` [N, C] (windows every `step`, tail covered).

        A model with a `score_series(series) -> [N]` hook scores the whole split itself (classical
        detectors on lag features need each point's history, which a window would cut).

        Under torchrun each process scores its contiguous share of the windows and the per-point
        sums and counts are all-reduced: every rank returns the whole split's scores in time order."""
        self.model.eval()
        if hasattr(self.model, "score_series"):
            with torch.no_grad():
                return np.asarray(self.model.score_series(np.asarray(series)), dtype=np.float64).reshape(-1)
        L = self.args.seq_len
        starts, tail_covered = window_starts(len(series), L, step)
        acc = PointScoreAccumulator(len(series), L, starts, tail_covered)
        for first, err in self._windows(series, starts, split):
            acc.add(first, err)
        if distributed.world_size() > 1:
            acc.sum = distributed.all_reduce_sum(acc.sum, self.device)
            acc.count = distributed.all_reduce_sum(acc.count, self.device)
        return acc.result()

    def calibration_scores(self, series: np.ndarray, split: str) -> np.ndarray:
        """Scores of a training-side split for the thresholds: every point, or with `--threshold_sample N`
        the points of ceil(N / L) non-overlapping windows drawn without replacement (seeded by `--seed`),
        in time order. The thresholds only need the scores' distribution; the test split is always scored
        in full. A model with a `score_series` hook always scores the whole split (its scores need each
        point's history)."""
        n, L = self.args.threshold_sample, self.args.seq_len
        if not n or n >= len(series) or hasattr(self.model, "score_series"):
            return self.point_scores(series, L, split)
        starts = np.arange(0, len(series) - L + 1, L, dtype=np.int64)  # non-overlapping windows
        k = min(len(starts), -(-n // L))
        rng = np.random.default_rng(self.args.seed)
        chosen = np.sort(rng.choice(starts, size=k, replace=False))
        parts = [err.reshape(-1) for _, err in self._windows(series, chosen, f"{split} (sample)")]
        local = np.concatenate(parts) if parts else np.empty(0, np.float32)
        if distributed.world_size() > 1:  # the shards are contiguous, so rank order is time order
            local = np.concatenate(distributed.all_gather_objects(local))
        return local.astype(np.float64)

    def test(self, setting: str) -> dict:
        args = self.args
        started = time.time()
        if not args.is_training:
            self.load_checkpoint(setting)
        self.ensure_fitted()
        test_scores = self.point_scores(self.data.test, args.test_step, "test")  # always in full
        train_scores = self.calibration_scores(self.data.train, "train")
        val_scores = self.calibration_scores(self.data.val, "val")
        if not distributed.is_main():  # rank 0 evaluates and writes
            return {}
        labels = self.data.test_labels
        report = evaluate_scores(test_scores, labels, train_scores=train_scores, val_scores=val_scores,
                                 anomaly_ratio=args.anomaly_ratio, pot_risk=args.pot_risk,
                                 pot_level=args.pot_level, vus_window=args.vus_window)
        report["data"] = self.data.info
        folder = self.results_folder(setting)
        # the scores the report was computed from, at full precision, so `python -m utils.eval --run
        # <folder>` rebuilds every threshold and metric
        for name, values in (("scores", test_scores), ("train_scores", train_scores), ("val_scores", val_scores)):
            save_npy(os.path.join(folder, f"{name}.npy"), np.asarray(values, dtype=np.float64))
        save_npy(os.path.join(folder, "labels.npy"), labels.astype(np.int8))
        title = f"{args.model} on {self.data.info['dataset']}" + (f"/{args.entity}" if args.entity else "")
        if not args.no_plot:
            thresholds = {name: t["value"] for name, t in report["thresholds"].items()}
            plot_scores(os.path.join(folder, "scores.png"), test_scores, labels, thresholds,
                        predictions(report, test_scores), title=title)
        self.write_results(setting, report, summary_row(report), started,
                           render_markdown(report, title=f"{title} — {setting}"))
        print(render_table(report))
        print(f"results written to {folder}")
        return report

"""Long-term forecasting: lookback `seq_len` -> the next `pred_len` steps (README, Long-term forecasting).

The training loop, early stopping and checkpointing are `exp/exp_basic.py`'s.
Loss and metrics are on standardised data (the scaler fitted on the training
rows), as in the Time-Series-Library, so MSE/MAE compare with published
tables: MSE and MAE averaged over every test window, horizon step and
forecast channel, test windows starting at every row (stride 1).
"""
from __future__ import annotations

import os
import time

import numpy as np
import torch
from torch.utils.data import Subset

from data_provider.forecast import ForecastDataset, load_forecast_data
from exp.exp_basic import ExpBasic
from utils import distributed
from utils.io import save_npy

# pred.npy/true.npy are skipped above this size each (ECL/Traffic at long horizons reach gigabytes)
MAX_SAVED_ARRAY_BYTES = 256 * 2 ** 20


class ExpLongTermForecast(ExpBasic):
    task_name = "long_term_forecast"

    def _load_data(self) -> None:
        args = self.args
        self.data = load_forecast_data(args)
        args.enc_in = self.data.channels
        args.c_out = self.data.target_channels
        sizes = (args.seq_len, args.label_len, args.pred_len)
        self.datasets = {"train": ForecastDataset(self.data, "train", *sizes, step=args.step),
                         "val": ForecastDataset(self.data, "val", *sizes),
                         "test": ForecastDataset(self.data, "test", *sizes)}
        self.train_loader = self._loader(self.datasets["train"], shuffle=True)
        keep = self.smoke_validation(len(self.datasets["val"]))
        val = self.datasets["val"] if keep is None else Subset(self.datasets["val"], keep.tolist())
        self.val_loader = self._loader(val, shuffle=False)
        info = self.data.info
        print(f"data {info['dataset']} ({info['file']}): C_in={args.enc_in} C_out={args.c_out} "
              f"features {args.features}, windows train {len(self.datasets['train'])} "
              f"val {len(val)}{'' if keep is None else ' (--max_train_steps)'} test {len(self.datasets['test'])} "
              f"(seq_len {args.seq_len}, pred_len {args.pred_len})")

    def _setting_data_part(self) -> str:
        a = self.args
        return f"ft{a.features}_sl{a.seq_len}_ll{a.label_len}_pl{a.pred_len}" + (f"_st{a.step}" if a.step > 1 else "")

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forecast `[B, pred_len, C_out]` and the model's aux loss from a lookback `x` [B, seq_len, C_in].

        A model may output all C_in channels for `--features MS`; the target is
        the last column, so the last C_out channels are kept (TSLib's f_dim).
        """
        out, aux = self.forward(x)
        P, c_out = self.args.pred_len, self.args.c_out
        if out.dim() != 3 or out.shape[1] != P or out.shape[2] not in (c_out, x.shape[-1]):
            raise ValueError(f"{self.args.model} returned shape {tuple(out.shape)} for input {tuple(x.shape)}; "
                             f"forecasting needs [B, pred_len={P}, {c_out} or {x.shape[-1]} channels]; "
                             f"does this model support --task_name long_term_forecast?")
        return out[..., -c_out:], aux

    def _loss(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = (self.to_device(t) for t in batch)          # [B, seq_len, C_in], [B, label_len+pred_len, C_out]
        pred, aux = self.predict(x)
        mse = torch.mean((pred - y[:, -self.args.pred_len:]) ** 2)
        return mse + aux, mse

    @torch.no_grad()
    def evaluate(self, split: str = "test", keep_arrays: bool = True) -> dict:
        """MSE/MAE of the model on every window of `split`; returns metrics and (if small enough) the arrays.

        Under torchrun each process evaluates its contiguous share of the windows; sums (and the arrays,
        zero outside each share) are all-reduced, so every window counts once, in order."""
        self.model.eval()
        dataset = self.datasets[split]
        P, C = self.args.pred_len, self.args.c_out
        keep = keep_arrays and len(dataset) * P * C * 4 <= MAX_SAVED_ARRAY_BYTES
        preds = np.zeros((len(dataset), P, C), np.float32) if keep else None
        trues = np.zeros_like(preds) if keep else None
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)   # [squared error, absolute error, count]
        loader = self._loader(dataset, shuffle=False)
        first = loader.sampler.start
        for x, y in self._progress(loader, split):
            pred, _ = self.predict(self.to_device(x))
            true = self.to_device(y[:, -P:])
            err = (pred - true).double()
            sums[0] += (err ** 2).sum()
            sums[1] += err.abs().sum()
            sums[2] += err.numel()
            if keep:
                preds[first:first + len(x)] = pred.cpu().numpy()
                trues[first:first + len(x)] = true.cpu().numpy()
            first += len(x)
        sq, ab, count = distributed.all_reduce_sum(sums, self.device).tolist()
        if keep and distributed.world_size() > 1:
            preds = distributed.all_reduce_sum(preds, self.device)
            trues = distributed.all_reduce_sum(trues, self.device)
        mse, mae = sq / count, ab / count
        return {"mse": mse, "mae": mae, "rmse": float(np.sqrt(mse)), "windows": len(dataset),
                "preds": preds, "trues": trues}

    def test(self, setting: str) -> dict:
        args = self.args
        started = time.time()
        if not args.is_training and getattr(self.model, "needs_training", True):
            self.load_checkpoint(setting)
        result = self.evaluate("test")
        if not distributed.is_main():  # rank 0 writes
            return {}
        preds, trues = result.pop("preds"), result.pop("trues")
        folder = self.results_folder(setting)
        if preds is not None:
            save_npy(os.path.join(folder, "pred.npy"), preds)
            save_npy(os.path.join(folder, "true.npy"), trues)
        else:
            print(f"pred.npy/true.npy not written: {result['windows']} windows x {args.pred_len} x {args.c_out} "
                  f"exceed {MAX_SAVED_ARRAY_BYTES // 2 ** 20} MiB each")
        metrics = {**result, "arrays_saved": preds is not None, "standardised": True,
                   "seq_len": args.seq_len, "label_len": args.label_len, "pred_len": args.pred_len,
                   "features": args.features, "data": self.data.info}
        summary = {"mse": result["mse"], "mae": result["mae"], "seq_len": args.seq_len,
                   "pred_len": args.pred_len, "label_len": args.label_len, "features": args.features}
        self.write_results(setting, metrics, summary, started, self._report(setting, result))
        print(f"{self.data.info['dataset']} {args.model} features {args.features} seq_len {args.seq_len} "
              f"pred_len {args.pred_len}: mse {result['mse']:.4f}  mae {result['mae']:.4f}  "
              f"({result['windows']} test windows)")
        print(f"results written to {folder}")
        return metrics

    def _report(self, setting: str, result: dict) -> str:
        a, info = self.args, self.data.info
        lines = [f"# {a.model} on {info['dataset']}: forecast {a.pred_len} steps from {a.seq_len}", "",
                 f"setting `{setting}`", "",
                 "| data | features | seq_len | pred_len | test windows | MSE | MAE |",
                 "|---|---|---|---|---|---|---|",
                 f"| {info['dataset']} | {a.features} | {a.seq_len} | {a.pred_len} | {result['windows']} "
                 f"| {result['mse']:.4f} | {result['mae']:.4f} |", "",
                 f"MSE and MAE on standardised test data (scaler fitted on the {info['splits']['train']['end_row']} "
                 f"training rows of `{info['file']}`), averaged over windows, steps and channels.", ""]
        return "\n".join(lines)

"""Repeat-last-value forecaster: every future step equals the last observed value of its channel.

The naive baseline of long-term forecasting (the "random walk" forecast): a
learned model that cannot beat it has learned nothing useful about the
series. Nothing to fit (`needs_training = False`), so the shared training
loop skips straight to testing.
"""
from __future__ import annotations

from argparse import Namespace

import torch
from torch import nn


class Model(nn.Module):
    needs_training = False

    def __init__(self, args: Namespace):
        super().__init__()
        if args.task_name != "long_term_forecast":
            raise ValueError("--model RepeatLast is a forecasting baseline; use it with "
                             "--task_name long_term_forecast")
        self.pred_len = args.pred_len

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x [B, seq_len, C] -> [B, pred_len, C]
        return x[:, -1:, :].expand(-1, self.pred_len, -1)

    def describe(self) -> dict:
        return {"architecture": "repeat the last observed value of each channel"}

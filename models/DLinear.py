"""DLinear: a moving-average decomposition and one linear map per component, lookback -> horizon.

Zeng, Chen, Zhang & Xu, "Are Transformers Effective for Time Series
Forecasting?", AAAI 2023. Written here from the paper. Forecasting only.

    x [B, L, C] ─ trend    = moving average over time, kernel --moving_avg (ends padded
                             by repeating the first and last value, so the length stays L)  [B, L, C]
                  seasonal = x - trend                                                     [B, L, C]
      → per channel, over time: Linear L→P on the seasonal part + Linear L→P on the trend   [B, C, P]
      → sum, transposed                                                                    [B, P, C]

Both linear maps are shared by every channel (the paper's default; its
"individual" variant, one map per channel, is not provided). Choices where the
paper is silent: an even kernel pads one step more at the end than at the start;
both maps start as the average of the lookback (weights 1/L, bias 0), as the
Time-Series-Library does, so the untrained model forecasts each channel's mean.
Defaults: ``--moving_avg`` 25 (``models.MODEL_DEFAULTS``).
"""
from __future__ import annotations

from argparse import Namespace

import torch
from torch import nn
from torch.nn import functional as F

from models import model_option


def moving_average(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """Centred moving average of `x` [B, L, C] over time, the ends padded by repetition: [B, L, C]."""
    front, back = (kernel - 1) // 2, kernel // 2
    padded = torch.cat([x[:, :1].expand(-1, front, -1), x, x[:, -1:].expand(-1, back, -1)], dim=1)  # [B, L+k-1, C]
    return F.avg_pool1d(padded.transpose(1, 2), kernel_size=kernel, stride=1).transpose(1, 2)


def decompose(x: torch.Tensor, kernel: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(seasonal, trend) of `x` [B, L, C]: trend = `moving_average`, seasonal = x - trend."""
    trend = moving_average(x, kernel)
    return x - trend, trend


class Model(nn.Module):
    def __init__(self, args: Namespace):
        super().__init__()
        if args.task_name != "long_term_forecast":
            raise ValueError("--model DLinear is a forecaster; use it with --task_name long_term_forecast")
        L, P = int(args.seq_len), int(args.pred_len)
        self.kernel = int(model_option(args, "DLinear", "moving_avg"))
        if self.kernel < 1:
            raise ValueError(f"--moving_avg must be >= 1, got {self.kernel}")
        self.seasonal = nn.Linear(L, P)  # [.., L] -> [.., P]
        self.trend = nn.Linear(L, P)
        for lin in (self.seasonal, self.trend):
            nn.init.constant_(lin.weight, 1.0 / L)
            nn.init.zeros_(lin.bias)

    @staticmethod
    def setting_tags(args) -> list[str]:
        return [f"ma{model_option(args, 'DLinear', 'moving_avg')}"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seasonal, trend = decompose(x, self.kernel)  # [B, L, C] each
        out = self.seasonal(seasonal.transpose(1, 2)) + self.trend(trend.transpose(1, 2))  # [B, C, P]
        return out.transpose(1, 2)  # [B, P, C]

    def describe(self) -> dict:
        return {"architecture": f"DLinear (Zeng et al., AAAI 2023): moving average {self.kernel}, "
                                f"two shared linear maps"}

"""Experiments by task; all share the training loop of `exp/exp_basic.py`."""
from __future__ import annotations

import importlib

EXPERIMENTS = {
    "anomaly_detection": ("exp.exp_anomaly_detection", "ExpAnomalyDetection"),
    "long_term_forecast": ("exp.exp_long_term_forecasting", "ExpLongTermForecast"),
}


def get_experiment(task_name: str) -> type:
    if task_name not in EXPERIMENTS:
        raise ValueError(f"unknown --task_name {task_name!r}; choose one of {', '.join(EXPERIMENTS)}")
    module, name = EXPERIMENTS[task_name]
    return getattr(importlib.import_module(module), name)

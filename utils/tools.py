"""Training utilities: seeding, the default thread count, learning-rate schedules, early stopping."""
from __future__ import annotations

import math
import os
import random

import numpy as np
import torch


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def default_threads(cores: int | None = None, load: float | None = None) -> tuple[int, str]:
    """Threads for torch when --threads is unset, and a one-line note saying why.

    The cores this process may use minus the ones other work keeps busy (the 1-minute load average):
    on a busy machine OpenMP threads wait on each other at every small operation (5-50x slower, README),
    on an idle one every core helps. `cores`/`load` default to the machine's (sched_getaffinity, getloadavg).
    """
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if load is None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    threads = 1 if load >= cores else max(1, cores - round(load))
    return threads, (f"threads: {threads} (of {cores} cores, load average {load:.1f}; --threads N overrides)")


def learning_rate(base: float, schedule: str, epoch: int, total_epochs: int) -> float:
    """Learning rate for 0-based `epoch`: type1 halves every epoch (Time-Series-Library),
    cosine decays from `base` towards 0 over `total_epochs`, constant keeps `base`."""
    if schedule == "type1":
        return base * 0.5 ** epoch
    if schedule == "cosine":
        return base * 0.5 * (1 + math.cos(math.pi * epoch / max(1, total_epochs)))
    return base


class EarlyStopping:
    """Stop when the validation loss has not improved for `patience` epochs; remembers the best."""

    def __init__(self, patience: int, min_delta: float = 0.0):
        self.patience = patience
        self.min_delta = min_delta
        self.best = math.inf
        self.bad_epochs = 0

    def step(self, val_loss: float) -> bool:
        """Record an epoch's validation loss; return True if it is the best so far."""
        if val_loss < self.best - self.min_delta:
            self.best = val_loss
            self.bad_epochs = 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs >= self.patience
